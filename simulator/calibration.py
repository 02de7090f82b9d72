"""Compare the simulated host with the reference measurements (RR-6658), cell by cell.

This module reads the reference CSVs; the model never does. Each check states its tolerance,
taken from the project's acceptance criteria; cells without a tolerance are reported for
information only.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources

from simulator.report import RunResult, run
from simulator.scenario import report_scenario
from xvrd.analysis import jain_index

REFERENCE_FILES = {
    ("send", "default"): "send_default.csv",
    ("receive", "default"): "receive_default.csv",
    ("forward", "default"): "forward_default.csv",
    ("receive", "sweep"): "receive_dom0_weight_sweep.csv",
    ("send", "sweep"): "send_dom0_weight_sweep.csv",
}


@dataclass(frozen=True)
class ReferenceCell:
    """One configuration of the report: per-domU throughput and CPU, dom0 CPU, idle."""

    workload: str
    n_domus: int
    dom0_weight: int
    throughput_mbps: tuple[float, ...]
    domu_cpu_pct: tuple[float, ...]
    dom0_cpu_pct: float
    idle_pct: float

    @property
    def aggregate_mbps(self) -> float:
        return sum(self.throughput_mbps)

    @property
    def jain(self) -> float:
        return jain_index(list(self.throughput_mbps))


def load_reference(workload: str, kind: str) -> list[ReferenceCell]:
    """Read one reference file; per-domain values are authoritative (see its README)."""
    name = REFERENCE_FILES[(workload, kind)]
    text = resources.files("simulator").joinpath("reference", name).read_text(encoding="utf-8")
    rows: dict[tuple[int, int], dict[str, tuple[float | None, float]]] = defaultdict(dict)
    for row in csv.DictReader(text.splitlines()):
        key = (int(row["n_domu"]), int(row["dom0_weight"]))
        tput = float(row["throughput_mbps"]) if row["throughput_mbps"] else None
        rows[key][row["domain"]] = (tput, float(row["cpu_pct"]))
    cells = []
    for (n, w), doms in sorted(rows.items()):
        domus = [doms[f"dom{i}"] for i in range(1, n + 1)]
        cells.append(
            ReferenceCell(
                workload=workload,
                n_domus=n,
                dom0_weight=w,
                throughput_mbps=tuple(t or 0.0 for t, _ in domus),
                domu_cpu_pct=tuple(c for _, c in domus),
                dom0_cpu_pct=doms["dom0"][1],
                idle_pct=doms["idle"][1],
            )
        )
    return cells


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""

    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2.0
            i = j + 1
        return out

    rx, ry = ranks(xs), ranks(ys)
    n = len(xs)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / (vx * vy) ** 0.5 if vx and vy else 0.0


@dataclass(frozen=True)
class Check:
    """One comparison: what was measured, what was simulated, and whether it is in tolerance."""

    cell: str
    metric: str
    reference: float | None
    simulated: float
    tolerance: str
    ok: bool | None  # None: shown for information, not checked

    def to_json(self) -> dict[str, object]:
        return {
            "cell": self.cell,
            "metric": self.metric,
            "reference": None if self.reference is None else round(self.reference, 4),
            "simulated": round(self.simulated, 4),
            "tolerance": self.tolerance,
            "ok": self.ok,
        }


def _within_pct(sim: float, ref: float, pct: float) -> bool:
    return abs(sim - ref) <= ref * pct / 100.0


def _cell_name(cell: ReferenceCell) -> str:
    return f"{cell.workload} N={cell.n_domus} dom0={cell.dom0_weight}"


Runner = Callable[[str, int, int], RunResult]


def default_runner(duration_s: float, warmup_s: float, seed: int) -> Runner:
    def run_cell(workload: str, n: int, dom0_weight: int) -> RunResult:
        scenario = report_scenario(
            workload, n_domus=n, dom0_weight=dom0_weight, duration_s=duration_s, warmup_s=warmup_s
        )
        return run(scenario, seed=seed)

    return run_cell


def checks(runner: Runner, include_info: bool = True) -> Iterator[Check]:
    """Every comparison, in report order. Runs each configuration once. Without
    ``include_info``, configurations that only have informational checks are skipped."""
    cache: dict[tuple[str, int, int], RunResult] = {}

    def sim(cell: ReferenceCell) -> RunResult:
        key = (cell.workload, cell.n_domus, cell.dom0_weight)
        if key not in cache:
            cache[key] = runner(*key)
        return cache[key]

    for cell in load_reference("send", "default"):
        r = sim(cell)
        name = _cell_name(cell)
        agg = r.aggregate_mbps
        yield Check(name, "aggregate_mbps", cell.aggregate_mbps, agg, "900..960", 900 <= agg <= 960)
        yield Check(name, "jain", cell.jain, r.jain, ">= 0.98", r.jain >= 0.98)
        yield Check(name, "dom0_cpu_pct", cell.dom0_cpu_pct, r.dom0_cpu_pct, "info", None)

    for cell in load_reference("receive", "default"):
        r = sim(cell)
        name = _cell_name(cell)
        agg = r.aggregate_mbps
        yield Check(
            name, "aggregate_mbps", cell.aggregate_mbps, agg, "±5 %",
            _within_pct(agg, cell.aggregate_mbps, 5),
        )  # fmt: skip
        if cell.n_domus >= 2:
            ok = abs(r.jain - cell.jain) <= 0.08
            yield Check(name, "jain", cell.jain, r.jain, "±0.08", ok)
        ok = abs(r.dom0_cpu_pct - cell.dom0_cpu_pct) <= 8
        yield Check(name, "dom0_cpu_pct", cell.dom0_cpu_pct, r.dom0_cpu_pct, "±8 points", ok)
        yield Check(name, "idle_pct", cell.idle_pct, r.idle_pct, "info", None)
        if cell.n_domus == 8:
            tputs = [d.throughput_mbps for d in r.domains]
            rho = spearman([float(i) for i in range(len(tputs))], tputs)
            ref_rho = spearman([float(i) for i in range(8)], list(cell.throughput_mbps))
            yield Check(name, "spearman_order", ref_rho, rho, "<= -0.8", rho <= -0.8)

    sweep = [c for c in load_reference("receive", "sweep") if c.n_domus == 8]
    previous: float | None = None
    for cell in sweep:
        r = sim(cell)
        name = _cell_name(cell)
        if cell.dom0_weight >= 2048:
            ok_j, ok_a = r.jain >= 0.95, r.aggregate_mbps >= 925
            yield Check(name, "jain", cell.jain, r.jain, ">= 0.95", ok_j)
            yield Check(
                name, "aggregate_mbps", cell.aggregate_mbps, r.aggregate_mbps, ">= 925", ok_a
            )
        else:
            yield Check(name, "jain", cell.jain, r.jain, "info", None)
            yield Check(name, "aggregate_mbps", cell.aggregate_mbps, r.aggregate_mbps, "info", None)
        if previous is not None:
            ok = r.jain >= previous - 0.02
            yield Check(name, "jain_rises_with_weight", None, r.jain - previous, ">= -0.02", ok)
        previous = r.jain

    fwd = load_reference("forward", "default")
    previous = None
    for cell in fwd:
        r = sim(cell)
        name = _cell_name(cell)
        agg = r.aggregate_mbps
        yield Check(
            name, "aggregate_mbps", cell.aggregate_mbps, agg, "±10 %",
            _within_pct(agg, cell.aggregate_mbps, 10),
        )  # fmt: skip
        ok = abs(r.dom0_cpu_pct - cell.dom0_cpu_pct) <= 8
        yield Check(name, "dom0_cpu_pct", cell.dom0_cpu_pct, r.dom0_cpu_pct, "±8 points", ok)
        yield Check(name, "jain", cell.jain, r.jain, "info", None)
        if cell.n_domus == 8:
            yield Check(name, "idle_pct", cell.idle_pct, r.idle_pct, ">= 20", r.idle_pct >= 20)
        if previous is not None:
            yield Check(name, "falls_with_n", None, agg - previous, "< 0", agg < previous)
        previous = agg

    for cell in load_reference("send", "sweep"):
        if cell.dom0_weight == 256 or not include_info:
            continue
        r = sim(cell)
        name = _cell_name(cell)
        yield Check(name, "aggregate_mbps", cell.aggregate_mbps, r.aggregate_mbps, "info", None)
        yield Check(name, "jain", cell.jain, r.jain, "info", None)
