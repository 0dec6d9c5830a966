"""GAE over ``[64, T]`` sequences for growing T: frl's log-depth scan, eager and compiled, vs
TorchRL's functional estimators (the per-step loop and the vectorised one).

The scan runs ``ceil(log2 T)`` whole-sequence steps, so eager cost grows with ``log T`` kernel
launches instead of ``T``; compiled, it is one small graph whatever T.

    python benchmarks/bench_returns.py [--lengths 128 1024 8192] [--envs 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, time_call, write_json  # sets threads and cache first

# isort: split
import torch
from torchrl.objectives.value import functional as trl

import frl
from frl import returns


def data(envs: int, length: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    done = torch.rand(envs, length, generator=g) < 0.01
    return {
        "reward": torch.randn(envs, length, generator=g),
        "value": torch.randn(envs, length, generator=g),
        "next_value": torch.randn(envs, length, generator=g),
        "terminated": done & (torch.rand(envs, length, generator=g) < 0.5),
        "done": done,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", nargs="+", type=int, default=[128, 1024, 8192])
    parser.add_argument("--envs", type=int, default=64)
    args = parser.parse_args()
    gamma, lmbda = 0.99, 0.95
    rows, records = [], []
    for length in args.lengths:
        d = data(args.envs, length)
        col = {k: v.unsqueeze(-1) for k, v in d.items()}

        def frl_gae(reward, value, next_value, terminated, done):
            return returns.gae(reward, value, next_value, terminated, done, gamma=gamma, lmbda=lmbda)

        compiled = frl.compile(frl_gae)
        start = time.perf_counter()
        compiled(**d)
        compile_s = time.perf_counter() - start
        impls = {
            "frl gae, eager": lambda: frl_gae(**d),
            "frl gae, compiled": lambda: compiled(**d),
            "TorchRL generalized_advantage_estimate": lambda: trl.generalized_advantage_estimate(
                gamma, lmbda, col["value"], col["next_value"], col["reward"], col["done"], col["terminated"]
            ),
            "TorchRL vec_generalized_advantage_estimate": lambda: trl.vec_generalized_advantage_estimate(
                gamma, lmbda, col["value"], col["next_value"], col["reward"], col["done"], col["terminated"]
            ),
        }
        times = {name: time_call(fn, repeats=5, min_seconds=0.2) for name, fn in impls.items()}
        reference = times["TorchRL generalized_advantage_estimate"]
        for name, seconds in times.items():
            first = f"{compile_s:.1f}" if name.endswith("compiled") else ""
            rows.append([length, name, seconds * 1e3, reference / seconds, first])
            records.append(
                {
                    "T": length,
                    "impl": name,
                    "ms": seconds * 1e3,
                    "speedup_vs_torchrl_loop": reference / seconds,
                }
            )
        torch._dynamo.reset()

    print_table(
        f"GAE on [{args.envs}, T] float32, 1 thread",
        ["T", "implementation", "ms", "x TorchRL loop", "compile s"],
        rows,
    )
    print(f"\nwrote {write_json('bench_returns', {'envs': args.envs, 'rows': records})}")


if __name__ == "__main__":
    main()
