"""frl.algos: validated configs, units that compose into step, the registry, and learning on reduced
budgets. The state spec is tested in ``test_spec.py``, config fields in ``test_config.py``."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils import _pytree as pytree

from frl import random
from frl.algos import AGENTS, a2c, dqn, ppo, reinforce, sac, tabular
from frl.cli.train import ALGORITHM_NAMES
from frl.run import run


@pytest.mark.parametrize(
    ("config_cls", "field", "value", "message"),
    [
        (ppo.Config, "num_envs", 0, "ppo.Config: `num_envs` must be an int in [1, inf), got 0"),
        (ppo.Config, "learning_rate", -1.0, "`learning_rate` must be a finite number in (0, inf)"),
        (
            ppo.Config,
            "learning_rate",
            float("nan"),
            "`learning_rate` must be a finite number in (0, inf), got nan",
        ),
        (ppo.Config, "clip_coef", float("nan"), "`clip_coef` must be a finite number in [0, 1], got nan"),
        (ppo.Config, "gae_lambda", 1.5, "`gae_lambda` must be a finite number in [0, 1]"),
        (ppo.Config, "num_minibatches", 3, "must be divisible by `num_minibatches` (3)"),
        (ppo.Config, "hidden", (), "`hidden` must be a non-empty tuple of positive ints"),
        (dqn.Config, "end_e", 2.0, "`end_e` must be a finite number in [0, 1]"),
        (dqn.Config, "loss", "l1", "`loss` must be one of ['mse', 'huber']"),
        (
            dqn.Config,
            "learning_starts",
            -5,
            "dqn.Config: `learning_starts` must be an int in [0, inf), got -5",
        ),
        (dqn.Config, "target_network_frequency", 15, "must be a multiple of `train_frequency`"),
        (sac.Config, "tau", -0.1, "`tau` must be a finite number in [0, 1]"),
        (sac.Config, "batch_size", 0, "`batch_size` must be an int in [1, inf)"),
        (a2c.Config, "num_steps", 7, "a2c.Config: `num_steps` (7) must be a multiple of `rollout_chunk` (5)"),
        (reinforce.Config, "value_coef", -1.0, "`value_coef` must be a finite number in [0, inf)"),
        (a2c.Config, "ent_coef", float("inf"), "a2c.Config: `ent_coef` must be a finite number in [0, inf)"),
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
    "a2c": a2c.Config(hidden=(8,), total_timesteps=400),
    "tabular": tabular.Config(num_envs=2, total_timesteps=64, init_q=1.0),
    "tabular-soft": tabular.Config(
        algorithm="soft_q",
        exploration="boltzmann",
        num_envs=2,
        total_timesteps=64,
        init_q=1.0,
    ),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_step_is_the_composition_of_units(name):
    config = SMALL[name]
    train = AGENTS[name.split("-")[0]].make_train(config)
    state = train.init(random.key(0))
    by_step, _ = train.step(state)
    by_units = state
    for unit in train.collect + train.learn:
        for _ in range(unit.repeats):
            by_units, _ = unit.fn(by_units)
    assert pytree.tree_structure(by_step) == pytree.tree_structure(state)
    for a, b in zip(pytree.tree_leaves(by_step), pytree.tree_leaves(by_units), strict=True):
        assert torch.equal(a, b)
    assert int(by_step["counters", "env_steps"]) == train.steps_per_iteration
    assert train.units == train.collect + train.learn
    changed = [
        not torch.equal(a, b)
        for a, b in zip(
            pytree.tree_leaves(state["params"]),
            pytree.tree_leaves(by_step["params"]),
            strict=True,
        )
    ]
    assert any(changed), "one iteration updates the parameters"


def test_the_registry_builds_every_agent_and_says_what_it_handles():
    assert tuple(sorted(AGENTS)) == ALGORITHM_NAMES  # the names `frl train --help` prints
    for name, agent in AGENTS.items():
        assert agent.name == name and agent.config.agent == name
        train = agent.make_train(agent.config())
        assert train.name == name and train.factory is agent.make_train
    from frl import envs
    from frl.algos import get

    assert get("dqn").handles(envs.make("CartPole-v1")) and not get("dqn").handles(envs.make("Pendulum-v1"))
    recommender = envs.make("RecSim-InterestEvolution-v0")
    assert get("ppo").handles(recommender) and get("slateq").handles(recommender)
    assert not get("sac").handles(recommender) and not get("slateq").handles(envs.make("CartPole-v1"))
    combat = envs.make("MicroCombat-3m-v0")
    assert all(get(a).handles(combat) for a in ("mappo", "ippo", "vdn", "qmix"))
    assert not get("ppo").handles(combat) and not get("mappo").handles(envs.make("CartPole-v1"))
    with pytest.raises(ValueError, match="unknown algorithm 'a3c'; choose one of a2c, dqn"):
        get("a3c")


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


def test_a2c_learns_cartpole_reduced():
    """rl-baselines3-zoo's settings, 2 seeds x 100k steps: the best evaluation reaches 200."""
    result = run(
        a2c.make_train(a2c.Config(total_timesteps=100_000)),
        seeds=2,
        compile=False,
        progress=False,
        eval_episodes=5,
        eval_every=20_000,
    )
    assert sum(_best_evals(result)) / 2 >= 200, result.history


def test_sac_learns_pendulum_reduced():
    """2 seeds x 5k steps (4k learning steps): the mean best evaluation reaches -400 (a random
    policy scores about -1200). One seed alone sits on the edge of learning at this budget."""
    cfg = sac.Config(total_timesteps=5_000, learning_starts=1000, hidden=(64, 64), batch_size=128)
    result = run(
        sac.make_train(cfg),
        seeds=2,
        total_steps=5_000,
        compile=False,
        progress=False,
        eval_episodes=5,
        eval_every=1_000,
    )
    assert sum(_best_evals(result)) / 2 >= -400, result.history


def test_a_zero_rollout_chunk_is_the_whole_segment_where_the_environment_loops_in_the_graph():
    cartpole = ppo.make_train(ppo.Config())  # CartPole is scannable: one call per segment
    assert (cartpole.consumes.chunk, cartpole.collect[0].repeats) == (128, 1)
    acrobot = ppo.make_train(ppo.Config(env_id="Acrobot-v1", num_steps=100))  # unrolled: <= 16
    assert (acrobot.consumes.chunk, acrobot.collect[0].repeats) == (10, 10)
    assert ppo.make_train(ppo.Config(rollout_chunk=32)).consumes.chunk == 32
    # the minibatch updates are one loop in one compiled call
    update = cartpole.learn[1]
    assert update.name == "update" and update.scanned and update.repeats == 16
