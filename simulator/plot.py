"""PNG timelines of suite runs: dom0's weight, aggregate throughput and Jain over time.

Needs matplotlib (``pip install 'xvrd[plot]'``); nothing else in the project does.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from simulator.suite import SuiteResult


def plot_timelines(results: list[SuiteResult], directory: str) -> list[Path]:
    """One PNG per scenario and seed (``receive-8-seed0.png``), one line per strategy;
    returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_run: dict[tuple[str, int], list[SuiteResult]] = defaultdict(list)
    for r in results:
        by_run[(r.scenario, r.seed)].append(r)
    written = []
    for (scenario, seed), runs in by_run.items():
        fig, axes = plt.subplots(3, 1, sharex=True, figsize=(8, 7))
        for r in runs:
            t = [s.t_s for s in r.timeline]
            axes[0].plot(t, [s.dom0_weight for s in r.timeline], label=r.strategy)
            axes[1].plot(t, [s.aggregate_mbps for s in r.timeline], label=r.strategy)
            axes[2].plot(t, [s.jain for s in r.timeline], label=r.strategy)
        axes[0].set_ylabel("dom0 weight")
        axes[0].set_yscale("log", base=2)
        axes[1].set_ylabel("aggregate Mb/s")
        axes[2].set_ylabel("Jain index")
        axes[2].set_ylim(0, 1.05)
        axes[2].set_xlabel("simulated seconds")
        axes[0].legend(loc="best", fontsize="small")
        fig.suptitle(f"{scenario}, seed {seed}")
        fig.tight_layout()
        path = out_dir / f"{scenario}-seed{seed}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written
