"""Reliable statistics over a benchmark's score matrices (Agarwal et al. 2021, "Deep RL at the edge
of the statistical precipice"), the definitions ``rliable`` implements, vectorised in numpy.

A score matrix is ``scores [R, T]``: one row per run (seed), one column per task, usually
normalised (:func:`normalize`: random policy = 0, a stated reference = 1). Every aggregate
takes extra leading dimensions ``[..., R, T]`` and reduces the last two, so that a stratified
bootstrap evaluates all its resamples in one call.

* :func:`aggregate_mean` ``= mean_t mean_r x[r, t]``; :func:`aggregate_median` ``= median_t
  mean_r x[r, t]``;
* :func:`aggregate_iqm`, the interquartile mean of all ``R * T`` scores: sorted, the lowest and
  highest ``floor(R T / 4)`` dropped, the rest averaged (``scipy.stats.trim_mean(x, 0.25)``);
* :func:`optimality_gap` ``= gamma - mean min(x, gamma)`` (how far below ``gamma``, default 1);
* :func:`probability_of_improvement` ``P(X > Y) = mean_t [ P(x_t > y_t) + P(x_t = y_t) / 2 ]``,
  the Mann-Whitney U statistic of each task over ``R_x * R_y`` pairs, averaged over tasks;
* :func:`score_distribution` (performance profile) ``F(tau) = P(x > tau)`` over all runs and
  tasks;
* :func:`stratified_bootstrap`: percentile intervals from resampling the runs of each task with
  replacement, every task separately (the strata), each score matrix independently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "AGGREGATES",
    "aggregate_iqm",
    "aggregate_mean",
    "aggregate_median",
    "interval_table",
    "iqm",
    "normalize",
    "optimality_gap",
    "pairwise_improvement",
    "probability_of_improvement",
    "score_distribution",
    "stratified_bootstrap",
]


def _matrix(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim < 2 or scores.shape[-1] == 0 or scores.shape[-2] == 0:
        raise ValueError(f"{name}: expected a [..., runs, tasks] matrix, got shape {list(scores.shape)}")
    return scores


def iqm(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Interquartile mean along ``axis`` (all values when None): sorted, the lowest and highest
    ``floor(n / 4)`` dropped, the middle averaged. ``n < 4`` keeps every value (the mean)."""
    values = np.asarray(values, dtype=np.float64)
    if axis is None:
        values, axis = values.reshape(-1), 0
    n = values.shape[axis]
    if n == 0:
        raise ValueError("iqm: no values")
    cut = n // 4
    ordered = np.sort(values, axis=axis)
    return np.take(ordered, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def aggregate_mean(scores: np.ndarray) -> np.ndarray:
    """Mean over tasks of each task's mean over runs: ``[..., R, T] -> [...]``."""
    return _matrix(scores).mean(axis=-2).mean(axis=-1)


def aggregate_median(scores: np.ndarray) -> np.ndarray:
    """Median over tasks of each task's mean over runs: ``[..., R, T] -> [...]``."""
    return np.median(_matrix(scores).mean(axis=-2), axis=-1)


def aggregate_iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean of all runs of all tasks pooled: ``[..., R, T] -> [...]``."""
    scores = _matrix(scores)
    return iqm(scores.reshape(*scores.shape[:-2], -1), axis=-1)


def optimality_gap(scores: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """``gamma - mean(min(x, gamma))`` over runs and tasks: the shortfall below ``gamma``, with
    scores above it counting as ``gamma`` (lower is better). ``[..., R, T] -> [...]``."""
    scores = _matrix(scores)
    return gamma - np.minimum(scores, gamma).mean(axis=(-2, -1))


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``P(X > Y)``: per task, the fraction of run pairs ``(i, j)`` with ``x[i] > y[j]`` plus half
    the ties, averaged over tasks. ``x [..., Rx, T]``, ``y [..., Ry, T]`` (same tasks) ``-> [...]``.
    A task whose runs are identical in ``x`` and ``y`` counts 0.5, as any tie does."""
    x, y = _matrix(x, "x"), _matrix(y, "y")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"probability_of_improvement: x has {x.shape[-1]} tasks, y {y.shape[-1]}")
    diff = x[..., :, None, :] - y[..., None, :, :]  # [..., Rx, Ry, T]
    wins = (diff > 0).mean(axis=(-3, -2)) + 0.5 * (diff == 0).mean(axis=(-3, -2))
    return wins.mean(axis=-1)


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """The performance profile ``F(tau) = P(score > tau)`` over every run of every task, at each
    threshold: ``[..., R, T], taus [K] -> [..., K]``."""
    scores = _matrix(scores)
    taus = np.asarray(taus, dtype=np.float64)
    flat = scores.reshape(*scores.shape[:-2], 1, -1)
    return (flat > taus[:, None]).mean(axis=-1)


