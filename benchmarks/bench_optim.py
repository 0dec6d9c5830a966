"""One Adam step on a 3x256 MLP, single and as a 64-member ensemble: frl vs torch.optim.

Rows: frl eager, frl compiled (``frl.compile``), and ``torch.optim.Adam(foreach=True)`` on the
single network and on 64 separate networks (one optimizer over all their parameters, so foreach
batches every tensor). Gradients are fixed; only the optimizer step is timed. The ratio column
is time / the torch.optim time for the same workload (lower is better for frl).

    python benchmarks/bench_optim.py [--members 64] [--repeats 7]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, time_call, write_json  # sets threads and cache first

# isort: split
import torch

import frl
from frl import nn, optim, random

SIZES = (64, 256, 256, 256, 16)


def torch_nets(count: int) -> list[torch.nn.Module]:
    return [
        torch.nn.Sequential(
            torch.nn.Linear(64, 256),
            torch.nn.ReLU(),
            torch.nn.Linear(256, 256),
            torch.nn.ReLU(),
            torch.nn.Linear(256, 256),
            torch.nn.ReLU(),
            torch.nn.Linear(256, 16),
        )
        for _ in range(count)
    ]


def bench_torch(count: int, repeats: int) -> float:
    nets = torch_nets(count)
    parameters = [p for net in nets for p in net.parameters()]
    for p in parameters:
        p.grad = torch.randn_like(p) * 1e-2
    opt = torch.optim.Adam(parameters, lr=1e-3, foreach=True)
    return time_call(opt.step, repeats=repeats)


def bench_frl(members: int | None, compiled: bool, repeats: int) -> tuple[float, float]:
    """Seconds per step, and seconds for the first call (compilation included)."""
    net = nn.MLP(SIZES)
    tx = optim.adam(1e-3)

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optim.apply_updates(params, updates), state

    if members is None:
        params = net.init(random.key(0))
        state = tx.init(params)
        fn = step
    else:
        params = nn.ensemble_init(net.init, random.key(0), members)
        state = torch.func.vmap(tx.init)(params)

        def fn(params, state, grads):  # a named wrapper per compiled function
            return torch.func.vmap(step)(params, state, grads)

    grads = params.apply(lambda p: 1e-2 * torch.randn_like(p))
    if compiled:
        fn = frl.compile(fn)
    start = time.perf_counter()
    fn(params, state, grads)
    first = time.perf_counter() - start
    return time_call(lambda: fn(params, state, grads), repeats=repeats), first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    m = args.members
    n_params = sum(a * b + b for a, b in itertools.pairwise(SIZES))

    rows, records = [], []
    for workload, members, count in (("single", None, 1), (f"{m} members", m, m)):
        reference = bench_torch(count, args.repeats)
        label = "torch.optim.Adam(foreach), " + ("1 net" if count == 1 else f"{count} separate nets")
        results = [(label, reference, None)]
        for compiled in (False, True):
            seconds, first = bench_frl(members, compiled, args.repeats)
            results.append(
                (
                    f"frl adam {'compiled' if compiled else 'eager'}"
                    + ("" if members is None else " (vmap)"),
                    seconds,
                    first,
                )
            )
        for name, seconds, first in results:
            ratio = seconds / reference
            rows.append([workload, name, seconds * 1e3, ratio, "" if first is None else f"{first:.1f}"])
            records.append(
                {
                    "workload": workload,
                    "impl": name,
                    "ms": seconds * 1e3,
                    "ratio_vs_torch": ratio,
                    "first_call_s": first,
                }
            )

    print_table(
        f"Adam step, MLP {SIZES} ({n_params:,} params per net), 1 thread, median of {args.repeats}",
        ["workload", "implementation", "ms/step", "ratio vs torch", "first call s"],
        rows,
    )
    path = write_json(
        "bench_optim", {"sizes": SIZES, "params_per_net": n_params, "members": m, "rows": records}
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
