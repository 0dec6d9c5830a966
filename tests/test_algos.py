"""frl.algos: validated configs, units that compose into step, and learning on reduced budgets."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils import _pytree as pytree

from frl import random
from frl.algos import ALGORITHMS, dqn, ppo, reinforce, sac, tabular
from frl.run import run


@pytest.mark.parametrize(
    ("config_cls", "field", "value", "message"),
    [
        (ppo.Config, "num_envs", 0, "`num_envs` must be a positive int"),
        (ppo.Config, "learning_rate", -1.0, "`learning_rate` must be a positive number"),
        (ppo.Config, "gae_lambda", 1.5, "`gae_lambda` must lie in [0, 1]"),
        (ppo.Config, "num_minibatches", 3, "must be divisible by `num_minibatches` (3)"),
        (ppo.Config, "hidden", (), "`hidden` must be a non-empty tuple"),
        (dqn.Config, "end_e", 2.0, "`end_e` must lie in [0, 1]"),
        (dqn.Config, "loss", "l1", "`loss` must be 'mse' or 'huber'"),
        (dqn.Config, "target_network_frequency", 15, "must be a multiple of `train_frequency`"),
        (sac.Config, "tau", -0.1, "`tau` must lie in [0, 1]"),
        (sac.Config, "batch_size", 0, "`batch_size` must be a positive int"),
        (reinforce.Config, "num_steps", 100, "must be a multiple of `rollout_chunk`"),
        (reinforce.Config, "value_coef", -1.0, "`value_coef` must be non-negative"),
    ],
)
def test_config_rejects_bad_values(config_cls, field, value, message):
    with pytest.raises(ValueError, match=message.replace("[", "\\[").replace("(", "\\(").replace(")", "\\)")):
        config_cls(**{field: value})


def test_configs_are_frozen_and_follow_cleanrl():
    cfg = ppo.Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.learning_rate = 1.0  # type: ignore[misc]
    assert (cfg.num_envs, cfg.num_steps, cfg.update_epochs, cfg.num_minibatches, cfg.learning_rate) == (
        4,
        128,
        4,
        4,
        2.5e-4,
    )
    d = dqn.Config()
    assert (d.learning_rate, d.buffer_size, d.target_network_frequency, d.batch_size, d.learning_starts) == (
        2.5e-4,
        10_000,
        500,
        128,
        10_000,
    )
    s = sac.Config()
    assert (s.policy_lr, s.q_lr, s.tau, s.batch_size, s.learning_starts, s.gamma) == (
        3e-4,
        1e-3,
        0.005,
        256,
        5000,
        0.99,
    )


def test_action_type_is_checked():
    with pytest.raises(ValueError, match="dqn needs discrete actions; Pendulum-v1"):
        dqn.make_train(dqn.Config(env_id="Pendulum-v1"))
    with pytest.raises(ValueError, match="sac needs continuous actions; CartPole-v1"):
        sac.make_train(sac.Config(env_id="CartPole-v1"))
    with pytest.raises(TypeError, match=r"expected a ppo\.Config"):
        ppo.make_train(dqn.Config())


SMALL = {
    "ppo": ppo.Config(
        num_envs=2, num_steps=32, num_minibatches=2, update_epochs=2, hidden=(8,), total_timesteps=256
    ),
    "ppo-continuous": ppo.Config(
        env_id="Pendulum-v1",
        num_envs=2,
        num_steps=32,
        num_minibatches=2,
        update_epochs=2,
        hidden=(8,),
        total_timesteps=256,
    ),
    "reinforce": reinforce.Config(num_envs=2, num_steps=32, hidden=(8,), total_timesteps=256),
    "dqn": dqn.Config(learning_starts=0, batch_size=8, buffer_size=100, hidden=(8,), total_timesteps=100),
    "sac": sac.Config(learning_starts=0, batch_size=8, hidden=(8,), total_timesteps=50),
    "tabular": tabular.Config(num_envs=2, rollout_chunk=4, total_timesteps=64, init_q=1.0),
    "tabular-soft": tabular.Config(
        algorithm="soft_q",
        exploration="boltzmann",
        num_envs=2,
        rollout_chunk=4,
        total_timesteps=64,
        init_q=1.0,
    ),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_step_is_the_composition_of_units(name):
    config = SMALL[name]
    module = ALGORITHMS[name.split("-")[0]]
    train = module.make_train(config)
    state = train.init(random.key(0))
    by_step, _ = train.step(state)
    by_units = state
    for unit in train.units:
        for _ in range(unit.repeats):
            by_units, _ = unit.fn(by_units)
    assert pytree.tree_structure(by_step) == pytree.tree_structure(state)
    for a, b in zip(pytree.tree_leaves(by_step), pytree.tree_leaves(by_units), strict=True):
        assert torch.equal(a, b)
    assert int(by_step["env_steps"]) == train.steps_per_iteration
    changed = [
        not torch.equal(a, b)
        for a, b in zip(
            pytree.tree_leaves(state["learner", "params"]),
            pytree.tree_leaves(by_step["learner", "params"]),
            strict=True,
        )
    ]
    assert any(changed), "one iteration updates the parameters"


def _best_evals(result) -> list[float]:
    evals = [row["eval_return_per_member"] for row in result.history if "eval_return_per_member" in row]
    return [max(col) for col in zip(*evals, strict=True)]


def test_ppo_learns_cartpole_reduced():
    """CleanRL's settings, 4 seeds x 50k steps: mean deterministic return >= 150."""
    train = ppo.make_train(ppo.Config(total_timesteps=51_200))
    result = run(train, seeds=4, total_steps=51_200, compile=False, progress=False, eval_episodes=5)
    assert sum(result.eval_returns) / 4 >= 150, result.eval_returns


def test_reinforce_learns_cartpole_reduced():
    train = reinforce.make_train(reinforce.Config(total_timesteps=40_960))
    result = run(
        train, seeds=4, total_steps=40_960, compile=False, progress=False, eval_episodes=5, eval_every=10_240
    )
    assert sum(_best_evals(result)) / 4 >= 150, result.history[-1]


def test_dqn_learns_cartpole_reduced():
    cfg = dqn.Config(
        total_timesteps=15_000,
        learning_starts=1000,
        exploration_fraction=0.2,
        learning_rate=1e-3,
        target_network_frequency=200,
        buffer_size=20_000,
    )
    result = run(
        dqn.make_train(cfg),
        seeds=2,
        total_steps=15_000,
        compile=False,
        progress=False,
        eval_episodes=5,
        eval_every=3_000,
    )
    assert sum(_best_evals(result)) / 2 >= 150, result.history


def test_sac_learns_pendulum_reduced():
    cfg = sac.Config(total_timesteps=5_000, learning_starts=1000, hidden=(64, 64), batch_size=128)
    result = run(
        sac.make_train(cfg),
        seeds=1,
        total_steps=5_000,
        compile=False,
        progress=False,
        eval_episodes=5,
        eval_every=1_000,
    )
    assert max(_best_evals(result)) >= -400, result.history
