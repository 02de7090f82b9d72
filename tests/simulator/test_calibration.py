"""The simulated host against the reference measurements (RR-6658), at default domU weights.

One simulation per configuration (10 s measured after 3 s, seed 0), shared by the tests
through the same `checks()` that `xvrd simulate calibrate` prints.
"""

from __future__ import annotations

import pytest

from simulator.calibration import Check, checks, default_runner


@pytest.fixture(scope="module")
def results() -> list[Check]:
    return list(checks(default_runner(10.0, 3.0, seed=0), include_info=False))


def _failures(results: list[Check], workload: str, metrics: set[str] | None = None) -> list[str]:
    return [
        f"{c.cell} {c.metric}: simulated {c.simulated:.3f}, report {c.reference}, {c.tolerance}"
        for c in results
        if c.cell.startswith(workload)
        and c.ok is False
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


@pytest.mark.xfail(
    strict=True,
    reason=(
        "known gap: forwarding does not collapse enough beyond N = 2 (about 540 Mb/s at "
        "N = 4 and 8 against the report's 445 and 377); dom0's creation-order service "
        "starves the later routers instead of sharing the loss"
    ),
)
def test_forward_collapses_with_n(results: list[Check]) -> None:
    """Aggregate within 10 % of 660, 604, 445, 377 Mb/s for N = 1, 2, 4, 8, falling with N."""
    assert not _failures(results, "forward", {"aggregate_mbps", "falls_with_n"})
