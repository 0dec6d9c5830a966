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
    "DictAction": (
        VECTOR,
        spaces.Dict({"a": spaces.Discrete(2)}),
        "frl's agents take Discrete, Box, MultiDiscrete or MultiBinary actions",
    ),
    "ShiftedMultiDiscrete": (
        VECTOR,
        spaces.MultiDiscrete([2, 3], start=[0, 1]),
        "MultiDiscrete actions must be one dim of choices that start at 0",
    ),
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
    assert main(["train", "ppo", "--env", "gym:FrlTest/DictAction-v0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has action space Dict('a': Discrete(2))" in err[0]


class _Bandit(gymnasium.Env):
    """A one-step contextual bandit over a factorised action: each action dim ``i`` earns 1 when
    it equals the target ``int(obs_i > 0) * (nvec_i - 1)`` (so a random policy earns
    ``sum_i 1 / nvec_i``, the best ``len(nvec)``)."""

    def __init__(self, action_space):
        self.action_space = action_space
        self.nvec = (
            np.full(action_space.n, 2) if isinstance(action_space, spaces.MultiBinary) else action_space.nvec
        )
        self.observation_space = spaces.Box(-1.0, 1.0, (len(self.nvec),), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._obs = self.np_random.uniform(-1, 1, len(self.nvec)).astype(np.float32)
        return self._obs, {}

    def step(self, action):
        target = (self._obs > 0).astype(np.int64) * (self.nvec - 1)
        reward = float((np.asarray(action).astype(np.int64) == target).sum())
        return self.reset()[0], reward, True, False, {}


@pytest.mark.parametrize(
    ("space", "random_return"),
    [(spaces.MultiDiscrete([2, 3]), 0.5 + 1 / 3), (spaces.MultiBinary(3), 1.5)],
    ids=["MultiDiscrete", "MultiBinary"],
)
def test_ppo_learns_a_factorised_policy_and_dqn_and_sac_refuse_it(space, random_return):
    from frl.algos import dqn
    from frl.run import run

    name = f"FrlTest/Bandit{type(space).__name__}-v0"
    gymnasium.register(name, entry_point=lambda: _Bandit(space), max_episode_steps=1)
    try:
        env = envs.make(f"gym:{name}")
        assert env.action_space.nvec == ((2, 3) if isinstance(space, spaces.MultiDiscrete) else (2, 2, 2))
        for algo in (dqn, sac):
            with pytest.raises(
                ValueError, match="need a factorised policy: ppo, a2c and reinforce take them"
            ):
                algo.make_train(algo.Config(env_id=f"gym:{name}"), env)
        config = ppo.Config(
            env_id=f"gym:{name}",
            num_envs=4,
            num_steps=32,
            total_timesteps=6144,
            learning_rate=3e-3,
            num_minibatches=2,
            update_epochs=4,
            hidden=(32,),
            ent_coef=0.0,
        )
        result = run(ppo.make_train(config, env), seeds=1, compile=False, progress=False, eval_episodes=20)
        best = float(len(env.action_space.nvec))
        assert sum(result.eval_returns) / len(result.eval_returns) > best - 0.3 > random_return
    finally:
        gymnasium.registry.pop(name, None)