def normalize(returns: np.ndarray, random: np.ndarray | float, reference: np.ndarray | float) -> np.ndarray:
    """``(returns - random) / (reference - random)``: 0 at the random policy's return, 1 at the
    reference's, per task (broadcast over the last axis). Refuses a reference equal to random."""
    random = np.asarray(random, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    span = reference - random
    if np.any(span == 0):
        raise ValueError("normalize: a task's reference return equals its random return")
    return (np.asarray(returns, dtype=np.float64) - random) / span


AGGREGATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Median": aggregate_median,
    "IQM": aggregate_iqm,
    "Mean": aggregate_mean,
    "Optimality gap": optimality_gap,
}
"""The four aggregates of the paper's Figure 9, in its order (the gap: lower is better)."""


def stratified_bootstrap(
    fn: Callable[..., np.ndarray],
    *scores: np.ndarray,
    reps: int = 50_000,
    level: float = 0.95,
    seed: int = 0,
    chunk: int = 5_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(point, low, high)``: ``fn(*scores)`` and its percentile interval at ``level``.

    Each resample draws, for every score matrix ``[R, T]`` and every task ``t`` separately, ``R``
    runs of that task with replacement (a stratified bootstrap over runs; tasks are fixed), and
    evaluates ``fn`` on all ``reps`` resamples at once, ``chunk`` at a time. ``fn`` maps
    ``[..., R, T]`` matrices to ``[..., K]`` or ``[...]`` values (the aggregates here do). The
    interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled values
    (linear interpolation, as ``np.percentile``)."""
    if not scores:
        raise ValueError("stratified_bootstrap: no score matrices")
    if not 0 < level < 1:
        raise ValueError(f"stratified_bootstrap: `level` must be in (0, 1), got {level}")
    if reps < 1:
        raise ValueError(f"stratified_bootstrap: `reps` must be positive, got {reps}")
    mats = [_matrix(s) for s in scores]
    for m in mats:
        if m.ndim != 2:
            raise ValueError(f"stratified_bootstrap: each score matrix is [runs, tasks], got {list(m.shape)}")
    rng = np.random.default_rng(seed)
    point = np.asarray(fn(*mats), dtype=np.float64)
    values = []
    for start in range(0, reps, chunk):
        n = min(chunk, reps - start)
        resampled = []
        for m in mats:
            runs, tasks = m.shape
            rows = rng.integers(0, runs, size=(n, runs, tasks))
            resampled.append(m[rows, np.arange(tasks)])
        values.append(np.asarray(fn(*resampled), dtype=np.float64))
    values = np.concatenate(values, axis=0)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha], axis=0)
    return point, low, high


def interval_table(
    score_dict: dict[str, np.ndarray],
    aggregates: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    reps: int = 50_000,
    seed: int = 0,
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """``{algorithm: {aggregate: (point, low, high)}}`` for each algorithm's ``[R, T]`` matrix."""
    aggregates = AGGREGATES if aggregates is None else aggregates
    table: dict[str, dict[str, tuple[float, float, float]]] = {}
    for name, scores in score_dict.items():
        table[name] = {}
        for agg, fn in aggregates.items():
            point, low, high = stratified_bootstrap(fn, scores, reps=reps, seed=seed)
            table[name][agg] = (float(point), float(low), float(high))
    return table


def pairwise_improvement(
    score_dict: dict[str, np.ndarray], pairs: Sequence[tuple[str, str]], reps: int = 2_000, seed: int = 0
) -> dict[tuple[str, str], tuple[float, float, float]]:
    """``P(X > Y)`` with its stratified-bootstrap interval for each ``(X, Y)`` in ``pairs``."""
    out = {}
    for x, y in pairs:
        point, low, high = stratified_bootstrap(
            probability_of_improvement, score_dict[x], score_dict[y], reps=reps, seed=seed
        )
        out[(x, y)] = (float(point), float(low), float(high))
    return out
