"""Property tests (hypothesis) of the return operators' input validation and identities: any
shape disagreement is a ValueError naming the argument (never a silent broadcast), and GAE's
limits are the TD error (lambda = 0) and the bootstrapped discounted return (lambda = 1)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from frl import returns

SHAPES = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)
NAMES = ("reward", "value", "next_value", "terminated", "done")


def _inputs(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return {
        "reward": torch.randn(shape, generator=g, dtype=torch.float64),
        "value": torch.randn(shape, generator=g, dtype=torch.float64),
        "next_value": torch.randn(shape, generator=g, dtype=torch.float64),
        "terminated": torch.rand(shape, generator=g) < 0.2,
        "done": torch.rand(shape, generator=g) < 0.3,
    }


@settings(max_examples=60, deadline=None)
@given(shape=SHAPES, other=SHAPES, which=st.sampled_from(NAMES), seed=st.integers(0, 2**16))
def test_gae_refuses_any_shape_disagreement_naming_the_argument(shape, other, which, seed):
    args = _inputs(shape, seed)
    args[which] = _inputs(other, seed)[which]
    if other == shape:
        advantage, target = returns.gae(**args, gamma=0.9, lmbda=0.8)
        assert advantage.shape == target.shape == shape
        return
    with pytest.raises(ValueError, match="must share one shape") as err:
        returns.gae(**args, gamma=0.9, lmbda=0.8)
    # the first argument whose shape differs from `reward`'s is named
    named = "value" if which == "reward" else which
    assert str(err.value).startswith(f"gae: `{named}` has shape")


@settings(max_examples=40, deadline=None)
@given(shape=SHAPES, seed=st.integers(0, 2**16), gamma=st.floats(0.0, 1.0))
def test_gae_with_lambda_zero_is_the_td_error(shape, seed, gamma):
    args = _inputs(shape, seed)
    advantage, _ = returns.gae(**args, gamma=gamma, lmbda=0.0)
    delta = args["reward"] + gamma * (~args["terminated"]) * args["next_value"] - args["value"]
    torch.testing.assert_close(advantage, delta)


@settings(max_examples=40, deadline=None)
@given(shape=SHAPES, seed=st.integers(0, 2**16), gamma=st.floats(0.0, 1.0))
def test_gae_with_lambda_one_and_no_ends_is_the_bootstrapped_return(shape, seed, gamma):
    args = _inputs(shape, seed)
    args["terminated"] = torch.zeros(shape, dtype=torch.bool)
    args["done"] = torch.zeros(shape, dtype=torch.bool)
    # consecutive values: the next value of step t is the value of step t + 1
    args["next_value"] = torch.cat([args["value"][..., 1:], args["next_value"][..., -1:]], -1)
    _, target = returns.gae(**args, gamma=gamma, lmbda=1.0)
    T = shape[-1]
    powers = gamma ** torch.arange(T, dtype=torch.float64)
    for t in range(T):
        rest = (powers[: T - t] * args["reward"][..., t:]).sum(-1)
        expected = rest + gamma ** (T - t) * args["next_value"][..., -1]
        torch.testing.assert_close(target[..., t], expected)
