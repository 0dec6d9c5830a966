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


# --------------------------------------------------------------------------------------
# The losses' batch validation: a per-sample entry of any shape but [B] is refused, naming it
# --------------------------------------------------------------------------------------

from tensordict import TensorDict  # noqa: E402

import frl.random  # noqa: E402
from tests import loss_setup as S  # noqa: E402

_LOSSES = {
    # name: (call(batch), a valid batch)
    "dqn": (lambda b: S.DQN(S.dqn_params(0), b), lambda: S.transitions(0)),
    "soft_q": (lambda b: S.SOFT_Q(S.dqn_params(0), b), lambda: S.transitions(0)),
    "sac": (
        lambda b: S.SAC(S.sac_params(0), b, key=frl.random.key(0)),
        lambda: S.transitions(0, continuous=True),
    ),
    "discrete_sac": (lambda b: S.DISCRETE_SAC(S.sac_params(0, discrete=True), b), lambda: S.transitions(0)),
    "ppo": (lambda b: S.PPO(S.actor_critic_params(0), b, value_clip_eps=0.2), lambda: S.on_policy(0)),
    "reinforce": (lambda b: S.REINFORCE(S.actor_critic_params(0), b), lambda: S.on_policy(0)),
}
_READS = {
    "dqn": [("next", "reward"), ("next", "terminated"), "_weight", "steps_to_next_obs"],
    "soft_q": [("next", "reward"), ("next", "terminated"), "_weight", "steps_to_next_obs"],
    "sac": [("next", "reward"), ("next", "terminated"), "_weight", "steps_to_next_obs"],
    "discrete_sac": [("next", "reward"), ("next", "terminated"), "action", "_weight", "steps_to_next_obs"],
    "ppo": ["action_log_prob", "advantage", "value_target", "state_value"],
    "reinforce": ["value_target"],
}
_CASES = [(loss, key) for loss, keys in _READS.items() for key in keys]
OTHER_SHAPES = st.lists(st.integers(1, 2 * S.BATCH), min_size=0, max_size=3).map(tuple)


def _entry(batch, key, shape):
    like = batch.get(key, None)
    if key == "steps_to_next_obs":
        return torch.ones(shape, dtype=torch.int64)
    if key == "action" or (like is not None and not like.is_floating_point()):
        return torch.zeros(shape, dtype=like.dtype if like is not None else torch.int64)
    return torch.rand(shape)


@settings(max_examples=150, deadline=None)
@given(case=st.sampled_from(_CASES), shape=OTHER_SHAPES)
def test_a_per_sample_entry_of_another_shape_is_refused_naming_it(case, shape):
    """Every per-sample entry a loss reads (rewards, flags, log-probs, advantages, targets, old
    values, replay weights, n-step counts) must be ``[B]``: any other shape, including ones that
    would broadcast (``[B, 1]``, ``[1]``, ``[]``, ``[B, B]``), is a ValueError naming the key."""
    loss, key = case
    call, make = _LOSSES[loss]
    batch = TensorDict(make().to_dict(), batch_size=[])  # so that entries of any shape can be set
    name = key if isinstance(key, str) else ".".join(key)
    if shape == (S.BATCH,):
        batch.set(key, _entry(batch, key, shape))
        call(batch)
        return
    batch.set(key, _entry(batch, key, shape))
    with pytest.raises(ValueError, match=f"`{name}`"):
        call(batch)


@settings(max_examples=40, deadline=None)
@given(
    case=st.sampled_from([(loss, key) for loss, key in _CASES if key not in ("_weight", "steps_to_next_obs")])
)
def test_a_missing_entry_is_a_key_error_naming_it(case):
    loss, key = case
    call, make = _LOSSES[loss]
    name = key if isinstance(key, str) else ".".join(key)
    with pytest.raises(KeyError, match=name):
        call(make().exclude(key))
