"""The Stable-Baselines3 peer for SAC on Pendulum-v1 at frl's (CleanRL's) settings: 1 env, buffer
1M, batch 256, learning from 5k steps, one gradient step per env step, tau 0.005, twin 256x256
critics, automatic temperature. SB3 takes one learning rate for actor, critics and temperature
(3e-4 here; frl's defaults use 3e-4 for the actor and 1e-3 for critics and temperature).

One seed per process, in its own virtual environment; prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

from _result import run_sb3

if __name__ == "__main__":
    run_sb3(
        "SAC",
        "Pendulum-v1",
        __doc__,
        learning_rate=3e-4,
        buffer_size=1_000_000,
        learning_starts=5_000,
        batch_size=256,
        tau=0.005,
        gamma=0.99,
        train_freq=1,
        gradient_steps=1,
        policy_kwargs={"net_arch": [256, 256]},
    )
