"""The simulated host against the reference measurements (RR-6658), at default domU weights.

One simulation per configuration (10 s measured after 3 s, seed 0), shared by the tests
through the same `checks()` that `xvrd simulate calibrate` prints.
"""

from __future__ import annotations

import pytest

from simulator.calibration import Check, checks, default_runner

#: Checks the simulated host misses, with the figures at seed 0 (`xvrd simulate calibrate`);
#: docs/forwarding-model.md says why. Each is a strict xfail below: closing one fails it.
KNOWN_GAPS = (
    # 918 Mb/s against 829..916 (seeds 1 to 3: 912, 919, 916): the simulated receive stays
    # near line rate at every N, the testbed's fell from 900 to 873 as domUs were added.
    ("receive N=8 dom0=256", "aggregate_mbps"),
    # 338.9 Mb/s against 339.2..414.6 (seeds 1 to 3: 335, 347, 365).
    ("forward N=8 dom0=256", "aggregate_mbps"),
)


@pytest.fixture(scope="module")
def results() -> list[Check]:
    return list(checks(default_runner(10.0, 3.0, seed=0), include_info=False))


def _failures(results: list[Check], workload: str, metrics: set[str] | None = None) -> list[str]:
    return [
        f"{c.cell} {c.metric}: simulated {c.simulated:.3f}, report {c.reference}, {c.tolerance}"
        for c in results
        if c.cell.startswith(workload)
        and c.ok is False
        and (c.cell, c.metric) not in KNOWN_GAPS
        and (metrics is None or c.metric in metrics)
    ]


def test_send_is_efficient_and_fair_at_every_n(results: list[Check]) -> None:
    """send, N = 1, 2, 4, 8: aggregate 900 to 960 Mb/s, Jain >= 0.98."""
    assert not _failures(results, "send")


def test_receive_matches_the_report_at_default_weights(results: list[Check]) -> None:
    """Aggregate within 5 %, Jain within 0.08, dom0 CPU within 8 points, creation order."""
    receive_default = [c for c in results if c.cell.endswith("dom0=256")]
    assert not _failures(receive_default, "receive")
    rho = next(c for c in results if c.metric == "spearman_order")
    assert rho.simulated <= -0.8


def test_dom0_weight_restores_receive_fairness(results: list[Check]) -> None:
    """N = 8, dom0 weight 256..8192: Jain rises; >= 0.95 and >= 925 Mb/s from 2048."""
    sweep = [c for c in results if c.cell.startswith("receive N=8") and "dom0=256" not in c.cell]
    assert sweep
    assert not _failures(sweep, "receive")


def test_forward_keeps_cpu_idle_and_dom0_busy_as_measured(results: list[Check]) -> None:
    """dom0 CPU within 8 points of the report; at least 20 % of the CPU idle at N = 8."""
    assert not _failures(results, "forward", {"dom0_cpu_pct", "idle_pct"})


def test_forward_collapses_with_n(results: list[Check]) -> None:
    """Aggregate within 10 % of 660, 604, 445, 377 Mb/s for N = 1, 2, 4, 8, falling with N."""
    assert not _failures(results, "forward", {"aggregate_mbps", "falls_with_n"})


def test_forward_collapse_is_shared_fairly(results: list[Check]) -> None:
    """The testbed's routers lost throughput together (Jain 1.00 at every N): no router is
    starved, which is what tells the collapse apart from receive's unfairness."""
    jains = {
        c.cell: c.simulated for c in results if c.cell.startswith("forward") and c.metric == "jain"
    }
    assert len(jains) == 4
    assert all(j >= 0.98 for j in jains.values()), jains


@pytest.mark.parametrize(
    "gap",
    [pytest.param(g, marks=pytest.mark.xfail(strict=True, reason="known gap")) for g in KNOWN_GAPS],
    ids=lambda g: f"{g[0]} {g[1]}",
)
def test_known_gap(results: list[Check], gap: tuple[str, str]) -> None:
    """Still out of tolerance; when this passes, the gap has closed: drop it from the list."""
    check = next(c for c in results if (c.cell, c.metric) == gap)
    assert check.ok, f"{check.simulated:.1f} against {check.reference} {check.tolerance}"
