"""The human status table: every field shown, nulls as '-', odd values never fatal."""

from __future__ import annotations

from typing import Any

import pytest

from xvrd.control.render import render_status

from .conftest import sample_status


def row(table: str, name: str) -> list[str]:
    [line] = [line for line in table.splitlines() if line.startswith(name)]
    return line.split()


def test_a_full_status_shows_every_part() -> None:
    table = render_status(sample_status())
    assert "backend    simulator (sim://receive-3)" in table
    assert (
        "scheduler  credit    CPUs 0-1    interval 2 s    last tick 0.4 s ago    ticks 7" in table
    )
    assert "mode       auto    hold no    manual dom0 pin -" in table
    assert row(table, "Domain-0") == [
        "Domain-0",
        "0",
        "2048",
        "auto",
        "none",
        "all",
        "-",
        "-",
        "61.5",
    ]
    assert row(table, "web1") == [
        "web1",
        "*",
        "1",
        "512",
        "manual",
        "none",
        "1",
        "471.2",
        "3.5",
        "17.0",
    ]
    assert "dom0 CPU 61.5 %  idle 4.2 %  aggregate 941.0 Mb/s  Jain 0.987  efficiency 0.96" in table
    assert "  unfair_rx: Jain 0.48 over 8 domUs" in table
    assert "Domain-0 weight 256 -> 2048: dom0 starved: rx unfair" in table


def test_before_the_first_tick_everything_unknown_is_a_dash() -> None:
    status: dict[str, Any] = dict.fromkeys(sample_status())
    status["version"] = 1
    table = render_status(status)
    assert "last tick never" in table
    assert "no domains reported yet" in table
    assert "dom0 CPU -  idle -  aggregate -  Jain -  efficiency -" in table
    assert "None" not in table
    assert render_status({})  # even an empty document renders


def test_a_domain_seen_once_has_dashes_for_rates() -> None:
    status = sample_status()
    status["domains"] = [dict.fromkeys(status["domains"][1], None) | {"name": "new1"}]
    table = render_status(status)
    assert row(table, "new1") == ["new1", *["-"] * 8]


def test_hold_disconnection_and_dom0_pinning_are_prominent() -> None:
    status = sample_status()
    status["hold"] = {"held": True, "reason": "kernel upgrade", "since": "06:00"}
    status["backend"]["connected"] = False
    status["backend"]["last_error"] = "libvirtd: connection refused"
    status["dom0_pin"] = [0, 1]
    table = render_status(status)
    assert "hold HELD since 06:00: kernel upgrade" in table
    assert "DISCONNECTED: libvirtd: connection refused" in table
    assert "manual dom0 pin 0-1" in table


@pytest.mark.parametrize(
    ("pinning", "shown"),
    [([[0, 1], [0, 1]], "all"), ([[1], [1]], "1"), ([[0], [1]], "v0:0 v1:1"), (None, "-")],
)
def test_pinning_is_compact(pinning: object, shown: str) -> None:
    status = sample_status()
    status["domains"][1]["pinning"] = pinning
    assert row(render_status(status), "web1")[6:][: len(shown.split())] == shown.split()


@pytest.mark.parametrize(
    ("pinning", "shown"),
    [([[0, 2, 4]], "all"), ([list(range(8))], "all"), ([[0, 2]], "0,2"), ([[1, 3]], "1,3")],
)
def test_with_cpus_offline_an_affinity_holding_every_online_cpu_is_all(
    pinning: object, shown: str
) -> None:
    """CPUs 0, 2 and 4 online of 0-7: the host reports an unpinned vCPU with all eight."""
    status = sample_status()
    status["backend"]["cpu_ids"] = [0, 2, 4]
    status["domains"][1]["pinning"] = pinning
    table = render_status(status)
    assert row(table, "web1")[6] == shown
    assert "    CPUs 0,2,4    " in table


def test_only_the_last_actions_are_shown_newest_last() -> None:
    status = sample_status()
    status["actions"] = [
        {"time": i, "domain": f"d{i}", "setting": "weight", "old": 1, "new": 2, "reason": "r"}
        for i in range(25)
    ]
    lines = [line for line in render_status(status).splitlines() if " weight 1 -> 2" in line]
    assert len(lines) == 10
    assert " d15 " in lines[0]
    assert " d24 " in lines[-1]


def test_values_of_unexpected_types_are_shown_as_they_are() -> None:
    status = sample_status()
    status["jain"] = "n/a"
    status["domains"][1]["cpu_pct"] = True
    status["findings"] = ["not a dict"]
    table = render_status(status)
    assert "Jain n/a" in table
    assert row(table, "web1")[-1] == "True"


def test_changes_judged_are_shown_with_their_figures() -> None:
    status = sample_status()
    assert "changes judged" not in render_status(status)  # none yet, or an older daemon
    status["verdicts"] = [
        {"time": "2026-11-25T09:00:00+00:00", "summary": f"Domain-0 weight 256 -> {w}: kept"}
        for w in range(300, 325)
    ]
    lines = render_status(status).splitlines()
    first = lines.index("changes judged (newest last, up to 10)")
    shown = lines[first + 1 :]
    assert len(shown) == 10
    assert shown[-1].endswith("Domain-0 weight 256 -> 324: kept")
