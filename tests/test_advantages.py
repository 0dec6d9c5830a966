"""GAE written into a segment: the critic reads each next observation only where it differs from
the next step's (``frl.algos.on_policy.bootstrap_values``), with the same values as reading all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from tensordict import TensorDict
from torch.func import vmap

from frl import envs, random
from frl.algos import on_policy as op
from frl.envs.classic_control import CartPole


@dataclass(frozen=True)
class ShortCartPole(CartPole):
    """CartPole with a 20-step time limit: random actions both terminate and truncate."""

    max_episode_steps: ClassVar[int] = 20


@dataclass(frozen=True)
class OwnStep(CartPole):
    """A subclass with its own ``step``: nothing is known about its truncations."""

    def step(self, key, state, action, params=None):
        return super().step(key, state, action, params)


def segment_of(env, steps: int, num_envs: int = 3, seed: int = 0) -> TensorDict:
    """``steps`` consecutive random-action steps of ``num_envs`` environments, ``[E, T]``."""
    key, k_reset = random.split(random.key(seed))
    obs, state = env.reset(k_reset, num_envs=num_envs)
    rows = []
    for _ in range(steps):
        key, k_act, k_step = random.split(key, 3)
        action = random.randint(k_act, (num_envs,), 0, 2)
        next_obs, state, reward, terminated, truncated, info = env.step(k_step, state, action)
        done = terminated | truncated
        flags = {"reward": reward, "terminated": terminated, "truncated": truncated, "done": done}
        rows.append({"observation": obs, "next": {"observation": info["final_observation"], **flags}})
        obs = next_obs
    return torch.stack([TensorDict(r, batch_size=[num_envs]) for r in rows], dim=1)


def critic(params, obs):
    return torch.tanh(obs @ params["w"]).sum(-1)


PARAMS = TensorDict({"w": torch.randn(4, 8, generator=torch.Generator().manual_seed(3))}, [])


def advantages(segment, truncations):
    return op.with_advantages(segment, critic, PARAMS, gamma=0.99, lmbda=0.95, truncations=truncations)


def test_most_truncations_is_the_time_limits_bound_or_unknown():
    env = ShortCartPole()
    assert [envs.most_truncations(env, t) for t in (1, 19, 20, 21, 64)] == [1, 1, 1, 2, 4]
    assert envs.most_truncations(envs.make("CartPole-v1"), 128) == 1
    assert envs.most_truncations(envs.make("FrozenLake-v1"), 250) == 3  # tabular, 100 steps
    assert envs.most_truncations(OwnStep(), 128) is None
    assert envs.most_truncations(envs.make("MicroCombat-3m-v0"), 128) is None  # its own step
    assert envs.most_truncations(object(), 128) is None


def test_bootstrapping_from_the_next_steps_values_changes_nothing():
    env = ShortCartPole()
    segment = segment_of(env, 64)
    ended = segment["next", "done"]
    truncated_only = segment["next", "truncated"] & ~segment["next", "terminated"]
    # the rollout holds what the shortcut must get right: terminations, truncations, both in a row
    assert bool(segment["next", "terminated"].any()) and int(truncated_only.sum(-1).max()) >= 2
    assert int(ended.sum()) > int(truncated_only.sum())
    full = advantages(segment, None)
    bound = envs.most_truncations(env, 64)
    short = advantages(segment, bound)
    for key in op.ADVANTAGE_KEYS:
        torch.testing.assert_close(short[key], full[key], rtol=1e-6, atol=1e-6)
    # a looser bound (rows with fewer truncations than picks) and the tightest one agree too
    tight = int(truncated_only.sum(-1).max())
    for k in (tight, bound + 3):
        torch.testing.assert_close(
            advantages(segment, k)["advantage"], full["advantage"], rtol=1e-6, atol=1e-6
        )


def test_the_critic_reads_the_observations_and_a_few_next_ones():
    segment = segment_of(ShortCartPole(), 64)
    seen = []

    def counting(params, obs):
        seen.append(tuple(obs.shape))
        return critic(params, obs)

    op.with_advantages(segment, counting, PARAMS, gamma=0.99, lmbda=0.95, truncations=4)
    assert seen == [(3, 64 + 4 + 1, 4)]


def test_a_truncation_at_the_last_step_and_none_at_all():
    env = ShortCartPole()
    segment = segment_of(env, 40, seed=1)
    last = segment[:, 20:40]  # starts where the first episodes' clocks differ
    never = segment.clone()
    never["next", "truncated"] = torch.zeros_like(never["next", "truncated"])
    never["next", "done"] = never["next", "terminated"].clone()
    for seg in (last, segment):
        torch.testing.assert_close(
            advantages(seg, 2)["advantage"], advantages(seg, None)["advantage"], rtol=1e-6, atol=1e-6
        )
    # with no truncation the values are the shifted ones, and `truncations=0` is allowed
    values = advantages(never, 0)
    v = critic(PARAMS, never["observation"])
    torch.testing.assert_close(values["state_value"], v)


def test_vmapped_over_seeds_as_the_agents_run_it():
    env = ShortCartPole()
    segments = torch.stack([segment_of(env, 64, seed=s) for s in range(4)])
    batched = vmap(lambda s: advantages(s, 4)["advantage"])(segments)
    for s in range(4):
        torch.testing.assert_close(
            batched[s], advantages(segments[s], None)["advantage"], rtol=1e-6, atol=1e-6
        )


def test_more_truncations_than_the_bound_is_an_error_naming_it():
    segment = segment_of(ShortCartPole(), 64)
    with pytest.raises(ValueError, match=r"more than `truncations` \(1\)"):
        advantages(segment, 1)
