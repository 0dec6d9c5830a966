"""frl beside its peers: PPO on CartPole-v1 (CleanRL's settings, the pure torch environment),
N seeds in one vmapped ``frl.run``, compiled (``--eager`` for the uncompiled loop).

``--learning-rate``/``--clip-coef`` change hyper-parameter values (data in the state), so a rerun
with other values reuses the compile cache: the warm-start row of ``run.py``. Prints one
``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import time

start = time.perf_counter()  # the whole run: imports, compile and training

import torch
from _result import emit

import frl
from frl.algos import ppo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=500_000, help="steps per seed")
    parser.add_argument("--eager", action="store_true")
    parser.add_argument("--learning-rate", type=float, default=2.5e-4)
    parser.add_argument("--clip-coef", type=float, default=0.2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = ppo.Config(
        total_timesteps=args.steps, learning_rate=args.learning_rate, clip_coef=args.clip_coef
    )
    train = ppo.make_train(config)
    result = frl.run(train, seeds=args.seeds, compile=not args.eager, progress=False, warm_start=True)
    emit(
        "frl" + (" eager" if args.eager else ""),
        ("torch",),
        seeds=args.seeds,
        steps_per_seed=result.env_steps,
        run_s=result.wall_s - result.compile_s,
        wall_s=time.perf_counter() - start,
        compile_s=result.compile_s,
        returns=[sum(result.eval_returns) / len(result.eval_returns)],
    )


if __name__ == "__main__":
    main()
