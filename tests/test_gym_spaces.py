"""Honest gymnasium adapters: every space frl cannot serve is refused when the environment is
built, with the space named (it was once silently taken for another, or crashed in a network)."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from frl import envs
from frl.algos import ppo, sac
from frl.cli import main


class _Env(gymnasium.Env):
    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


VECTOR = spaces.Box(-1.0, 1.0, (3,), np.float32)
CASES = {
    "MultiBinary": (
        VECTOR,
        spaces.MultiBinary(3),
        "action space MultiBinary(3); frl's agents take Discrete or Box",
    ),
    "MultiDiscrete": (VECTOR, spaces.MultiDiscrete([2, 3]), "action space MultiDiscrete([2 3])"),
    "DictObs": (spaces.Dict({"a": VECTOR}), spaces.Discrete(2), "observation space Dict; frl takes one Box"),
    "TupleObs": (spaces.Tuple((VECTOR, VECTOR)), spaces.Discrete(2), "observation space Tuple"),
    "Matrix": (spaces.Box(-1.0, 1.0, (4, 5), np.float32), spaces.Discrete(2), "observations of shape [4, 5]"),
    "Uint8Vector": (spaces.Box(0, 255, (6,), np.uint8), spaces.Discrete(2), "uint8 vector observations"),
    "ShiftedDiscrete": (VECTOR, spaces.Discrete(3, start=1), "Discrete actions must start at 0"),
}


@pytest.fixture(scope="module", autouse=True)
def registered():
    for name, (obs, action, _) in CASES.items():
        gymnasium.register(f"FrlTest/{name}-v0", entry_point=lambda o=obs, a=action: _Env(o, a))
    gymnasium.register(
        "FrlTest/Unbounded-v0",
        entry_point=lambda: _Env(VECTOR, spaces.Box(-np.inf, np.inf, (1,), np.float32)),
        max_episode_steps=50,
    )
    yield
    for name in [*CASES, "Unbounded"]:
        gymnasium.registry.pop(f"FrlTest/{name}-v0", None)


@pytest.mark.parametrize("name", list(CASES))
def test_unsupported_spaces_are_refused_naming_the_space(name):
    with pytest.raises(ValueError, match=f"gym: FrlTest/{name}-v0 has .*{_escape(CASES[name][2])}"):
        envs.make(f"gym:FrlTest/{name}-v0")


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_sac_refuses_unbounded_actions_and_ppo_takes_them():
    env = envs.make("gym:FrlTest/Unbounded-v0")
    with pytest.raises(
        ValueError, match=r"sac squashes actions into their bounds; gym:FrlTest/Unbounded-v0 has unbounded"
    ):
        sac.make_train(sac.Config(env_id="gym:FrlTest/Unbounded-v0"), env)
    ppo.make_train(ppo.Config(env_id="gym:FrlTest/Unbounded-v0"), env)  # a Gaussian needs no bounds


def test_the_command_line_refuses_with_one_line(capsys):
    assert main(["train", "ppo", "--env", "gym:FrlTest/MultiBinary-v0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has action space MultiBinary(3)" in err[0]
