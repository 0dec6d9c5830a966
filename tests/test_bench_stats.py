"""frl.bench.stats against rliable (the paper's reference implementation) and the definitions.

Point estimates must equal rliable's to 1e-6 on the same score matrices; interval estimates come
from different random streams (rliable draws from numpy's global RandomState through arch), so
they are compared within bootstrap noise: the interval ends' Monte-Carlo error at these sizes is
below 0.01 (aggregates, 10,000 resamples) and 0.015 (improvement, rliable at 1,000), the
tolerances 0.02 and 0.03.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from rliable import library, metrics

from frl.bench import stats


def _scores(seed: int, runs: int = 8, tasks: int = 6, ties: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.6, 0.35, (runs, tasks))
    if ties:  # solved tasks tie at the cap; a coarse task ties often
        x[:, 0] = np.minimum(x[:, 0] + 0.5, 1.0)
        x[:, -1] = np.round(x[:, -1], 1)
    return x


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("runs,tasks", [(8, 6), (5, 3), (10, 1), (3, 4)])
def test_aggregates_equal_rliable(seed, runs, tasks):
    x = _scores(seed, runs, tasks)
    assert stats.aggregate_mean(x) == pytest.approx(metrics.aggregate_mean(x), abs=1e-6)
    assert stats.aggregate_median(x) == pytest.approx(metrics.aggregate_median(x), abs=1e-6)
    assert stats.aggregate_iqm(x) == pytest.approx(metrics.aggregate_iqm(x), abs=1e-6)
    assert stats.optimality_gap(x) == pytest.approx(metrics.aggregate_optimality_gap(x), abs=1e-6)
    assert stats.optimality_gap(x, 0.5) == pytest.approx(metrics.aggregate_optimality_gap(x, 0.5), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_probability_of_improvement_equals_rliable(seed):
    x, y = _scores(seed, 8, 5), _scores(seed + 10, 10, 5)
    y[:, 3] = x[:8, 3].repeat(2)[:10]  # shared values: ties across algorithms
    assert stats.probability_of_improvement(x, y) == pytest.approx(
        metrics.probability_of_improvement(x, y), abs=1e-6
    )
    same = _scores(seed, 6, 3)  # identical runs: every task counts 1/2
    assert stats.probability_of_improvement(same, same) == pytest.approx(0.5, abs=1e-12)
    assert metrics.probability_of_improvement(same, same) == pytest.approx(0.5, abs=1e-12)


def test_score_distribution_equals_rliable():
    x = _scores(4, 8, 6)
    taus = np.linspace(-0.5, 2.0, 26)
    np.testing.assert_allclose(
        stats.score_distribution(x, taus), library.score_distributions(x, taus), atol=1e-12
    )


def test_definitions_on_a_worked_example():
    # 4 runs x 2 tasks: pooled 8 scores, IQM drops the 2 lowest and 2 highest
    x = np.array([[0.0, 1.0], [0.2, 0.9], [0.4, 2.0], [0.6, -1.0]])
    assert stats.aggregate_iqm(x) == pytest.approx(np.mean([0.2, 0.4, 0.6, 0.9]))
    assert stats.aggregate_mean(x) == pytest.approx((0.3 + 0.725) / 2)
    assert stats.optimality_gap(x) == pytest.approx(1 - np.mean([0.0, 0.2, 0.4, 0.6, 1.0, 0.9, 1.0, -1.0]))
    y = np.array([[0.1, 1.0], [0.5, 1.0]])
    # task 0: x beats 0.1 in 3 of 4, 0.5 in 1 of 4 -> 4/8; task 1: vs 1.0 ties once, wins once each
    p0 = 4 / 8
    p1 = (2 * 1 + 0.5 * 2) / 8
    assert stats.probability_of_improvement(x, y) == pytest.approx((p0 + p1) / 2)
    assert stats.iqm(np.arange(10.0)) == pytest.approx(scipy.stats.trim_mean(np.arange(10.0), 0.25))


def test_intervals_match_rliable_within_bootstrap_noise():
    x = _scores(7, 8, 6)
    np.random.seed(0)  # rliable's StratifiedBootstrap draws from numpy's global state
    fns = (
        metrics.aggregate_median,
        metrics.aggregate_iqm,
        metrics.aggregate_mean,
        metrics.aggregate_optimality_gap,
    )
    points, cis = library.get_interval_estimates(
        {"x": x}, lambda s: np.array([f(s) for f in fns]), reps=10_000
    )
    mine = stats.interval_table({"x": x}, reps=10_000, seed=0)["x"]
    for k, name in enumerate(stats.AGGREGATES):
        point, low, high = mine[name]
        assert point == pytest.approx(points["x"][k], abs=1e-6)
        assert low == pytest.approx(cis["x"][0][k], abs=0.02)
        assert high == pytest.approx(cis["x"][1][k], abs=0.02)


def test_improvement_interval_matches_rliable_within_bootstrap_noise():
    x, y = _scores(8, 8, 4), _scores(9, 8, 4) - 0.1
    np.random.seed(0)
    points, cis = library.get_interval_estimates(
        {"xy": (x, y)}, metrics.probability_of_improvement, reps=1_000
    )  # rliable runs scipy's Mann-Whitney per task per resample: 1,000 take ~9 s; noise ~0.01
    point, low, high = stats.stratified_bootstrap(stats.probability_of_improvement, x, y, reps=20_000)
    assert float(point) == pytest.approx(points["xy"], abs=1e-6)
    assert low == pytest.approx(cis["xy"][0], abs=0.03)
    assert high == pytest.approx(cis["xy"][1], abs=0.03)


def test_bootstrap_is_stratified_and_reproducible():
    # a task whose runs are all equal keeps its value in every resample: no mixing across tasks
    x = np.stack([np.full(6, 3.0), np.arange(6.0)], axis=1)
    point, low, high = stats.stratified_bootstrap(lambda m: m.mean(axis=-2)[..., 0], x, reps=500)
    assert (point, low, high) == (3.0, 3.0, 3.0)
    a = stats.stratified_bootstrap(stats.aggregate_iqm, _scores(1), reps=3000, seed=5)
    b = stats.stratified_bootstrap(stats.aggregate_iqm, _scores(1), reps=3000, seed=5, chunk=700)
    np.testing.assert_allclose(np.array(a), np.array(b))
    # the percentile interval of the mean of one task matches the textbook bootstrap's spread
    rng = np.random.default_rng(0)
    v = rng.normal(size=(40, 1))
    _, low, high = stats.stratified_bootstrap(stats.aggregate_mean, v, reps=20_000)
    half = 1.96 * v.std() / np.sqrt(40)
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="runs, tasks"):
        stats.aggregate_iqm(np.zeros(5))
    with pytest.raises(ValueError, match="tasks"):
        stats.probability_of_improvement(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="reference return equals its random"):
        stats.normalize(np.zeros(3), 1.0, 1.0)
    with pytest.raises(ValueError, match="level"):
        stats.stratified_bootstrap(stats.aggregate_mean, np.zeros((3, 2)), level=1.5)
    np.testing.assert_allclose(stats.normalize(np.array([22.0, 500.0]), 22.0, 500.0), [0.0, 1.0])
