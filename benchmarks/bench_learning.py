"""Learning results: do frl's agents solve their environments across 8 seeds?

Each row trains 8 seeds in one vmapped, compiled run (``frl.run``) and evaluates the
deterministic policy on 10 episodes per seed every ``eval_every`` steps. A seed "reaches" the
threshold when any evaluation within the budget does; the final evaluation is shown too.

    python benchmarks/bench_learning.py                 # all rows (~30 min on 2 cores)
    python benchmarks/bench_learning.py --only ppo-cartpole sac-pendulum --no-compile
"""

from __future__ import annotations

import argparse
import time

from _common import print_table, write_json

from frl.algos import get
from frl.run import run

# name: (algorithm, environment, steps per seed, eval every, threshold, seeds needed of 8)
SETTINGS = {
    "ppo-cartpole": ("ppo", "CartPole-v1", 500_000, 25_000, 475.0, 7),
    "dqn-cartpole": ("dqn", "CartPole-v1", 500_000, 25_000, 475.0, 6),
    "reinforce-cartpole": ("reinforce", "CartPole-v1", 500_000, 25_000, 400.0, 6),
    "sac-pendulum": ("sac", "Pendulum-v1", 20_000, 2_000, -200.0, 7),
    "ppo-pendulum": ("ppo", "Pendulum-v1", 1_000_000, 50_000, -300.0, 6),
    "a2c-cartpole": ("a2c", "CartPole-v1", 1_000_000, 50_000, 475.0, 6),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", choices=sorted(SETTINGS), default=None)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    rows, payload = [], {}
    for name in args.only or SETTINGS:
        algo, env_id, steps, eval_every, threshold, needed = SETTINGS[name]
        agent = get(algo)
        train = agent.make_train(agent.config.preset(env_id, total_timesteps=steps))
        start = time.perf_counter()
        result = run(
            train,
            seeds=args.seeds,
            total_steps=steps,
            eval_every=eval_every,
            compile=args.compile,
            progress=False,
        )
        wall = time.perf_counter() - start
        evals = [row["eval_return_per_member"] for row in result.history if "eval_return_per_member" in row]
        best = [max(col) for col in zip(*evals, strict=True)]
        final = result.eval_returns
        reached = sum(b >= threshold for b in best)
        passed = reached >= needed * args.seeds / 8
        rows.append(
            [
                name,
                steps,
                f">= {threshold:g}",
                f"{reached}/{args.seeds}",
                f"{needed}/8",
                "yes" if passed else "NO",
                f"{sum(final) / len(final):.1f}",
                f"{min(final):.1f}",
                f"{wall:.0f}",
                f"{result.compile_s:.0f}",
                f"{result.env_steps_per_s:,.0f}",
            ]
        )
        payload[name] = {
            "algo": algo,
            "env": env_id,
            "steps_per_seed": steps,
            "seeds": args.seeds,
            "threshold": threshold,
            "seeds_reached": reached,
            "needed_of_8": needed,
            "passed": passed,
            "best_eval_per_seed": best,
            "final_eval_per_seed": final,
            "eval_curve": [
                [row["env_steps"], row["eval_return_per_member"]]
                for row in result.history
                if "eval_return_per_member" in row
            ],
            "wall_s": wall,
            "compile_s": result.compile_s,
            "env_steps_per_s": result.env_steps_per_s,
            "compiled": args.compile,
        }
        print(
            f"{name}: {reached}/{args.seeds} seeds >= {threshold:g}; final {[round(v) for v in final]}",
            flush=True,
        )
    print_table(
        f"Learning results ({args.seeds} seeds per row, one vmapped "
        f"{'compiled' if args.compile else 'eager'} run each)",
        [
            "setting",
            "steps/seed",
            "threshold",
            "reached",
            "target",
            "met",
            "final mean",
            "final min",
            "wall s",
            "compile s",
            "env-steps/s",
        ],
        rows,
    )
    write_json("bench_learning", payload)


if __name__ == "__main__":
    main()
