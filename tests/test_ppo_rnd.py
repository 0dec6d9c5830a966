"""PPO+RND (frl.algos.ppo_rnd): its state, what its iteration updates and keeps fixed, a reduced
learning test on DeepSea, and bad input."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest
import torch

import frl
from frl import algos, random
from frl.algos import ppo_rnd


def _train(**settings):
    settings = dict(num_envs=4, num_steps=32, num_minibatches=2, update_epochs=2, **settings)
    config = ppo_rnd.Config(env_id="DeepSea-6-v0", **settings)
    return ppo_rnd.make_train(config)


def test_one_iteration_updates_the_predictor_and_the_moments_and_never_the_target():
    train = _train()
    state = train.init(random.key(0))
    assert set(state["params"].keys()) == {"actor", "critic", "critic_int", "predictor", "target"}
    after, metrics = train.step(state.clone())
    assert {"intrinsic_reward", "predictor_loss", "intrinsic_value_loss"} <= set(metrics.keys())
    own = after["scratch", "rnd"]
    assert float(own["obs_moments", "count"]) == 128 and float(own["ret_moments", "count"]) == 128
    for k in state["params", "target"].keys(True, True):
        assert torch.equal(after["params", "target", k], state["params", "target", k])
    assert any(
        not torch.equal(after["params", "predictor", k], state["params", "predictor", k])
        for k in state["params", "predictor"].keys(True, True)
    )
    mask = after["data", "rnd_mask"]
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and 0.0 < float(mask.mean()) < 0.6  # ~ a quarter
    # the stored predictor inputs are the next observations, normalised and clipped
    assert after["data", "rnd_observation"].abs().max() <= 5.0


def test_ppo_rnd_learns_deep_sea_8():
    config = ppo_rnd.Config.preset("DeepSea-8-v0", total_timesteps=16_384)
    result = frl.run(ppo_rnd.make_train(config), seeds=2, compile=False, progress=False, eval_episodes=1)
    assert min(result.eval_returns) > 0.9, result.eval_returns  # the treasure (0.99) in both seeds


def test_image_observations_get_convolutional_networks_and_per_pixel_moments():
    config = ppo_rnd.Config(
        env_id="Breakout-MinAtar",
        num_envs=2,
        num_steps=16,
        num_minibatches=2,
        update_epochs=1,
        rnd_features=8,
    )
    train = ppo_rnd.make_train(config)
    state = train.init(random.key(0))
    assert set(state["params", "predictor"].keys()) == {"torso", "head"}  # MinAtar's conv torso
    after, metrics = train.step(state)
    assert after["scratch", "rnd", "obs_moments", "mean"].shape == (10, 10, 4)
    assert torch.isfinite(metrics["predictor_loss"]) and float(metrics["raw_intrinsic_reward"]) > 0


def test_observations_rnd_cannot_normalise_are_refused_naming_them():
    @dataclasses.dataclass(frozen=True)
    class MatrixCartPole(frl.envs.classic_control.CartPole):
        id: ClassVar[str] = "MatrixCartPole-v0"
        observation_space: ClassVar[frl.envs.Box] = frl.envs.Box((-9.0,) * 4, (9.0,) * 4, (2, 2))

        def observe(self, physics):
            return physics.reshape(*physics.shape[:-1], 2, 2)

    with pytest.raises(ValueError, match=r"MatrixCartPole-v0 has observations of shape \[2, 2\]"):
        ppo_rnd.make_train(ppo_rnd.Config(), MatrixCartPole())
    assert "ppo_rnd" in algos.AGENTS and algos.get("ppo_rnd").handles(frl.envs.make("DeepSea-v0"))
