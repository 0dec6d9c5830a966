"""Memory: recurrent PPO against feed-forward PPO on partially observable tasks, same budget.

For each task (``--tasks``) and method, ``--seeds`` seeds train in one vmapped ``frl.run`` with
the task's preset (the same environments, steps and optimizer for both methods; the recurrent
agent swaps the MLP for an encoder and a GRU) and are evaluated on 64 first episodes each. A
seed passes when its evaluation return reaches the task's threshold:

* ``MemoryLength-<N>-v0`` (bsuite's memory_length, one bit): return >= 0.9 (optimum 1; any
  policy of the current observation alone returns 0 in expectation);
* ``CartPoleNoVelocity-v1``: return >= 300 (of 500), where a policy of position and angle alone
  plateaus well below.

    python benchmarks/bench_memory.py                           # MemoryLength-10, CartPoleNoVelocity, 8 seeds
    python benchmarks/bench_memory.py --tasks MemoryLength-5-v0 --seeds 2 --no-compile   # smoke
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import cell, interval, print_table, write_json

from frl.algos import ppo, recurrent_ppo
from frl.run import run

METHODS = {"recurrent_ppo": recurrent_ppo, "ppo": ppo}
STEPS = {"MemoryLength": 60_000, "CartPoleNoVelocity-v1": 200_000}
THRESHOLD = {"MemoryLength": 0.9, "CartPoleNoVelocity-v1": 300.0}
COLUMNS = ["task", "method", "eval return (mean [95% CI])", "seeds >= threshold", "env-steps/s", "wall s"]


def _family(task: str) -> str:
    return "MemoryLength" if task.startswith("MemoryLength") else task


def one(task: str, method: str, seeds: int, steps: int | None, compiled: bool) -> dict:
    module = METHODS[method]
    budget = steps or STEPS[_family(task)]
    config = module.Config.preset(task, total_timesteps=budget)
    start = time.perf_counter()
    result = run(module.make_train(config), seeds=seeds, compile=compiled, progress=False, eval_episodes=64)
    returns = np.array([float(r) for r in result.eval_returns])
    threshold = THRESHOLD[_family(task)]
    return {
        "task": task,
        "method": method,
        "steps": budget,
        "eval_returns": returns.tolist(),
        "summary": interval(returns),
        "threshold": threshold,
        "passed": int((returns >= threshold).sum()),
        "seeds": seeds,
        "env_steps_per_s": result.env_steps_per_s,
        "wall_s": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["MemoryLength-10-v0", "CartPoleNoVelocity-v1"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="steps per seed (default: per task)")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    rows = []
    for task in args.tasks:
        for method in args.methods:
            rows.append(one(task, method, args.seeds, args.steps, not args.no_compile))
            table = [
                [
                    r["task"],
                    r["method"],
                    cell(tuple(r["summary"]), ".2f"),
                    f"{r['passed']}/{r['seeds']} (>= {r['threshold']:g})",
                    f"{r['env_steps_per_s']:,.0f}",
                    f"{r['wall_s']:.0f}",
                ]
                for r in rows
            ]
            print_table("Memory tasks: recurrent vs feed-forward PPO", COLUMNS, table)
            write_json("bench_memory", {"rows": rows})


if __name__ == "__main__":
    main()
