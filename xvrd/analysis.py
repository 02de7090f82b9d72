"""What an observation means: aggregate throughput, Jain index, efficiency, findings.

A domU's throughput is the larger of its rx and tx rates, so a receiver, a sender and a
router (which receives and sends the same packets) each count once. Jain's index is taken
over the network-active domUs only: idle domUs and CPU burners must not make sharing look
unfair.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xvrd.sampler import Observation

#: Jain index below which sharing between active domUs is reported as unfair.
UNFAIR_JAIN = 0.9
#: Efficiency below which, with CPU idle, throughput is reported as collapsed. Counters cannot
#: tell an application-limited domU from a starved one, so this finding is evidence for the
#: policy to weigh, not a verdict.
COLLAPSE_EFFICIENCY = 0.8
#: Idle CPU (% of host) above which a collapse is the scheduler's doing, not a lack of CPU.
COLLAPSE_IDLE_PCT = 10.0


@dataclass(frozen=True, slots=True)
class Finding:
    """Something wrong, with the numbers that show it."""

    kind: str  # "unfair" or "collapse"
    summary: str
    evidence: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Assessment:
    aggregate_mbps: float
    jain: float | None  # None with no network-active domU
    efficiency: float
    active_uuids: frozenset[str]
    findings: tuple[Finding, ...]


def jain_index(values: list[float]) -> float | None:
    """Jain's fairness index: 1 when all equal, 1/n when one takes everything."""
    if not values:
        return None
    total = sum(values)
    squares = sum(v * v for v in values)
    if squares == 0:
        return 1.0
    return total * total / (len(values) * squares)


def assess(
    obs: Observation, *, link_goodput_mbps: float, nics: int = 1, active_mbps: float = 1.0
) -> Assessment:
    """Summarise a complete observation (rates missing count as zero)."""
    throughput: dict[str, float] = {}
    for d in obs.domains:
        if d.domain.is_dom0:
            continue
        throughput[d.domain.uuid] = max(d.rx_mbps or 0.0, d.tx_mbps or 0.0)
    active = {u: t for u, t in throughput.items() if t > active_mbps}
    aggregate = sum(throughput.values())
    jain = jain_index(list(active.values()))
    efficiency = aggregate / (link_goodput_mbps * nics)
    findings = []
    if jain is not None and len(active) >= 2 and jain < UNFAIR_JAIN:
        findings.append(
            Finding(
                "unfair",
                f"Jain index {jain:.2f} over {len(active)} network-active domUs",
                {"jain": round(jain, 4), "active_domus": len(active)},
            )
        )
    idle = obs.idle_pct
    if (
        active
        and idle is not None
        and efficiency < COLLAPSE_EFFICIENCY
        and idle > COLLAPSE_IDLE_PCT
    ):
        findings.append(
            Finding(
                "collapse",
                f"aggregate {aggregate:.0f} Mb/s is {efficiency:.0%} of line rate"
                f" while {idle:.0f}% of the CPU is idle",
                {
                    "aggregate_mbps": round(aggregate, 1),
                    "efficiency": round(efficiency, 4),
                    "idle_pct": round(idle, 1),
                },
            )
        )
    return Assessment(aggregate, jain, efficiency, frozenset(active), tuple(findings))
