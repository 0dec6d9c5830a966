"""PPO, DQN and SAC on one GPU for 1, 32, 512 and 2048 vmapped seeds: the prepared device check.

Each row is one compiled ``frl.run`` on ``--device`` (default ``cuda``) with the agent's default
settings on its default pure torch environment (PPO CartPole-v1, DQN CartPole-v1, SAC
Pendulum-v1) at a small budget per seed (learning from 1k steps for DQN and SAC, so most of the
budget learns), and records env-steps/s of all seeds (compile excluded), compile and wall
seconds and the final evaluation. Rows run (1 and 2048 seeds first) until ``--deadline`` seconds have passed
(the device machine gives a session minutes, not hours): a row is skipped, and the table says so,
when too little time is left. The table is printed after every row and written as JSON to
``benchmarks/results/bench_gpu.json``, so a run cut short keeps what it measured.

    bash benchmarks/device/prepare.sh                      # here: the wheels the GPU machine lacks
    python benchmarks/bench_gpu.py                         # on the device machine (run.sh), <= 8 min
    python benchmarks/bench_gpu.py --device cpu --seeds 1 2 --scale 0.05   # the script itself, here
"""

from __future__ import annotations

import argparse
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
COLUMNS = ["algo", "seeds", "steps/seed", "env-steps/s", "compile s", "wall s", "eval return", "note"]


def one_run(algo: str, seeds: int, steps: int, settings: dict, device: str) -> dict:
    agent = algos.get(algo)
    config = agent.config(total_timesteps=steps, **settings)
    train = agent.make_train(config)
    steps = max(steps // train.steps_per_iteration, 1) * train.steps_per_iteration
    result = frl.run(train, seeds=seeds, total_steps=steps, device=device, progress=False, eval_episodes=2)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    # run in this order (the extremes first, so a deadline cuts the middle); printed sorted
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2048, 32, 512])
    parser.add_argument("--algos", nargs="+", default=[name for name, _, _ in RUNS])
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every step budget")
    parser.add_argument("--deadline", type=float, default=450.0, help="seconds for all rows")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA device here; pass --device cpu to try the script")
    start = time.perf_counter()
    rows: list[dict] = []
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    plan = [(seeds, run) for seeds in args.seeds for run in RUNS if run[0] in args.algos]
    for seeds, (algo, steps, settings) in plan:
        left = args.deadline - (time.perf_counter() - start)
        if rows and left < 1.5 * max(r.get("wall_s", 0.0) for r in rows):
            rows.append({"algo": algo, "seeds": seeds, "note": f"skipped: {left:.0f} s left"})
            continue
        try:
            rows.append(one_run(algo, seeds, int(steps * args.scale), settings, args.device))
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
