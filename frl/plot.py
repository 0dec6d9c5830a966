"""Learning curves from run folders (``frl plot``): matplotlib is an optional extra.

x: environment steps per seed; y: deterministic evaluation return. Each run is one colour: a
line through the mean over seeds with a 95 % bootstrap confidence band (``band="bootstrap"``),
or through the interquartile mean with its bootstrap band (``band="iqm"``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["bootstrap_band", "load_curve", "plot_runs"]


def load_curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(steps [P], returns [P, seeds])`` from ``run_dir/metrics.jsonl`` (evaluation rows).

    A line that is not JSON (a run killed mid-write leaves a truncated last line) is skipped
    with a warning naming the file and line; null returns (a non-finite value) become NaN."""
    steps, returns = [], []
    path = Path(run_dir) / "metrics.jsonl"
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            row = json.loads(line)
        except ValueError:
            warnings.warn(f"{path}:{number}: not a JSON line (truncated?); skipped", stacklevel=2)
            continue
        if isinstance(row, dict) and "eval_return_per_member" in row:
            steps.append(row["env_steps"])
            returns.append([np.nan if r is None else r for r in row["eval_return_per_member"]])
    if not steps:
        raise ValueError(f"{run_dir}: metrics.jsonl holds no evaluations")
    return np.asarray(steps), np.asarray(returns, dtype=np.float64)


def _iqm(x: np.ndarray, axis: int) -> np.ndarray:
    x = np.sort(x, axis=axis)
    n = x.shape[axis]
    cut = n // 4
    return np.take(x, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def bootstrap_band(
    returns: np.ndarray, stat: str = "mean", samples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(center, low, high)`` per point of ``returns [P, seeds]``: the statistic over seeds and
    its percentile bootstrap interval (seeds resampled with replacement)."""
    fn = (lambda x, axis: x.mean(axis=axis)) if stat == "mean" else _iqm
    rng = np.random.default_rng(seed)
    n = returns.shape[1]
    idx = rng.integers(0, n, size=(samples, n))
    resampled = fn(returns[:, idx], axis=2)  # [P, samples]
    alpha = (1.0 - level) / 2.0
    return (
        fn(returns, axis=1),
        np.quantile(resampled, alpha, axis=1),
        np.quantile(resampled, 1 - alpha, axis=1),
    )


def _label(run_dir: Path) -> str:
    results = run_dir / "results.json"
    try:
        meta = json.loads(results.read_text())
        return f"{run_dir.name}: {meta['algo']} {meta['env']} ({len(meta['seeds'])} seeds)"
    except (OSError, ValueError, KeyError, TypeError):  # no results (yet), or not readable
        return run_dir.name


def plot_runs(run_dirs: Sequence[Path], output: Path, band: str = "bootstrap") -> Path:
    """Draw every run's curve into one PNG; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    stat = "mean" if band == "bootstrap" else "iqm"
    for i, run_dir in enumerate(run_dirs):
        steps, returns = load_curve(run_dir)
        center, low, high = bootstrap_band(returns, stat)
        colour = f"C{i % 10}"
        ax.plot(steps, center, color=colour, label=_label(Path(run_dir)))
        ax.fill_between(steps, low, high, color=colour, alpha=0.25, linewidth=0)
    ax.set_xlabel("environment steps (per seed)")
    ax.set_ylabel(f"evaluation return ({stat}, 95% bootstrap band)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    plt.close(fig)
    return output
