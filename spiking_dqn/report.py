"""Result rows (score, spike rates, energy, latency), results.json / results.md and the summary plot."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from spiking_dqn.energy import energy_report
from spiking_dqn.network import SpikingNetwork


@dataclass
class Row:
    """One evaluated model: the ANN, the converted baseline or an IIR stage."""

    model: str  # "ann" | "converted" | "iir"
    timesteps: int | None
    score_mean: float
    score_std: float
    spike_rate: float | None
    layer_spike_rates: list[float] | None
    energy_ratio: float
    memory_access_ratio: float
    ms_per_decision: float
    scores: list[float] | None = None  # per-trial scores, where the task has trials (RL games)


@torch.no_grad()
def ms_per_decision(forward: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor, reps: int = 50) -> float:
    """Median wall time in ms of one forward pass on a single input, on one CPU thread (after warm-up).

    One thread: at batch 1 thread hand-offs dominate and, on a loaded machine, swamp the measurement.
    """
    x = example[:1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(3):
            forward(x)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            forward(x)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return 1000 * sorted(times)[len(times) // 2]


def ann_row(forward: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor, mean: float,
            std: float) -> Row:
    """Row for the ANN: the reference for the energy and memory ratios (both 1)."""
    return Row("ann", None, mean, std, None, None, 1.0, 1.0, ms_per_decision(forward, example))


def snn_row(model: str, net: SpikingNetwork, example: torch.Tensor, rates: list[float], mean: float,
            std: float) -> Row:
    """Row for a spiking network evaluated with the given per-layer spike rates."""
    energy = energy_report(net, example, rates)
    return Row(model, net.timesteps, mean, std, sum(rates) / max(1, len(rates)), rates, energy.energy_ratio,
               energy.memory_access_ratio, ms_per_decision(net, example))


def atomic_save(path: Path, save: Callable[[Path], object]) -> None:
    """Write `path` through `save` under a temporary name (same suffix), then rename it into place."""
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
    save(tmp)
    os.replace(tmp, path)


def atomic_write(path: Path, text: str) -> None:
    """Write a text file so that readers never see it half-written."""
    atomic_save(path, lambda p: p.write_text(text))


def markdown_table(rows: list[Row], metric: str) -> str:
    """The rows as a Markdown table."""
    header = (f"| model | T | {metric} (mean ± std) | spike rate | energy ratio (ANN/SNN) | memory accesses vs ANN "
              "| ms / decision |")
    lines = [header, "|---|---|---|---|---|---|---|"]
    for r in rows:
        rate = "—" if r.spike_rate is None else f"{r.spike_rate:.3f}"
        t = "—" if r.timesteps is None else str(r.timesteps)
        lines.append(f"| {r.model} | {t} | {r.score_mean:.2f} ± {r.score_std:.2f} | {rate} | {r.energy_ratio:.2f}x "
                     f"| {r.memory_access_ratio:.2f}x | {r.ms_per_decision:.3f} |")
    return "\n".join(lines) + "\n"


def write_results(run_dir: Path, task: str, metric: str, trials: int, seed: int, rows: list[Row],
                  notes: str = "") -> None:
    """Write results.json, results.md and results.png into the run directory."""
    data = {"task": task, "metric": metric, "trials": trials, "seed": seed, "rows": [asdict(r) for r in rows]}
    atomic_write(run_dir / "results.json", json.dumps(data, indent=2) + "\n")
    md = f"# {task}: {metric} over {trials} trials (seed {seed})\n\n" + markdown_table(rows, metric)
    atomic_write(run_dir / "results.md", md + (f"\n{notes}\n" if notes else ""))
    plot_results(run_dir / "results.png", rows, metric, task)


def plot_results(path: Path, rows: list[Row], metric: str, title: str) -> None:
    """Score vs T for the IIR stages with ANN / converted lines; per-layer spike rates per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    stages = [r for r in rows if r.model == "iir"]
    if stages:
        ax1.errorbar([r.timesteps for r in stages], [r.score_mean for r in stages],
                     yerr=[r.score_std for r in stages], marker="o", capsize=3, label="IIR-SNN")
    for r, style in ((r, s) for r in rows for m, s in (("ann", "--"), ("converted", ":")) if r.model == m):
        label = "ANN" if r.model == "ann" else f"converted T{r.timesteps}"
        ax1.axhline(r.score_mean, linestyle=style, color="gray" if r.model == "ann" else "black", label=label)
    ax1.set_xticks(sorted({r.timesteps for r in stages}))
    ax1.set_xlabel("T (timesteps)")
    ax1.set_ylabel(metric)
    ax1.legend()
    ax1.set_title(title)
    for r in rows:
        if r.layer_spike_rates:
            name = f"{r.model} T{r.timesteps}"
            ax2.plot(range(1, len(r.layer_spike_rates) + 1), r.layer_spike_rates, marker="o", label=name)
    ax2.xaxis.get_major_locator().set_params(integer=True)
    ax2.set_xlabel("spiking layer")
    ax2.set_ylabel("spike rate (spikes / neuron / inference)")
    ax2.set_yscale("symlog", linthresh=0.01)
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
