"""Value iteration on 1,024 random Garnet MDPs (50 states, 4 actions, branching 5, gamma 0.9).

frl solves the whole batch in one call (the MDPs stacked: each sweep is one batched matrix
product, members frozen as they converge) or under ``torch.func.vmap``; the references are the
same frl solver called once per MDP in a Python loop, and NumPy value iteration per MDP (the
textbook loop) and batched (``einsum`` over the stack). All stop at ``max |v' - v| <= tol``.

    python benchmarks/bench_planning.py [--mdps 1024] [--states 50] [--actions 4] [--tol 1e-6]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, write_json  # sets threads and cache first

# isort: split
import numpy as np
import torch

from frl import planning as pl
from frl import random


def numpy_value_iteration(P: np.ndarray, R: np.ndarray, gamma: float, tol: float) -> tuple[np.ndarray, int]:
    """One MDP: ``v <- max_a (r + gamma P v)`` until the change is at most ``tol``."""
    r = (P * R).sum(-1)
    v = np.zeros(P.shape[0], dtype=P.dtype)
    for k in range(1, 100_000):
        new = (r + gamma * P @ v).max(-1)
        if np.abs(new - v).max() <= tol:
            return new, k
        v = new
    return v, k


def numpy_batched(P: np.ndarray, R: np.ndarray, gamma: float, tol: float) -> np.ndarray:
    r = (P * R).sum(-1)
    v = np.zeros(P.shape[:2], dtype=P.dtype)
    done = np.zeros(P.shape[0], dtype=bool)
    while not done.all():
        new = (r + gamma * np.einsum("bsat,bt->bsa", P, v)).max(-1)
        change = np.abs(new - v).max(-1)
        v = np.where(done[:, None], v, new)
        done |= change <= tol
    return v


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mdps", type=int, default=1024)
    parser.add_argument("--states", type=int, default=50)
    parser.add_argument("--actions", type=int, default=4)
    parser.add_argument("--tol", type=float, default=1e-6)
    args = parser.parse_args()
    make = functools.partial(
        pl.garnet, num_states=args.states, num_actions=args.actions, branching=5, gamma=0.9
    )
    mdps = torch.func.vmap(make)(random.split(random.key(0), args.mdps))
    P, R = mdps["transitions"].numpy(), mdps["rewards"].numpy()

    batched, t_batched = timed(lambda: pl.value_iteration(mdps, tol=args.tol))
    sweeps = int(batched.iterations.max())
    solve = functools.partial(pl.value_iteration, tol=args.tol, max_iterations=sweeps)
    vmapped, t_vmap = timed(lambda: torch.func.vmap(solve)(mdps))
    loop, t_loop = timed(lambda: [pl.value_iteration(mdps[i], tol=args.tol).values for i in range(args.mdps)])
    np_loop, t_np_loop = timed(
        lambda: [numpy_value_iteration(P[i], R[i], 0.9, args.tol)[0] for i in range(args.mdps)]
    )
    np_batch, t_np_batch = timed(lambda: numpy_batched(P, R, 0.9, args.tol))

    reference = batched.values
    err = {
        "vmap": float((vmapped.values - reference).abs().max()),
        "loop": float((torch.stack(loop) - reference).abs().max()),
        "numpy loop": float(np.abs(np.stack(np_loop) - reference.numpy()).max()),
        "numpy batched": float(np.abs(np_batch - reference.numpy()).max()),
    }
    rows = [
        ["frl, the batch in one call (eager)", t_batched, 1.0, 0.0],
        ["frl, torch.func.vmap over MDPs (eager)", t_vmap, t_vmap / t_batched, err["vmap"]],
        ["frl, a Python loop over MDPs", t_loop, t_loop / t_batched, err["loop"]],
        ["NumPy, a loop over MDPs", t_np_loop, t_np_loop / t_batched, err["numpy loop"]],
        ["NumPy, batched einsum", t_np_batch, t_np_batch / t_batched, err["numpy batched"]],
    ]
    print_table(
        f"Value iteration on {args.mdps:,} Garnet MDPs ({args.states} states, {args.actions} actions), "
        f"tol {args.tol:g}, sweeps {int(batched.iterations.min())}-{sweeps}, 1 thread",
        ["implementation", "seconds", "x frl batch", "max |v - v_frl|"],
        rows,
    )
    records = [
        {"implementation": r[0], "seconds": r[1], "ratio_to_frl_batch": r[2], "max_abs_diff": r[3]}
        for r in rows
    ]
    print(f"\nwrote {write_json('bench_planning', {'results': records, 'sweeps': sweeps})}")


if __name__ == "__main__":
    main()
