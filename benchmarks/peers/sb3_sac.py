"""The Stable-Baselines3 peer for SAC on Pendulum-v1 at frl's (CleanRL's) settings: 1 env, buffer
1M, batch 256, learning from 5k steps, one gradient step per env step, tau 0.005, twin 256x256
critics, automatic temperature. SB3 takes one learning rate for actor, critics and temperature
(3e-4 here; frl's defaults use 3e-4 for the actor and 1e-3 for critics and temperature).

One seed per process, in its own virtual environment; prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import time

import torch
from _result import emit
from stable_baselines3 import SAC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    model = SAC(
        "MlpPolicy",
        "Pendulum-v1",
        learning_rate=3e-4,
        buffer_size=1_000_000,
        learning_starts=5_000,
        batch_size=256,
        tau=0.005,
        gamma=0.99,
        train_freq=1,
        gradient_steps=1,
        policy_kwargs={"net_arch": [256, 256]},
        device="cpu",
        seed=args.seed,
    )
    model.learn(total_timesteps=args.steps)
    wall = time.perf_counter() - start
    episodes = [info["r"] for info in model.ep_info_buffer]
    emit(
        "sb3",
        ("stable-baselines3", "torch"),
        seeds=1,
        steps_per_seed=int(model.num_timesteps),
        run_s=wall,
        wall_s=wall,
        returns=episodes,
    )


if __name__ == "__main__":
    main()
