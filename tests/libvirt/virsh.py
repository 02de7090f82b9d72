"""Reading back what the backend did with `virsh` in another process (not through xvrd)."""

from __future__ import annotations

import subprocess


def virsh(uri: str, *args: str) -> str:
    result = subprocess.run(
        ["virsh", "-q", "-c", uri, *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, f"virsh {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def schedinfo(uri: str, domain: str) -> dict[str, str]:
    """`virsh schedinfo DOMAIN` as a dict: {'Scheduler': 'posix', 'cpu_shares': '1024', ...}."""
    out: dict[str, str] = {}
    for line in virsh(uri, "schedinfo", domain).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def parse_cpulist(text: str) -> frozenset[int]:
    """'0-2,5' -> {0, 1, 2, 5}."""
    cpus: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(cpus)


def vcpupin(uri: str, domain: str) -> dict[int, frozenset[int]]:
    """`virsh vcpupin DOMAIN` as {vcpu: cpus}."""
    out: dict[int, frozenset[int]] = {}
    for line in virsh(uri, "vcpupin", domain).splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit():
            out[int(fields[0])] = parse_cpulist(fields[1])
    return out
