"""frl.envs.check and `frl check-env`: environments that break the contract are reported, one
line per problem, and well-behaved ones pass."""

from __future__ import annotations

import dataclasses
import math
import sys

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces

from frl.cli import main
from frl.envs.check import check
from frl.envs.classic_control import CartPole
from frl.envs.micro_combat import MicroCombat


@dataclasses.dataclass(frozen=True)
class NaNObservations(CartPole):
    def observe(self, physics):
        obs = super().observe(physics)
        return torch.where(physics[..., :1].abs() > -1, torch.full_like(obs, math.nan), obs)


@dataclasses.dataclass(frozen=True)
class TimeLimitAsTerminal(CartPole):
    """Reports its time limit as a terminal state (and never terminates otherwise)."""

    def transition(self, physics, action, params):
        physics, reward, _ = super().transition(physics, action, params)
        return physics * 0.0, reward, torch.zeros_like(reward, dtype=torch.bool)

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = super().step(key, state, action, params)
        return obs, state, reward, terminated | truncated, torch.zeros_like(truncated), info


@dataclasses.dataclass(frozen=True)
class Noisy(CartPole):
    def transition(self, physics, action, params):
        physics, reward, terminated = super().transition(physics, action, params)
        return physics + 1e-3 * torch.randn_like(physics), reward, terminated


@dataclasses.dataclass(frozen=True)
class ShortObservations(CartPole):
    def observe(self, physics):
        return super().observe(physics)[..., :3]


@dataclasses.dataclass(frozen=True)
class Cornered(MicroCombat):
    """Masks every action of agent 1: it has nothing legal to do."""

    def action_mask(self, physics):
        mask = super().action_mask(physics)
        return torch.cat([mask[..., :1, :], torch.zeros_like(mask[..., 1:2, :]), mask[..., 2:, :]], dim=-2)


@dataclasses.dataclass(frozen=True)
class WrongState(MicroCombat):
    def observe(self, physics):
        obs = super().observe(physics)
        return {**obs, "state": obs["state"][..., :-1]}


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "gym:CartPole-v1", "MicroCombat-2s3z-v0"])
def test_well_behaved_environments_pass(env_id):
    assert check(env_id, steps=250) == []


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (NaNObservations(), "observation 0: non-finite values"),
        (TimeLimitAsTerminal(), "every episode that reached the time limit (500 steps) reported terminated"),
        (Noisy(), "non-deterministic: obs 1 differs between two runs from seed 0"),
        (ShortObservations(), "observation 0: shape [3], the space declares [4]"),
        (Cornered(), "observation 0: an agent has no legal action"),
        (
            WrongState(),
            "observation 0: `state` is torch.float32 [41], the environment declares torch.float32 [42]",
        ),
    ],
)
def test_broken_pure_environments_are_reported(env, problem):
    problems = check(env, steps=520)
    assert any(p.startswith(problem) for p in problems), problems


class _NaNReward(gymnasium.Env):
    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), math.nan, False, False, {}


@pytest.mark.filterwarnings("ignore:.*The reward is a NaN value")
def test_a_gymnasium_environment_from_the_users_module(tmp_path, monkeypatch, capsys):
    """``gym:<module>:<id>`` imports the module (which registers the id) first."""
    (tmp_path / "my_envs.py").write_text(
        "import gymnasium\n"
        "from tests.test_check_env import _NaNReward\n"
        "gymnasium.register('MyNaN-v0', entry_point=_NaNReward, max_episode_steps=20)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_envs", raising=False)
    assert main(["check-env", "gym:my_envs:MyNaN-v0", "--steps", "30"]) == 1
    printed = capsys.readouterr().out
    assert "gym:my_envs:MyNaN-v0: step 0: reward nan is not one finite number" in printed
    gymnasium.registry.pop("MyNaN-v0", None)


def test_check_env_of_an_unknown_id_is_one_line(capsys):
    assert main(["check-env", "Cartpole"]) == 2
    assert capsys.readouterr().err.startswith("frl: error: unknown environment 'Cartpole'")


def test_random_return_is_a_random_policys_mean_return():
    from frl import envs, random
    from frl.envs.check import random_return

    # a uniformly random CartPole policy lasts ~22 steps (1 reward each)
    assert 17.0 < random_return(envs.make("CartPole-v1"), random.key(0), episodes=400) < 27.0
    with pytest.raises(ValueError, match="random_return: Pendulum-v1 has Box"):
        random_return(envs.make("Pendulum-v1"), random.key(0))
