"""Shared benchmark plumbing: timing by median of repeats, a printed table, JSON results, bootstrap
intervals over seeds and learning-curve plots with bands."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
# Read when Inductor loads: set before torch is imported.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(RESULTS.parent.parent / ".cache" / "inductor"))
os.environ.setdefault("TORCHINDUCTOR_VEC_ISA_OK", "1")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(RESULTS.parent.parent / ".cache" / "torch_extensions"))

import torch

# One intra-op thread, as frl's tests and CLI use (small networks on 2 cores).
torch.set_num_threads(1)


def time_call(fn: Callable[[], Any], *, repeats: int = 7, min_seconds: float = 0.2, warmup: int = 3) -> float:
    """Median seconds per call over ``repeats`` blocks, each long enough to time reliably."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(min_seconds / once))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in columns]] + [
        [f"{v:.3g}" if isinstance(v, float) else str(v) for v in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    print(f"\n{title}")
    for j, row in enumerate(cells):
        print(
            "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        )
        if j == 0:
            print("  ".join("-" * w for w in widths))


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"meta": meta, **payload}, indent=2) + "\n")
    return path


def interval(per_seed: np.ndarray, samples: int = 5000, seed: int = 0) -> tuple[float, float, float]:
    """Mean over seeds and its 95% percentile bootstrap interval."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_seed), size=(samples, len(per_seed)))
    means = per_seed[idx].mean(1)
    return float(per_seed.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def ratio_interval(
    a: np.ndarray, b: np.ndarray, samples: int = 5000, seed: int = 1
) -> tuple[float, float, float]:
    """``mean(a) / mean(b)`` over seeds with a paired 95% bootstrap interval."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(samples, len(a)))
    ratios = a[idx].mean(1) / b[idx].mean(1)
    return float(a.mean() / b.mean()), float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975))


def cell(summary: tuple[float, float, float], fmt: str) -> str:
    """``mean [low, high]``."""
    m, lo, hi = summary
    return f"{m:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def plot(
    runs: dict[str, Path | tuple[np.ndarray, np.ndarray]],
    baselines: dict[str, float],
    output: Path,
    title: str,
    ylabel: str,
    xlabel: str = "environment steps (per seed)",
) -> Path:
    """Each run's curve with a 95% bootstrap band over seeds; baselines as lines. A run is a run
    folder (its evaluation curve) or ``(steps [P], values [P, seeds])``."""
    import matplotlib

    from frl.plot import bootstrap_band, load_curve

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for i, (label, run_dir) in enumerate(runs.items()):
        steps, returns = load_curve(run_dir) if isinstance(run_dir, Path) else run_dir
        center, low, high = bootstrap_band(returns)
        ax.plot(steps, center, color=f"C{i}", label=f"{label} ({returns.shape[1]} seeds, 95% band)")
        ax.fill_between(steps, low, high, color=f"C{i}", alpha=0.25, linewidth=0)
    for i, (name, value) in enumerate(baselines.items()):
        ax.axhline(value, color=f"C{len(runs) + i}", linestyle="--", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(output)
    plt.close(fig)
    return output
