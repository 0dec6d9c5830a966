"""Tabular Q-learning and soft Q-learning converge to frl.planning's fixed points."""

from __future__ import annotations

import pytest
import torch

from frl import envs
from frl import planning as pl
from frl.algos import tabular
from frl.envs.tabular import TabularEnv
from frl.run import run


def corridor():
    """Three cells in a row, the goal on the right; a move slips sideways (into a wall) 20% of the time."""
    return pl.gridworld(1, 3, slip=0.2, step_reward=-0.1, gamma=0.9)


@pytest.mark.parametrize(
    ("algorithm", "exploration"),
    [("q_learning", "epsilon_greedy"), ("q_learning", "boltzmann"), ("soft_q", "epsilon_greedy")],
)
def test_tabular_agents_converge_to_the_planning_fixed_points(algorithm, exploration):
    """8 seeds in one vmapped run: the typical seed's worst error over the live (s, a) pairs is
    within 0.06 of the right fixed point (a constant step size leaves a noise floor: over 32 seeds
    the mean worst error was 0.026-0.043 and single seeds reached 0.1), and the right fixed point
    is closer than the other one for every seed."""
    mdp = corridor()
    env = TabularEnv(mdp, max_episode_steps=30, name="corridor")
    config = tabular.Config(
        env_id="corridor",
        algorithm=algorithm,
        exploration=exploration,
        total_timesteps=20_000,
        num_envs=8,
        learning_rate=0.05,
        gamma=0.9,
        epsilon=0.5,
        temperature=1.0,
        alpha=0.1,
    )
    result = run(tabular.make_train(config, env), seeds=8, total_steps=20_000, compile=False, progress=False)
    learned = result.state["params", "online", "q"].double()
    hard = pl.value_iteration(mdp).q_values
    soft = pl.soft_value_iteration(mdp, 0.1).q_values
    expected, other = (soft, hard) if algorithm == "soft_q" else (hard, soft)
    live = ~mdp["terminal"]
    error = (learned[:, live] - expected[live]).abs().amax((-1, -2))
    assert float(error.median()) < 0.06 and float(error.max()) < 0.15, error
    assert (expected[live] - other[live]).abs().max() > 0.1  # the two fixed points are told apart
    to_other = (learned[:, live] - other[live]).abs().mean((-1, -2))
    assert ((learned[:, live] - expected[live]).abs().mean((-1, -2)) < to_other).all()


def test_tabular_ids_config_errors_and_a_frozen_lake_run():
    env = envs.make("FrozenLake-v1", is_slippery=False)
    assert env.num_states == 16 and env.action_space.n == 4 and env.max_episode_steps == 100
    assert envs.make("FrozenLake8x8-v1").num_states == 64
    assert envs.make("CliffWalking-v1").num_states == 48
    with pytest.raises(ValueError, match="`algorithm` must be one of"):
        tabular.Config(algorithm="sarsa")
    with pytest.raises(ValueError, match="`exploration` must be one of"):
        tabular.Config(exploration="greedy")
    with pytest.raises(ValueError, match="not a tabular environment"):
        tabular.make_train(tabular.Config(env_id="CartPole-v1"))
    # deterministic FrozenLake: Q-learning finds the goal (return 1)
    config = tabular.Config(
        env_id="FrozenLake-v1", total_timesteps=8_192, epsilon=0.3, learning_rate=0.2, init_q=0.5
    )
    result = run(
        tabular.make_train(config, env),
        seeds=2,
        total_steps=8_192,
        compile=False,
        progress=False,
        eval_episodes=2,
    )
    assert result.eval_returns == [1.0, 1.0]
    start = result.state["params", "online", "q"][:, 0].amax(-1)
    torch.testing.assert_close(start, torch.full((2,), 0.99**5), atol=0.02, rtol=0)  # 6 steps to the goal
