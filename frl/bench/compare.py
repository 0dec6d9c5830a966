"""``frl bench compare A B``: is the candidate ``B`` worse than the baseline ``A``?

For every cell (algorithm, task) both folders finished, with the same budget: the probability that
a run of ``A`` beats a run of ``B``, ``P(A > B)`` (the Mann-Whitney statistic over seed pairs,
:func:`frl.bench.stats.probability_of_improvement`), with a stratified-bootstrap interval, and the
change of the normalised IQM. Then the same per algorithm over its tasks, and over all cells.

A regression is flagged where the interval of ``P(A > B)`` lies above 1/2 *and* the normalised
IQM dropped by more than ``tolerance`` (default 0.05 of the random-to-reference range): both a
reliable and a material loss. The per-cell intervals are Bonferroni-corrected (level
``1 - 0.05 / cells``), so a rerun of the same configuration with other seeds is flagged with
probability at most about 5% over the whole comparison, not 5% per cell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from frl.bench import stats
from frl.bench.report import BenchData, load

__all__ = ["compare", "format_comparison"]


def _row(
    name: str, a: np.ndarray, b: np.ndarray, level: float, reps: int, tolerance: float, seed: int
) -> dict[str, Any]:
    point, low, high = stats.stratified_bootstrap(
        stats.probability_of_improvement, a, b, reps=reps, level=level, seed=seed
    )
    drop = float(stats.aggregate_iqm(a) - stats.aggregate_iqm(b))
    return {
        "name": name,
        "p_worse": float(point),
        "low": float(low),
        "high": float(high),
        "level": level,
        "iqm_a": float(stats.aggregate_iqm(a)),
        "iqm_b": float(stats.aggregate_iqm(b)),
        "drop": drop,
        "regression": bool(low > 0.5 and drop > tolerance),
    }


def compare(a: str | Path, b: str | Path, reps: int = 20_000, tolerance: float = 0.05) -> dict[str, Any]:
    """Compare two bench folders of one suite (see the module docstring): ``{"cells": [...],
    "algorithms": [...], "overall": {...}, "regressions": [names]}``; each row holds ``p_worse``
    = P(A > B), its interval, the normalised IQMs and ``regression``."""
    da, db = load(a), load(b)
    if da.suite != db.suite:
        raise ValueError(f"{a} ran suite {da.suite}, {b} ran {db.suite}: compare folders of one suite")
    shared = [(algo, env) for (algo, env) in da.cells if (algo, env) in db.cells]
    if not shared:
        raise ValueError(f"{a} and {b} share no finished cell")
    for algo, env in shared:
        sa, sb = da.cells[(algo, env)]["steps"], db.cells[(algo, env)]["steps"]
        if sa != sb:
            raise ValueError(
                f"{algo} on {env} ran {sa} steps per seed in {a} and {sb} in {b}: not comparable"
            )
    order = [(algo, env) for env in da.tasks for algo in da.algos if (algo, env) in shared]
    level = 1.0 - 0.05 / len(order)

    def norm(data: BenchData, algo: str, env: str) -> np.ndarray:
        return data.normalized(algo, env)[:, None]

    cells = [
        _row(f"{algo} on {env}", norm(da, algo, env), norm(db, algo, env), level, reps, tolerance, k)
        for k, (algo, env) in enumerate(order)
    ]
    algorithms = []
    for algo in da.algos:
        envs = [env for (x, env) in order if x == algo]
        if len(envs) > 1:
            ma = np.concatenate([norm(da, algo, e) for e in envs], axis=1)
            mb = np.concatenate([norm(db, algo, e) for e in envs], axis=1)
            algorithms.append(_row(f"{algo} ({len(envs)} tasks)", ma, mb, 0.95, reps, tolerance, 1000))
    seeds_a = {da.finals(*c).shape[0] for c in order}
    seeds_b = {db.finals(*c).shape[0] for c in order}
    overall = None
    if len(seeds_a) == 1 and len(seeds_b) == 1:  # every cell with the same seed count: one matrix
        ma = np.concatenate([norm(da, *c) for c in order], axis=1)
        mb = np.concatenate([norm(db, *c) for c in order], axis=1)
        overall = _row(f"all {len(order)} cells", ma, mb, 0.95, reps, tolerance, 2000)
    flagged = [r["name"] for r in cells + algorithms + ([overall] if overall else []) if r["regression"]]
    return {
        "a": str(a),
        "b": str(b),
        "tolerance": tolerance,
        "cells": cells,
        "algorithms": algorithms,
        "overall": overall,
        "regressions": flagged,
    }


def format_comparison(result: dict[str, Any]) -> list[str]:
    """The comparison as a text table and a verdict."""
    lines = [
        f"A (baseline) = {result['a']}",
        f"B (candidate) = {result['b']}",
        "P(B worse) = P(A > B) over seed pairs; normalised IQMs (random 0, reference 1); a regression: the"
        f" interval above 0.5 and a drop > {result['tolerance']:g}",
        "",
        f"{'':<34} {'P(B worse) [interval]':>26} {'IQM A':>7} {'IQM B':>7} {'drop':>7}",
    ]
    rows = result["cells"] + result["algorithms"] + ([result["overall"]] if result["overall"] else [])
    for k, r in enumerate(rows):
        if k == len(result["cells"]) or (k == len(result["cells"]) + len(result["algorithms"]) and k):
            lines.append("")
        ci = f"{r['p_worse']:.3f} [{r['low']:.3f}, {r['high']:.3f}]"
        mark = "  REGRESSION" if r["regression"] else ""
        lines.append(f"{r['name']:<34} {ci:>26} {r['iqm_a']:7.3f} {r['iqm_b']:7.3f} {r['drop']:7.3f}{mark}")
    lines.append("")
    if result["regressions"]:
        lines.append(f"{len(result['regressions'])} regressions: {', '.join(result['regressions'])}")
    else:
        lines.append("no regression")
    return lines
