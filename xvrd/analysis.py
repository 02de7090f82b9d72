"""What an observation says about sharing: aggregate, fairness, efficiency, findings.

Findings (unfairness, collapse) are the policy's to make; this module computes the figures
they rest on, the same way for status, logs and the policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xvrd.sampler import DomainRates, Observation


def jain_index(values: list[float]) -> float:
    """Jain's fairness index, (sum x)^2 / (n sum x^2): 1 when equal, 1/n when one takes all."""
    if not values:
        return 1.0
    squares = sum(v * v for v in values)
    if squares == 0:
        return 1.0
    total = sum(values)
    return total * total / (len(values) * squares)


@dataclass(frozen=True, slots=True)
class Finding:
    """Something wrong with the sharing, with the figures that show it."""

    kind: str  # "unfairness", "collapse", "dom0-starved", "crowded-out", "regression"
    summary: str
    evidence: dict[str, float | int | str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Assessment:
    """The host's sharing over one interval, from a complete observation."""

    network_active: tuple[str, ...]  # UUIDs of network-active domUs, creation order
    aggregate_mbps: float
    jain: float
    efficiency: float
    link_mbps: float  # what the link carries at most, the measure of efficiency
    dom0_cpu_pct: float
    idle_pct: float
    findings: tuple[Finding, ...] = ()

    @property
    def mean_mbps(self) -> float:
        """What a network-active domU moves on average (0 when none is)."""
        return self.aggregate_mbps / len(self.network_active) if self.network_active else 0.0


#: Drops per second from which a domU moving too little to count is network-active all the
#: same (its traffic is being dropped: starvation). A starved receiver drops thousands; a
#: few broadcast frames dropped at an idle domU's vif are not traffic.
ACTIVE_DROPS_PS = 10.0


def network_active(obs: Observation, threshold_mbps: float) -> list[DomainRates]:
    """domUs moving at least ``threshold_mbps`` in either direction, or dropping packets
    (at least ``ACTIVE_DROPS_PS``)."""
    return [
        d
        for d in obs.domus()
        if d.throughput_mbps >= threshold_mbps
        or (d.rx_drops_ps or 0.0) >= ACTIVE_DROPS_PS
        or (d.tx_drops_ps or 0.0) >= ACTIVE_DROPS_PS
    ]


def assess(obs: Observation, link_frame_mbps: float, active_threshold_mbps: float) -> Assessment:
    """Figures of a complete observation. Raises ValueError on an incomplete one."""
    if not obs.complete:
        raise ValueError("cannot assess an incomplete observation")
    active = network_active(obs, active_threshold_mbps)
    rates = [d.throughput_mbps for d in active]
    aggregate = sum(rates)
    dom0 = obs.dom0()
    return Assessment(
        network_active=tuple(d.uuid for d in active),
        aggregate_mbps=aggregate,
        jain=jain_index(rates),
        efficiency=aggregate / link_frame_mbps if link_frame_mbps > 0 else 0.0,
        link_mbps=link_frame_mbps,
        dom0_cpu_pct=dom0.cpu_pct or 0.0 if dom0 is not None else 0.0,
        idle_pct=obs.idle_pct or 0.0,
    )
