"""Tiny agent configurations the run-safety tests share (seconds per run, eager)."""

from __future__ import annotations

from frl.algos import dqn, ppo

SMALL_PPO = ppo.Config(
    num_envs=2,
    num_steps=16,
    rollout_chunk=16,
    num_minibatches=2,
    update_epochs=1,
    hidden=(8,),
    total_timesteps=160,
)
"""PPO: 32 steps per iteration, two minibatch updates."""

SMALL_DQN = dqn.Config(
    learning_starts=40,
    train_frequency=10,
    target_network_frequency=50,
    batch_size=8,
    buffer_size=200,
    hidden=(8,),
    total_timesteps=100,
)
"""DQN: 10 steps per iteration, learning from step 40 (iteration 4)."""
