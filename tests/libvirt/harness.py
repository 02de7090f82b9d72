"""A private libvirtd and tiny QEMU/TCG guests, for the libvirt tests and the benchmark.

Nothing here is xvrd: it is the test bench. libvirtd runs as a child process with its own
config file, socket directory and pid file under a scratch directory, and stops on SIGTERM.
Running as root it is the *privileged* daemon, so the QEMU driver still keeps its state in
/run/libvirt and /var/lib/libvirt; only the sockets are private.

Guests boot Debian's cloud kernel straight into a busybox initramfs (no disk image): the
initramfs loads virtio-net, brings eth0 up and sleeps, which is all a guest needs to receive
frames and burn a little CPU. What is built is cached under a directory (kernel copy,
initramfs) keyed by the kernel version, so repeated runs only boot.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import io
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
#: Modules the guest loads, in dependency order, to get a virtio NIC.
GUEST_MODULES = (
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/net/core/failover.ko",
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/virtio_net.ko",
)
GUEST_INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
for m in {modules}; do /bin/busybox insmod /lib/modules/$m; done
/bin/busybox ip link set eth0 up
echo XVRD-GUEST-UP
while true; do /bin/busybox sleep 3600; done
"""

LIBVIRTD_CONF = """unix_sock_dir = "{sock_dir}"
unix_sock_group = "root"
unix_sock_ro_perms = "0777"
unix_sock_rw_perms = "0770"
unix_sock_admin_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:{log}"
"""


class HarnessError(RuntimeError):
    """The bench itself could not be set up (missing package, daemon did not start)."""


def missing_tools() -> list[str]:
    """The programs the libvirt tests need that are not installed."""
    tools = ["libvirtd", "virsh", "virtlogd", "qemu-system-x86_64"]
    out = [t for t in tools if shutil.which(t) is None]
    if not BUSYBOX.exists():
        out.append(str(BUSYBOX))
    return out


