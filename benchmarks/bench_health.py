"""The numerical-health checks' cost, measured where drift cannot bias it: two compiled programs of
one agent (checks on, checks off) built side by side in one process and stepped in alternating
blocks of iterations, so that load from the rest of the machine falls on both alike.

``bench_seeds --health stop off`` gives the same ratio from whole runs, but whole runs a minute
apart on a shared 2-core machine vary by tens of percent; here each block is a few hundred
milliseconds and the blocks interleave (ABAB...), so the median per-iteration times compare.

    python benchmarks/bench_health.py                       # PPO CartPole, 1 and 8 seeds
    python benchmarks/bench_health.py --seeds 8 --rounds 60 --health stop skip-member
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import print_table, write_json

from frl.algos import ppo
from frl.driver import loop as L
from frl.driver.health import init_health
from frl.driver.members import init_states, members_of
from frl.driver.sources import RunContext, default_source


class Program:
    """One compiled run (the driver's units and state), stepped an iteration at a time."""

    def __init__(self, train, seeds: int, health: str) -> None:
        members = members_of(train, seeds, None)
        batched = len(members) > 1
        state = init_states(train, members, batched)
        if health != "off":
            state["health"] = init_health(len(members), batched)
        self.feed = default_source(train).open(RunContext(train, members, batched, True, 1))
        _, self.collect, self.learn = L.units(self.feed, health, batched, True)
        for _, unit in (*self.collect, *self.learn):  # unique compiled names per variant
            unit.name = f"{unit.name}_{health.replace('-', '_')}"
        self.program = L._Program(state, True)
        self.iteration = 0
        self.metrics: dict = {}

    def step(self, iterations: int) -> float:
        """Seconds for ``iterations`` iterations (after the first, guards skipped as ``run`` does)."""
        start = time.perf_counter()
        for _ in range(iterations):
            with torch.compiler.set_stance("default", skip_guard_eval_unsafe=self.iteration > 0):
                L._iterate(self.program, self.feed, self.collect, self.learn, self.iteration, self.metrics)
            self.iteration += 1
        float(next(iter(self.metrics.values())).sum())  # wait for the values (a no-op on CPU)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--health", nargs="*", default=["stop"], choices=["stop", "skip-member", "warn"])
    parser.add_argument("--rounds", type=int, default=40, help="alternating blocks per variant")
    parser.add_argument("--block", type=int, default=4, help="iterations per block")
    args = parser.parse_args()
    torch.set_num_threads(1)

    train = ppo.make_train(ppo.Config())
    rows, results = [], []
    for seeds in args.seeds:
        variants = ["off", *args.health]
        programs = {v: Program(train, seeds, v) for v in variants}
        for program in programs.values():
            program.step(2)  # compiles every unit
        times: dict[str, list[float]] = {v: [] for v in variants}
        for r in range(args.rounds):
            for v in variants if r % 2 == 0 else variants[::-1]:  # ABBA: no variant always first
                times[v].append(programs[v].step(args.block) / args.block)
        off = statistics.median(times["off"])
        for v in variants:
            per_iteration = statistics.median(times[v])
            rate = train.steps_per_iteration * seeds / per_iteration
            # paired blocks: the ratio of each round's times, then the median (drift cancels)
            paired = statistics.median(o / t for o, t in zip(times["off"], times[v], strict=True))
            ratio = off / per_iteration
            rows.append(
                [seeds, v, f"{per_iteration * 1e3:.2f}", f"{rate:,.0f}", f"{ratio:.3f}", f"{paired:.3f}"]
            )
            results.append(
                {
                    "seeds": seeds,
                    "health": v,
                    "ms_per_iteration": per_iteration * 1e3,
                    "env_steps_per_s": rate,
                    "throughput_vs_off": off / per_iteration,
                    "paired_throughput_vs_off": paired,
                    "ms_per_iteration_blocks": [t * 1e3 for t in times[v]],
                }
            )
            print(rows[-1], flush=True)
    print_table(
        f"Numerical-health cost, PPO CartPole-v1 ({train.steps_per_iteration} steps/iteration per seed), "
        f"compiled, 1 thread, {args.rounds} alternating blocks of {args.block} iterations",
        ["seeds", "health", "ms/iteration", "env-steps/s", "x off (medians)", "x off (paired)"],
        rows,
    )
    write_json("bench_health", {"rows": results})


if __name__ == "__main__":
    main()
