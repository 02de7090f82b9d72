"""One tick's libvirt cost through the backend against the bare libvirt calls it needs.

    python bench/bench_libvirt.py [--domains 8 64] [--ticks 30]

Needs root and libvirtd installed (scripts/install-system-deps): it starts a private
libvirtd (the tests' harness), defines N running domains on the test driver through it,
each with one vif, and times, per tick, after one warm-up tick:

- backend: ``list_domains()`` then ``read_counters()``, ``get_sched()`` and
           ``get_pinning()`` per domain (what the daemon's sampler asks each tick);
- bare:    ``listAllDomains`` then ``getCPUStats(total)``, ``interfaceStats`` per vif,
           ``schedulerParameters`` and ``vcpus`` (``virDomainGetVcpus``, the call the backend
           makes through ctypes) per domain, from libvirt-python.

- daemon:  ``Daemon.tick()`` (in advise mode, no policy changes) over the same backend:
           sampling, rates, analysis and the policy step on top of those calls.

The ratio daemon/bare is the figure (goal <= 1.5); backend/bare shows the backend's share.
Medians, with the three kinds of tick alternated, since the machine is shared.
The test driver's 'fair' weight is readable but not settable, so the backend refuses it; the
bench lets it through (`_ReadOnlyFairBackend`) to time the reads a tick makes.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "libvirt"))

import harness
import libvirt

from xvrd.backends.base import XEN_WEIGHT_RANGE, HostInfo
from xvrd.backends.libvirt import LibvirtBackend
from xvrd.config import load_settings
from xvrd.daemon import Daemon


class _ReadOnlyFairBackend(LibvirtBackend):
    """Lets get_sched read the test driver's 'fair' weight (bench only)."""

    def info(self) -> HostInfo:
        return self._require_tunable()

    def _require_tunable(self) -> HostInfo:
        return HostInfo(
            kind="libvirt",
            uri=self.uri,
            scheduler="fair",
            cpu_ids=frozenset({0, 1}),
            weight_range=XEN_WEIGHT_RANGE,
            supports_cap=False,
            supports_dom0_pinning=False,
        )


def _domain_xml(index: int) -> str:
    return f"""<domain type='test'>
  <name>bench-{index}</name>
  <memory>65536</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
  <devices><interface type='ethernet'><target dev='vif{index}.0'/></interface></devices>
</domain>"""


def _populate(conn: Any, count: int) -> None:
    for dom in conn.listAllDomains():
        if dom.name().startswith("bench-"):
            dom.destroy()
    for index in range(1, count + 1):
        conn.createXML(_domain_xml(index), 0)


def backend_tick(backend: LibvirtBackend) -> None:
    """What the daemon's sampler asks of the backend each tick."""
    for domain in backend.list_domains():
        backend.read_counters(domain.uuid)
        backend.get_sched(domain.uuid)
        backend.get_pinning(domain.uuid)


def bare_tick(conn: Any, vifs: dict[str, list[str]]) -> None:
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        dom.getCPUStats(True)
        for vif in vifs[dom.UUIDString()]:
            dom.interfaceStats(vif)
        dom.schedulerParameters()
        dom.vcpus()


def _timed(tick: Callable[[], None]) -> float:
    start = time.perf_counter()
    tick()
    return time.perf_counter() - start


def measure(
    uri: str, conn: Any, count: int, ticks: int, state_dir: Path
) -> tuple[float, float, float]:
    """Median seconds per tick: daemon, backend and bare, alternating tick by tick.

    Alternating puts both under the same load on a shared machine, which blocks of ticks
    one after the other do not.
    """
    _populate(conn, count)
    backend = _ReadOnlyFairBackend(uri)
    daemon_backend = _ReadOnlyFairBackend(uri)
    settings = load_settings(
        None, backend="libvirt", libvirt_uri=uri, state_dir=state_dir, mode="advise"
    )
    daemon = Daemon(settings, daemon_backend)
    try:
        listed = backend.list_domains()
        vifs = {d.uuid: [v.name for v in backend.read_counters(d.uuid).vifs] for d in listed}
        backend_tick(backend)  # warm-up: the backend reads each domain's XML once
        bare_tick(conn, vifs)
        daemon.tick()
        daemon_s, backend_s, bare_s = [], [], []
        for _ in range(ticks):
            daemon_s.append(_timed(daemon.tick))
            backend_s.append(_timed(lambda: backend_tick(backend)))
            bare_s.append(_timed(lambda: bare_tick(conn, vifs)))
        return (
            statistics.median(daemon_s),
            statistics.median(backend_s),
            statistics.median(bare_s),
        )
    finally:
        backend.close()
        daemon_backend.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--domains", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--ticks", type=int, default=60)
    args = parser.parse_args()
    missing = harness.missing_tools()
    if missing:
        print(f"missing: {', '.join(missing)} (run scripts/install-system-deps)")
        return 2
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    with harness.exclusive_host(), tempfile.TemporaryDirectory(prefix="xvrd-bench-") as tmp:
        daemon = harness.Libvirtd(Path(tmp))
        daemon.start()
        try:
            uri = daemon.uri("test", "/default")
            conn = libvirt.open(uri)  # holds the test driver's state for the run
            print(f"libvirt {libvirt.getVersion()}, test driver through libvirtd, {uri}")
            print(
                f"{'domains':>7} {'daemon tick ms':>14} {'backend ms':>10} {'bare ms':>8} "
                f"{'daemon/bare':>11} {'backend/bare':>12}"
            )
            for count in args.domains:
                daemon_s, backend_s, bare_s = measure(
                    uri, conn, count, args.ticks, Path(tmp) / f"state-{count}"
                )
                print(
                    f"{count:>7} {daemon_s * 1e3:>14.2f} {backend_s * 1e3:>10.2f} "
                    f"{bare_s * 1e3:>8.2f} {daemon_s / bare_s:>11.2f} {backend_s / bare_s:>12.2f}"
                )
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
        finally:
            daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
