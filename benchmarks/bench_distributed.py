"""torch.distributed on this machine (gloo over 127.0.0.1, one thread per process).

1. All-reduce of a parameter TensorDict (an MLP's 8 leaves) vs its parameter count: one flat
   buffer (``frl.distributed.all_reduce_mean``) vs one all-reduce per leaf, 2 processes.
2. Weak scaling of PPO on CartPole (CleanRL settings): each process collects the same number of
   steps; data-parallel (one agent, gradients averaged) and seed-sharded (4 seeds per process,
   vmapped), for 1 and 2 processes, eager and compiled. Environment steps/s of all processes,
   compile time excluded.

Caveat: this machine has 2 cores. Two processes each get one core, so 2x is the ceiling, and any
other load on the machine takes from it; across machines the all-reduce runs over the network.

    python benchmarks/bench_distributed.py [--steps 51200] [--no-compile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, write_json  # sets threads and cache first

# isort: split
import torch

from frl import distributed as fd
from frl import nn, random
from frl.algos import ppo

SIZES = (1_000, 10_000, 100_000, 1_000_000, 4_000_000)


def _mlp_params(total: int):
    width = max(4, int((total / 3) ** 0.5))  # 4 layers: ~3 width^2 weights
    return nn.MLP((width, width, width, width, 1)).init(random.key(0))


def _allreduce_worker(rank: int, size: int, sizes: tuple[int, ...]) -> list[dict]:
    rows = []
    for total in sizes:
        params = _mlp_params(total)
        count = sum(leaf.numel() for leaf in params.values(include_nested=True, leaves_only=True))
        leaves = len(list(params.keys(include_nested=True, leaves_only=True)))
        out = {"params": count, "leaves": leaves}
        for name, fn in (("flat", fd.all_reduce_mean), ("per_leaf", fd.all_reduce_mean_per_leaf)):
            for _ in range(3):
                fn(params)
            times = []
            for _ in range(15):
                torch.distributed.barrier()
                t0 = time.perf_counter()
                fn(params)
                times.append(time.perf_counter() - t0)
            out[name] = statistics.median(fd.gather_objects(statistics.median(times)) or [0.0])
        rows.append(out)
    return rows


def _config(steps: int) -> ppo.Config:
    return ppo.Config.preset("CartPole-v1", total_timesteps=steps)


def _ppo_worker(rank: int, size: int, mode: str, steps: int, compile: bool) -> dict:
    config = _config(steps)
    kw = dict(total_steps=steps, compile=compile, progress=False, eval_episodes=2)
    if mode == "data-parallel":
        result = fd.train_data_parallel(ppo.make_train, config, **kw)
        rate = result.env_steps_per_s
    else:
        seeds = list(range(4 * size))
        merged = fd.run_sharded(ppo.make_train(config), seeds, **kw)
        rate = merged["env_steps_per_s"] if merged is not None else 0.0
        return {"rate": rate}
    rates = fd.gather_objects(rate)
    return {"rate": sum(rates) if rates else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=51_200, help="environment steps per process")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()

    records: list = []
    reduce_rows = fd.spawn(_allreduce_worker, 2, SIZES)
    table = []
    for row in reduce_rows:
        ratio = row["per_leaf"] / row["flat"]
        table.append([f"{row['params']:,}", row["leaves"], row["flat"] * 1e6, row["per_leaf"] * 1e6, ratio])
        records.append({"case": "all_reduce", **row})
    print_table(
        "All-reduce of an MLP's parameters, 2 processes, gloo (microseconds, median)",
        ["parameters", "leaves", "flat buffer", "per leaf", "per leaf / flat"],
        table,
    )

    table = []
    for mode in ("data-parallel", "seeds sharded"):
        for compile in (False,) if args.no_compile else (False, True):
            rates = {}
            for nproc in (1, 2):
                out = fd.spawn(_ppo_worker, nproc, mode, args.steps, compile)
                rates[nproc] = out["rate"]
            label = f"{mode}, {'compiled' if compile else 'eager'}"
            seeds = "1 per job" if mode == "data-parallel" else "4 per process"
            table.append([label, seeds, rates[1], rates[2], rates[2] / rates[1]])
            records.append({"case": f"ppo weak scaling {label}", "one": rates[1], "two": rates[2]})
    print_table(
        f"PPO CartPole, weak scaling: {args.steps:,} steps per process, env-steps/s of all processes "
        "(2 cores: 2x is the ceiling)",
        ["mode", "seeds", "1 process", "2 processes", "speed-up"],
        table,
    )
    print(f"\nwrote {write_json('bench_distributed', {'results': records})}")


if __name__ == "__main__":
    main()
