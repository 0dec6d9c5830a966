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


def doorkey(method: str, size: int, seeds: list[int], steps: int, window: int, compiled: bool) -> dict:
    """One method on DoorKey-``size`` for ``seeds`` (one vmapped run): the success curve per
    seed and the frames to 0.9."""
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
        "final_success": smooth[-1].tolist(),
        "env_steps_per_s": result.env_steps_per_s,
        "compile_s": result.compile_s,
        "wall_s": time.perf_counter() - start,
    }


def main_doorkey(args: argparse.Namespace) -> None:
    """Run ``--methods`` on seeds ``--first-seed ..``, keep them in the JSON beside the runs of
    other methods, seeds, sizes and budgets (methods and seed blocks can run as separate
    processes, one after another), and tabulate every method over all its seeds at this size
    and budget."""
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    compiled = not args.no_compile
    new = [
        doorkey(m, args.doorkey_size, seeds, args.doorkey_steps, args.window, compiled)
        for m in ([] if args.table_only else args.methods)
    ]
    saved = RESULTS / "bench_exploration_doorkey.json"
    earlier = json.loads(saved.read_text()).get("runs", []) if saved.exists() else []
    replaced = {(r["method"], r["size"], r["steps"], r["seeds"][0]) for r in new}
    kept = [r for r in earlier if (r["method"], r["size"], r["steps"], r["seeds"][0]) not in replaced]
    if new:
        write_json("bench_exploration_doorkey", {"window": args.window, "runs": new + kept})
    runs = [r for r in new + kept if (r["size"], r["steps"]) == (args.doorkey_size, args.doorkey_steps)]
    pooled = {}
    for method in METHODS:
        mine = sorted((r for r in runs if r["method"] == method), key=lambda r: r["seeds"][0])
        if mine:
            pooled[method] = {
                "seeds": sum(len(r["seeds"]) for r in mine),
                "frames_to": np.concatenate([np.asarray(r["frames_to_0.9"], dtype=float) for r in mine]),
                "final": np.concatenate([np.asarray(r["final_success"]) for r in mine]),
                "sps": np.mean([r["env_steps_per_s"] for r in mine]),
                "curve": (
                    np.asarray(mine[0]["frames"]),
                    np.concatenate([np.asarray(r["success"]) for r in mine], 1),
                ),
            }
    columns = [
        "method",
        "seeds reaching 0.9",
        "frames to 0.9 per seed",
        "mean success at 1M",
        "mean success reaches 0.9 at",
        "final success",
        "env-steps/s",
    ]
    table = [
        [
            method,
            f"{int((p['frames_to'] < args.doorkey_steps).sum())}/{p['seeds']}",
            cell(interval(p["frames_to"]), ",.0f"),
            cell(interval(at_frames(*p["curve"], 1_000_000)), ".2f"),
            cell(mean_crossing(*p["curve"], 0.9), ",.0f"),
            cell(interval(p["final"]), ".2f"),
            f"{p['sps']:,.0f}",
        ]
        for method, p in pooled.items()
    ]
    size = args.doorkey_size
    title = f"MiniGrid-DoorKey-{size}x{size}, {args.doorkey_steps:,} frames per seed"
    print_table(title, columns, table)
    if len(pooled) == 2:
        a, b = (pooled[m]["frames_to"] for m in METHODS)
        faster = float(np.mean(b[:, None] < a[None, :]) + 0.5 * np.mean(b[:, None] == a[None, :]))
        print(
            f"frames to 0.9, ppo+rnd / ppo: {cell(unpaired_ratio(b, a), '.2f')}; "
            f"P(a ppo+rnd seed gets there before a ppo seed) = {faster:.2f}"
        )
    curves = {method: p["curve"] for method, p in pooled.items()}
    figure = plot(
        curves, {"success 0.9": 0.9}, RESULTS / "bench_exploration_doorkey.png", title, "success rate"
    )
    print(f"wrote {figure}")


def at_frames(frames: np.ndarray, success: np.ndarray, when: int) -> np.ndarray:
    """Each seed's success rate at the last log point at or before ``when`` frames."""
    return success[max(int(np.searchsorted(frames, when, side="right")) - 1, 0)]


def mean_crossing(
    frames: np.ndarray, success: np.ndarray, level: float, samples: int = 5000, seed: int = 0
) -> tuple[float, float, float]:
    """The frames at which the success rate averaged over seeds first reaches ``level`` (the
    budget if never), with a 95% bootstrap interval over seeds. ``success``: ``[points, seeds]``."""

    def first(mean: np.ndarray) -> np.ndarray:  # mean [..., points]
        hit = mean >= level
        return np.where(hit.any(-1), frames[hit.argmax(-1)], frames[-1])

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, success.shape[1], (samples, success.shape[1]))
    resampled = first(success.T[idx].mean(1))
    point = float(first(success.mean(1)))
    return point, float(np.quantile(resampled, 0.025)), float(np.quantile(resampled, 0.975))


def unpaired_ratio(
    a: np.ndarray, b: np.ndarray, samples: int = 20_000, seed: int = 0
) -> tuple[float, float, float]:
    """``mean(a) / mean(b)`` over independent seeds, with a 95% bootstrap interval (each
    resampled on its own)."""
    rng = np.random.default_rng(seed)
    ratios = a[rng.integers(0, len(a), (samples, len(a)))].mean(1) / b[
        rng.integers(0, len(b), (samples, len(b)))
    ].mean(1)
    return float(a.mean() / b.mean()), float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975))


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
    parser.add_argument("--table-only", action="store_true", help="DoorKey: tabulate the saved runs")
    parser.add_argument("--first-seed", type=int, default=0, help="DoorKey: seeds first-seed .. + seeds - 1")
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
