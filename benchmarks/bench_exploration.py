"""Exploration on DeepSea: PPO against PPO+RND at the same budget, over sizes and seeds.

For each size ``N`` (``--sizes``) and method, ``--seeds`` seeds train in one vmapped ``frl.run``
(``DeepSea-<N>-v0``, actions randomised per cell, PPO's CartPole settings with 8 environments and
the same step budget per seed for both methods); a seed has solved the sea when its greedy policy
reaches the treasure (evaluation return > 0.9; the optimum is 0.99, any other path <= 0). The
table lists the seeds solved per (size, method), their 95% interval (Wilson), the share of
training episodes that found the treasure, and the largest size each method solved in at least
7 of 8 seeds (the issue's bar: PPO+RND >= 7 of 8 at size 20, PPO <= 1 of 8).

With ``--doorkey``, the same two methods on MiniGrid's DoorKey (``MiniGrid-DoorKey-8x8-v0``, the
pure torch version that steps as the ``minigrid`` package does) with the ``MiniGrid-DoorKey-*``
presets (rl-starter-files' PPO settings: 16 environments x 128 steps, learning rate 1e-3, 8
minibatches). A seed's success rate at a log point is the share of its environments whose last
finished episode reached the goal (any positive return), averaged over the last ``--window`` log
points; the table gives the frames at which it first reaches 0.9 (a seed that never does counts
as the budget: the mean is then a lower bound), the seeds that got there, and the final success
rate, with 95% bootstrap intervals.

    python benchmarks/bench_exploration.py                              # sizes 10 14 20, 8 seeds
    python benchmarks/bench_exploration.py --sizes 6 --seeds 2 --steps 20000 --no-compile   # smoke
    python benchmarks/bench_exploration.py --doorkey                    # DoorKey-8x8, 8 seeds
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
from _common import RESULTS, cell, interval, plot, print_table, write_json

from frl.algos import ppo, ppo_rnd
from frl.run import run

METHODS = {"ppo": (ppo.Config, ppo.make_train), "ppo+rnd": (ppo_rnd.Config, ppo_rnd.make_train)}
COLUMNS = ["size", "method", "solved", "95% interval", "mean train return", "env-steps/s", "wall s"]


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def one(method: str, size: int, seeds: int, steps: int, compiled: bool) -> dict:
    config_cls, make = METHODS[method]
    config = config_cls.preset(f"DeepSea-{size}-v0", total_timesteps=steps, num_envs=8, num_steps=128)
    start = time.perf_counter()
    result = run(make(config), seeds=seeds, compile=compiled, progress=False, eval_episodes=1)
    returns = [float(r) for r in result.eval_returns]
    found = [row.get("episode_return", 0.0) for row in result.history if "episode_return" in row]
    solved = sum(r > 0.9 for r in returns)
    return {
        "size": size,
        "method": method,
        "seeds": seeds,
        "solved": solved,
        "interval": wilson(solved, seeds),
        "eval_returns": returns,
        "mean_training_return": sum(found) / max(len(found), 1),
        "env_steps_per_s": result.env_steps_per_s,
        "wall_s": time.perf_counter() - start,
    }


def doorkey(method: str, size: int, seeds: int, steps: int, window: int, compiled: bool) -> dict:
    """One method on DoorKey-``size``: the success curve per seed and the frames to 0.9."""
    config_cls, make = METHODS[method]
    config = config_cls.preset(f"MiniGrid-DoorKey-{size}x{size}-v0", total_timesteps=steps)
    frames: list[int] = []
    success: list[list[float]] = []

    def record(state) -> None:  # the last finished episode of each environment: reached the goal?
        frames.append(int(state["counters", "env_steps"].reshape(-1)[0]))
        success.append((state["episodes", "last_return"] > 0).double().mean(-1).tolist())

    start = time.perf_counter()
    result = run(
        make(config),
        seeds=seeds,
        compile=compiled,
        progress=False,
        eval_episodes=1,
        log_every=max(steps // 100, 1),
        state_check=record,
    )
    curve = np.asarray(success)  # [log points, seeds]
    kernel = np.ones(window) / window
    smooth = np.stack([np.convolve(c, kernel)[: len(c)] for c in curve.T], 1)  # trailing mean
    smooth[: window - 1] *= window / np.arange(1, window)[:, None]  # the first points: shorter windows
    reached = smooth >= 0.9
    first = [frames[int(np.argmax(r))] if r.any() else steps for r in reached.T]
    return {
        "method": method,
        "size": size,
        "seeds": seeds,
        "steps": steps,
        "frames": frames,
        "success": smooth.tolist(),
        "frames_to_0.9": first,
        "reached": int(reached.any(0).sum()),
        "final_success": smooth[-1].tolist(),
        "env_steps_per_s": result.env_steps_per_s,
        "compile_s": result.compile_s,
        "wall_s": time.perf_counter() - start,
    }


def main_doorkey(args: argparse.Namespace) -> None:
    """Run ``--methods`` and tabulate them with the rows of other methods already in the JSON at
    the same size, budget and seeds (so the methods can run as separate processes)."""
    rows = [
        doorkey(m, args.doorkey_size, args.seeds, args.doorkey_steps, args.window, not args.no_compile)
        for m in args.methods
    ]
    same = (args.doorkey_size, args.doorkey_steps, args.seeds)
    saved = RESULTS / "bench_exploration_doorkey.json"
    if saved.exists():
        earlier = json.loads(saved.read_text()).get("rows", [])
        rows += [
            r
            for r in earlier
            if (r["size"], r["steps"], r["seeds"]) == same and r["method"] not in args.methods
        ]
    rows.sort(key=lambda r: list(METHODS).index(r["method"]))
    columns = [
        "method",
        "reached 0.9",
        "frames to 0.9 (95% CI)",
        "final success (95% CI)",
        "env-steps/s",
        "wall s",
    ]
    table = [
        [
            r["method"],
            f"{r['reached']}/{r['seeds']}",
            cell(interval(np.asarray(r["frames_to_0.9"], dtype=float)), ",.0f"),
            cell(interval(np.asarray(r["final_success"])), ".2f"),
            f"{r['env_steps_per_s']:,.0f}",
            f"{r['wall_s']:.0f}",
        ]
        for r in rows
    ]
    title = (
        f"MiniGrid-DoorKey-{args.doorkey_size}x{args.doorkey_size}, {args.doorkey_steps:,} frames per seed"
    )
    print_table(title, columns, table)
    write_json("bench_exploration_doorkey", {"window": args.window, "rows": rows})
    curves = {r["method"]: (np.asarray(r["frames"]), np.asarray(r["success"])) for r in rows}
    figure = plot(
        curves, {"success 0.9": 0.9}, RESULTS / "bench_exploration_doorkey.png", title, "success rate"
    )
    print(f"wrote {figure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 14, 20])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200_000, help="environment steps per seed")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--doorkey", action="store_true", help="MiniGrid DoorKey instead of DeepSea")
    parser.add_argument("--doorkey-size", type=int, default=8)
    parser.add_argument("--doorkey-steps", type=int, default=2_000_000, help="frames per seed")
    parser.add_argument("--window", type=int, default=4, help="log points averaged in a success rate")
    args = parser.parse_args()
    if args.doorkey:
        main_doorkey(args)
        return
    rows = []
    for size in args.sizes:
        for method in args.methods:
            rows.append(one(method, size, args.seeds, args.steps, not args.no_compile))
            table = [
                [
                    r["size"],
                    r["method"],
                    f"{r['solved']}/{r['seeds']}",
                    f"[{r['interval'][0]:.2f}, {r['interval'][1]:.2f}]",
                    f"{r['mean_training_return']:.3f}",
                    f"{r['env_steps_per_s']:,.0f}",
                    f"{r['wall_s']:.0f}",
                ]
                for r in rows
            ]
            print_table(f"DeepSea, {args.steps:,} steps per seed", COLUMNS, table)
            write_json("bench_exploration", {"steps": args.steps, "rows": rows})
    for method in args.methods:
        solved = [
            r["size"] for r in rows if r["method"] == method and r["solved"] >= math.ceil(0.875 * r["seeds"])
        ]
        print(f"largest size solved in >= 7/8 of seeds by {method}: {max(solved) if solved else '-'}")


if __name__ == "__main__":
    main()