@dataclass
class Libvirtd:
    """A libvirtd child process listening on a private unix socket."""

    run_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def sock_dir(self) -> Path:
        return self.run_dir / "sock"

    @property
    def socket_path(self) -> Path:
        return self.sock_dir / "libvirt-sock"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "libvirtd.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "libvirtd.log"

    def uri(self, driver: str = "qemu", path: str = "/system") -> str:
        """A URI reaching `driver` through this daemon's socket."""
        return f"{driver}+unix://{path}?socket={self.socket_path}"

    def start(self, timeout_s: float = 20.0) -> None:
        """Start libvirtd and wait until its socket accepts connections."""
        self.sock_dir.mkdir(parents=True, exist_ok=True)
        conf = self.run_dir / "libvirtd.conf"
        conf.write_text(LIBVIRTD_CONF.format(sock_dir=self.sock_dir, log=self.log_file))
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self.process = subprocess.Popen(
            ["libvirtd", "--config", str(conf), "--pid-file", str(self.pid_file)],
            stdin=subprocess.DEVNULL,
            stdout=(self.run_dir / "libvirtd.out").open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HarnessError(f"libvirtd exited at start: {self._tail()}")
            if _accepts(self.socket_path):
                return
            time.sleep(0.1)
        raise HarnessError(f"libvirtd did not listen within {timeout_s} s: {self._tail()}")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM libvirtd and wait for it; running guests survive, as with systemd."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _tail(self) -> str:
        out = self.run_dir / "libvirtd.out"
        text = out.read_text(errors="replace") if out.exists() else ""
        return text[-2000:]


def _accepts(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


#: One privileged libvirtd per host at a time: its QEMU and network drivers keep state and
#: lock files in /run/libvirt, and guests' tap names are host-wide.
HOST_LOCK = Path("/run/lock/xvrd-libvirt-tests.lock")


@contextlib.contextmanager
def exclusive_host(timeout_s: float = 900.0) -> Iterator[None]:
    """Wait for any other run of these tests (or the bench) on this host to finish."""
    HOST_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with HOST_LOCK.open("a") as lock:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise HarnessError(
                        f"another libvirt test run held {HOST_LOCK} for {timeout_s:.0f} s"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_host_state() -> None:
    """Directories and the user the privileged QEMU driver expects (idempotent)."""
    for d in ("/var/log/libvirt/qemu", "/var/lib/libvirt/qemu", "/run/libvirt"):
        Path(d).mkdir(parents=True, exist_ok=True)
    user = subprocess.run(["getent", "passwd", "libvirt-qemu"], capture_output=True, check=False)
    if user.returncode:
        raise HarnessError(
            "system user libvirt-qemu is missing: run scripts/install-system-deps as root"
        )


@contextlib.contextmanager
def virtlogd(run_dir: Path) -> Iterator[None]:
    """Run virtlogd (the QEMU driver writes guest consoles through it) unless one runs."""
    if Path("/run/libvirt/virtlogd-sock").exists() and _accepts(Path("/run/libvirt/virtlogd-sock")):
        yield
        return
    proc = subprocess.Popen(
        ["virtlogd", "--pid-file", str(run_dir / "virtlogd.pid")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _accepts(Path("/run/libvirt/virtlogd-sock")):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise HarnessError("virtlogd did not start")
            time.sleep(0.05)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


@dataclass(frozen=True)
class GuestImage:
    """A kernel and initramfs that boot a tiny guest."""

    kernel: Path
    initrd: Path


def _pick_kernel() -> tuple[Path, str]:
    """The newest /boot kernel whose modules are installed (the cloud kernel if present)."""
    candidates = sorted(Path("/boot").glob("vmlinuz-*"), reverse=True)
    candidates.sort(key=lambda p: "cloud" not in p.name)
    for kernel in candidates:
        version = kernel.name.removeprefix("vmlinuz-")
        if (Path("/lib/modules") / version / GUEST_MODULES[-1]).exists():
            return kernel, version
    raise HarnessError(
        "no /boot/vmlinuz-* with its modules: install linux-image-cloud-amd64 "
        "(scripts/install-system-deps does)"
    )


def build_guest_image(cache_dir: Path) -> GuestImage:
    """Build (or reuse from `cache_dir`) the guest kernel copy and busybox initramfs."""
    kernel_src, version = _pick_kernel()
    cache = cache_dir / version
    kernel = cache / "vmlinuz"
    initrd = cache / "initrd.gz"
    if kernel.exists() and initrd.exists():
        return GuestImage(kernel, initrd)
    cache.mkdir(parents=True, exist_ok=True)
    # /boot kernels are 0600; the QEMU process runs as libvirt-qemu and must read its copy.
    shutil.copyfile(kernel_src, kernel)
    kernel.chmod(0o644)
    tmp = initrd.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(_initramfs_cpio(version), compresslevel=6))
    tmp.chmod(0o644)
    tmp.rename(initrd)
    cache.chmod(0o755)
    cache_dir.chmod(0o755)
    return GuestImage(kernel, initrd)


def _initramfs_cpio(version: str) -> bytes:
    """A newc cpio archive: busybox, /init, and the virtio-net modules."""
    files: dict[str, tuple[bytes, int]] = {}
    files["bin/busybox"] = (BUSYBOX.read_bytes(), 0o755)
    names = [Path(m).name for m in GUEST_MODULES]
    files["init"] = (GUEST_INIT.format(modules=" ".join(names)).encode(), 0o755)
    for rel, name in zip(GUEST_MODULES, names, strict=True):
        files[f"lib/modules/{name}"] = ((Path("/lib/modules") / version / rel).read_bytes(), 0o644)
    dirs = ["bin", "dev", "proc", "sys", "lib", "lib/modules"]
    buf = io.BytesIO()
    ino = 1
    for d in dirs:
        buf.write(_cpio_entry(d, b"", stat.S_IFDIR | 0o755, ino))
        ino += 1
    buf.write(_cpio_entry("dev/console", b"", stat.S_IFCHR | 0o600, ino, rdev=(5, 1)))
    ino += 1
    for name, (data, mode) in files.items():
        buf.write(_cpio_entry(name, data, stat.S_IFREG | mode, ino))
        ino += 1
    buf.write(_cpio_entry("TRAILER!!!", b"", 0, 0))
    return buf.getvalue()


def _cpio_entry(
    name: str, data: bytes, mode: int, ino: int, rdev: tuple[int, int] = (0, 0)
) -> bytes:
    encoded = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0]
    header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
    out = header + encoded
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def guest_xml(name: str, image: GuestImage, vif: str, memory_mib: int = 96) -> str:
    """Domain XML of a one-vCPU TCG guest with an `ethernet` interface named `vif`."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{image.kernel}</kernel>
    <initrd>{image.initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <interface type='ethernet'>
      <target dev='{vif}' managed='yes'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'/>
    <console type='pty'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def send_frames(ifname: str, count: int, size: int = 1000) -> int:
    """Write `count` raw broadcast Ethernet frames out of host interface `ifname`.

    Leaving the host side of a tap means arriving at the guest: the guest's receive.
    No IP is involved, so nothing leaves the machine. Returns the bytes sent.
    """
    frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + b"\x00" * (size - 14)
    sent = 0
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((ifname, 0))
        for _ in range(count):
            sent += sock.send(frame)
    return sent


def tap_exists(ifname: str) -> bool:
    return os.path.exists(f"/sys/class/net/{ifname}")
