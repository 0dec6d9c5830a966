"""frl.envs.meta: the task distributions of meta-RL (a task drawn per trial, the previous action
and reward observed), their statistics and errors."""

from __future__ import annotations

import pytest
import torch

from frl import envs, random
from frl.envs.meta import BernoulliBandits, RandomMDPs


def test_bandit_trials_draw_a_task_each_and_pay_each_arm_its_mean():
    env = envs.make("BernoulliBandits-v0")
    assert (env.arms, env.pulls, env.observation_space.shape) == (10, 100, (12,))
    obs, state = env.reset(random.key(0), num_envs=2000)
    means = env.means(state["physics"])
    assert torch.all(obs[:, :11] == 0) and abs(float(means.mean()) - 0.5) < 0.02  # U[0, 1] means
    arm = torch.full((2000,), 3)
    total = torch.zeros(2000)
    for t in range(env.pulls):
        obs, state, reward, terminated, _, _ = env.step(random.key(t + 1), state, arm)
        total += reward
        if t < env.pulls - 1:  # the pull is observed: the arm, the reward, the time
            assert torch.all(obs[:, 3] == 1) and torch.equal(obs[:, 10], reward)
            assert torch.allclose(obs[:, 11], torch.full((2000,), (t + 1) / 100))
    assert torch.all(terminated)
    # every trial's rate is its arm's mean (binomial noise: sd <= 0.05 per trial)
    assert float((total / 100 - means[:, 3]).abs().mean()) < 0.05
    assert not torch.equal(env.means(state["physics"]), means)  # the next trial's task is new


def test_random_mdp_trials_keep_their_mdp_across_episodes_and_restart_each_episode_in_state_0():
    env = RandomMDPs(states=4, actions=3, horizon=5, episodes=3)
    assert env.id == "RandomMDPs-4x3-3x5-v0" and envs.make("RandomMDPs-v0").max_episode_steps == 100
    obs, state = env.reset(random.key(1), num_envs=500)
    P, mu = env.tables(state["physics"])
    torch.testing.assert_close(P.sum(-1), torch.ones(500, 4, 3))
    assert abs(float(mu.mean()) - 1.0) < 0.1 and torch.all(obs[:, 0] == 1)
    rewards = []
    for t in range(15):
        action = torch.full((500,), t % 3)
        expected = env.expected_reward(state["physics"], action)
        obs, state, reward, terminated, _, _ = env.step(random.key(10 + t), state, action)
        rewards.append(reward - expected)
        if t < 14:
            torch.testing.assert_close(env.tables(state["physics"])[0], P)  # one MDP per trial
            ended = (t + 1) % 5 == 0
            assert torch.all(obs[:, 4 + 3 + 1] == float(ended))
            if ended:
                assert torch.all(obs[:, 0] == 1)  # the next episode starts in state 0
    noise = torch.stack(rewards)
    assert abs(float(noise.mean())) < 0.05 and abs(float(noise.std()) - 1.0) < 0.05  # N(mu, 1)
    assert torch.all(terminated)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: BernoulliBandits(arms=0), "BernoulliBandits: `arms` must be a positive int, got 0"),
        (lambda: RandomMDPs(horizon=2.5), r"RandomMDPs: `horizon` must be a positive int, got 2\.5"),
    ],
)
def test_bad_sizes_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()
