"""frl beside its peers: one agent (``--algo ppo|dqn|sac``) with its defaults (CleanRL's settings)
on its default pure torch environment, N seeds in one vmapped ``frl.run``, compiled (``--eager``
for the uncompiled loop), with warm starts.

``--hyper name=value`` changes hyper-parameter values (data in the state), so a rerun with other
values loads the saved compilation: the warm-start row of ``run.py``. Prints one ``RESULT {json}``
line.
"""

from __future__ import annotations

import argparse
import time

start = time.perf_counter()  # the whole run: imports, compile and training

import torch
from _result import emit

import frl
from frl import algos
from frl.envs.minatar import Breakout, MinAtarParams


def final_return(algo: str, result: frl.driver.RunResult) -> float:
    """The evaluation's mean return; on MinAtar, like the JAX peer's, the training episodes' (the
    last log point's mean episode return over seeds, a stochastic policy's)."""
    if algo == "ppo-minatar":
        return float(
            next(row["episode_return"] for row in reversed(result.history) if "episode_return" in row)
        )
    return sum(result.eval_returns) / len(result.eval_returns)


class NoStickyBreakout(Breakout):
    """MinAtar Breakout with ``sticky_action_prob = 0`` (gymnax's Breakout has no sticky actions)."""

    def default_params(self) -> MinAtarParams:
        return MinAtarParams(sticky_action_prob=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=500_000, help="steps per seed")
    parser.add_argument("--eager", action="store_true")
    parser.add_argument("--hyper", action="append", default=[], help="name=value, repeatable")
    args = parser.parse_args()
    torch.set_num_threads(1)
    values = {name: float(value) for name, value in (item.split("=", 1) for item in args.hyper)}
    if args.algo == "ppo-minatar":  # MinAtar Breakout without sticky actions, as gymnax's
        agent, env = algos.get("ppo"), NoStickyBreakout()
        config = agent.config.preset(env.id, total_timesteps=args.steps, **values)
    else:
        agent, env = algos.get(args.algo), None
        config = agent.config(total_timesteps=args.steps, **values)
    result = frl.run(
        agent.make_train(config, env),
        seeds=args.seeds,
        compile=not args.eager,
        progress=False,
        warm_start=True,
    )
    emit(
        "frl" + (" eager" if args.eager else ""),
        ("torch",),
        seeds=args.seeds,
        steps_per_seed=result.env_steps,
        run_s=result.wall_s - result.compile_s,
        wall_s=time.perf_counter() - start,
        compile_s=result.compile_s,
        returns=[final_return(args.algo, result)],
    )


if __name__ == "__main__":
    main()
