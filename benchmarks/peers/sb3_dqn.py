"""The Stable-Baselines3 peer for DQN on CartPole-v1 at frl's (CleanRL's) settings: 1 env, Adam
2.5e-4, buffer 10k, batch 128, a gradient step every 10 env steps, hard target update every 500,
epsilon 1 -> 0.05 over half the run, learning from 10k steps, 120x84 ReLU network (SB3 keeps
its Huber loss; frl's default is CleanRL's MSE).

One seed per process, in its own virtual environment; prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

from _result import run_sb3

if __name__ == "__main__":
    run_sb3(
        "DQN",
        "CartPole-v1",
        __doc__,
        learning_rate=2.5e-4,
        buffer_size=10_000,
        learning_starts=10_000,
        batch_size=128,
        tau=1.0,
        gamma=0.99,
        train_freq=10,
        gradient_steps=1,
        target_update_interval=500,
        exploration_fraction=0.5,
        exploration_initial_eps=1.0,
        exploration_final_eps=0.05,
        policy_kwargs={"net_arch": [120, 84]},
    )
