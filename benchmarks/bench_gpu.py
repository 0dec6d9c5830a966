"""PPO, DQN and SAC on one GPU for 1, 32, 512 and 2048 vmapped seeds: the prepared device check.

Each row is one compiled ``frl.run`` on ``--device`` (default ``cuda``) with the agent's default
settings on its default pure torch environment (PPO CartPole-v1, DQN CartPole-v1, SAC
Pendulum-v1) at a small budget per seed (learning from 1k steps for DQN and SAC, so most of the
budget learns), and records env-steps/s of all seeds (compile excluded), compile and wall
seconds and the final evaluation. Rows run (1 and 2048 seeds first) until ``--deadline`` seconds have passed
(the device machine gives a session minutes, not hours): a row is skipped, and the table says so,
when too little time is left. Compiling is CPU work and the device machine has many cores, so
with ``--jobs N`` (N > 1) every row is first compiled once in N parallel processes (each stops after
one iteration: same config and shapes, so the same graphs) and its cold compile seconds recorded;
the measured rows then run one at a time on the warm Inductor cache (their "compile s" is the warm
start: tracing plus cache loads). The table is printed after every row and written as JSON to
``benchmarks/results/bench_gpu.json``, so a run cut short keeps what it measured.

    bash benchmarks/device/prepare.sh                      # here: the wheels the GPU machine lacks
    python benchmarks/bench_gpu.py                         # on the device machine (run.sh), <= 8 min
    python benchmarks/bench_gpu.py --device cpu --seeds 1 2 --scale 0.05   # the script itself, here
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, write_json  # sets threads and cache first

# isort: split
import torch

import frl
from frl import algos

# (algorithm, steps per seed at scale 1, settings): budgets that run in seconds once compiled
RUNS = (
    ("ppo", 20 * 512, {}),
    ("dqn", 5_000, {"learning_starts": 1_000}),
    ("sac", 3_000, {"learning_starts": 1_000}),
)
COLUMNS = [
    "algo",
    "seeds",
    "steps/seed",
    "env-steps/s",
    "compile s",
    "cold compile s",
    "wall s",
    "eval return",
    "note",
]


def one_run(algo: str, seeds: int, steps: int, settings: dict, device: str, warm_only: bool = False) -> dict:
    """One measured row; with ``warm_only`` the same config stops after one iteration (it fills the
    compile cache with the row's graphs)."""
    agent = algos.get(algo)
    config = agent.config(total_timesteps=steps, **settings)
    train = agent.make_train(config)
    steps = max(steps // train.steps_per_iteration, 1) * train.steps_per_iteration
    run_steps = train.steps_per_iteration if warm_only else steps
    result = frl.run(
        train, seeds=seeds, total_steps=run_steps, device=device, progress=False, eval_episodes=2
    )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    returns = result.eval_returns
    return {
        "algo": algo,
        "seeds": seeds,
        "steps_per_seed": result.env_steps,
        "env_steps_per_s": result.env_steps_per_s,
        "compile_s": result.compile_s,
        "wall_s": result.wall_s,
        "eval_return": sum(returns) / len(returns),
    }


def warm_cache(plan: list, args: argparse.Namespace, seconds: float) -> dict:
    """Compile every row once in ``args.jobs`` parallel processes; returns (algo, seeds) -> cold
    compile seconds, or a failure note. Rows still compiling after ``seconds`` are stopped."""
    todo = list(plan)
    running: list[tuple[tuple, subprocess.Popen, float]] = []
    cold: dict = {}
    start = time.perf_counter()
    while todo or running:
        while todo and len(running) < args.jobs:
            seeds, (algo, _, _) = todo.pop(0)
            command = [sys.executable, __file__, "--warm-one", algo, str(seeds), "--device", args.device,
                       "--scale", str(args.scale)]  # fmt: skip
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            running.append(((algo, seeds), proc, time.perf_counter()))
        time.sleep(1.0)
        for item in list(running):
            key, proc, began = item
            if proc.poll() is None and time.perf_counter() - start < seconds:
                continue
            running.remove(item)
            if proc.poll() is None:  # out of warm-up time: the measured pass compiles it cold
                proc.kill()
                proc.communicate()
                print(f"warm-up {key}: stopped after {time.perf_counter() - began:.0f} s", flush=True)
                continue
            out = proc.communicate()[0]
            lines = [line for line in out.splitlines() if line.startswith("WARM ")]
            if lines:
                cold[key] = json.loads(lines[-1][5:])["compile_s"]
            else:
                cold[key] = f"warm-up failed after {time.perf_counter() - began:.0f} s"
                print(f"--- warm-up {key} output (tail) ---\n{out[-4000:]}", flush=True)
            print(f"warm-up {key}: {cold[key]}", flush=True)
    return cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    # run in this order (the extremes first, so a deadline cuts the middle); printed sorted
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2048, 32, 512])
    parser.add_argument("--algos", nargs="+", default=[name for name, _, _ in RUNS])
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every step budget")
    parser.add_argument("--deadline", type=float, default=450.0, help="seconds for all rows")
    parser.add_argument("--jobs", type=int, default=1, help="parallel compile processes first (>1)")
    parser.add_argument("--warm-share", type=float, default=0.5, help="deadline share for the warm-up")
    parser.add_argument("--warm-one", nargs=2, metavar=("ALGO", "SEEDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warm_one:
        algo, steps, settings = next(run for run in RUNS if run[0] == args.warm_one[0])
        row = one_run(
            algo, int(args.warm_one[1]), int(steps * args.scale), settings, args.device, warm_only=True
        )
        print("WARM " + json.dumps(row), flush=True)
        return
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA device here; pass --device cpu to try the script")
    start = time.perf_counter()
    rows: list[dict] = []
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    plan = [(seeds, run) for seeds in args.seeds for run in RUNS if run[0] in args.algos]
    cold = warm_cache(plan, args, args.deadline * args.warm_share) if args.jobs > 1 else {}
    for seeds, (algo, steps, settings) in plan:
        left = args.deadline - (time.perf_counter() - start)
        if isinstance(cold.get((algo, seeds)), str):  # its compile failed: the note says so
            rows.append({"algo": algo, "seeds": seeds, "note": cold[algo, seeds]})
            continue
        if rows and left < 1.5 * max(r.get("wall_s", 0.0) for r in rows):
            rows.append({"algo": algo, "seeds": seeds, "note": f"skipped: {left:.0f} s left"})
            continue
        try:
            rows.append(one_run(algo, seeds, int(steps * args.scale), settings, args.device))
            if (algo, seeds) in cold:
                rows[-1]["cold_compile_s"] = cold[algo, seeds]
        except Exception as err:  # out of memory at 2048 seeds, say: keep the other rows
            traceback.print_exc()
            rows.append(
                {"algo": algo, "seeds": seeds, "note": f"failed: {type(err).__name__}: {str(err)[:120]}"}
            )
        table = [
            [
                r["algo"],
                r["seeds"],
                r.get("steps_per_seed", "-"),
                f"{r['env_steps_per_s']:,.0f}" if "env_steps_per_s" in r else "-",
                f"{r['compile_s']:.1f}" if "compile_s" in r else "-",
                f"{r['cold_compile_s']:.1f}" if isinstance(r.get("cold_compile_s"), float) else "-",
                f"{r['wall_s']:.1f}" if "wall_s" in r else "-",
                f"{r['eval_return']:.1f}" if "eval_return" in r else "-",
                r.get("note", ""),
            ]
            for r in sorted(rows, key=lambda r: (args.algos.index(r["algo"]), r["seeds"]))
        ]
        print_table(f"frl on {name}, compiled, vmapped seeds", COLUMNS, table)
        write_json("bench_gpu", {"device": name, "rows": rows})


if __name__ == "__main__":
    main()
