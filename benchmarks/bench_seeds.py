"""Speed: PPO on CartPole-v1 for 1..N seeds in one process, eager and compiled, beside TorchRL.

CleanRL/purejaxrl hyper-parameters (4 envs x 128 steps, 4 epochs, 4 minibatches). Each row
trains N seeds in one ``frl.run`` (vmapped over seeds when N > 1) and reports aggregate
environment steps per second after the first calls (``env_steps_per_s``), the first-call
(compile) seconds and the wall time. The reference, in the same run, is a single-seed TorchRL
loop: ``SerialEnv(4 x GymEnv)`` + ``Collector`` + ``GAE`` + ``ClipPPOLoss`` + ``torch.optim.Adam``
with the same networks and settings; ratios are frl / TorchRL.

    python benchmarks/bench_seeds.py                         # full grid (long)
    python benchmarks/bench_seeds.py --seeds 1 8 --steps 100000 --modes compiled

``--health stop off`` runs every row with the numerical-health checks on (``stop``, the
default) and off, alternately ``--repeats`` times, and gives the median throughput of each and
their ratio (the checks' cost).
"""

from __future__ import annotations

import argparse
import statistics

from _common import print_table, write_json
from peers.torchrl_ppo import torchrl_reference

from frl.algos import ppo
from frl.run import run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 8, 32, 128])
    parser.add_argument("--steps", type=int, default=500_000, help="steps per seed")
    parser.add_argument(
        "--big-steps", type=int, default=None, help="steps per seed for N >= 32 (default: --steps)"
    )
    parser.add_argument("--modes", nargs="*", default=["eager", "compiled"], choices=["eager", "compiled"])
    parser.add_argument("--eager-steps", type=int, default=None, help="steps per seed for eager rows")
    parser.add_argument("--ref-steps", type=int, default=51_200, help="steps of the TorchRL reference")
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--health", nargs="*", default=["stop"], choices=["stop", "skip-member", "warn", "off"]
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs per row (medians reported)")
    args = parser.parse_args()

    ref = torchrl_reference(args.ref_steps)
    print(
        f"TorchRL reference: {ref['env_steps_per_s']:,.0f} env-steps/s over {ref['steps']:,} steps",
        flush=True,
    )
    rows, results = [], []
    for mode in args.modes:
        for n in args.seeds:
            steps = args.steps
            if n >= 32 and args.big_steps:
                steps = args.big_steps
            if mode == "eager" and args.eager_steps:
                steps = min(steps, args.eager_steps)
            train = ppo.make_train(ppo.Config(total_timesteps=steps))
            runs: dict[str, list] = {health: [] for health in args.health}
            for repeat in range(args.repeats):  # alternating, and the order too (ABBA...): drift
                # and after-effects of the previous run hit every variant alike
                for health in args.health if repeat % 2 == 0 else args.health[::-1]:
                    runs[health].append(
                        run(
                            train,
                            seeds=n,
                            total_steps=steps,
                            compile=mode == "compiled",
                            progress=False,
                            eval_episodes=10,
                            device=args.device,
                            on_nonfinite=health,
                        )
                    )
            rates = {h: statistics.median(r.env_steps_per_s for r in rs) for h, rs in runs.items()}
            for health, repeats in runs.items():
                result = repeats[-1]
                rate = rates[health]
                mean_return = sum(result.eval_returns) / len(result.eval_returns)
                ratio = rate / ref["env_steps_per_s"]
                versus_off = rate / rates["off"] if "off" in rates and health != "off" else None
                rows.append(
                    [
                        mode,
                        n,
                        health,
                        steps,
                        f"{rate:,.0f}",
                        f"{ratio:.1f}",
                        "-" if versus_off is None else f"{versus_off:.3f}",
                        f"{result.compile_s:.1f}",
                        f"{result.wall_s:.0f}",
                        f"{mean_return:.0f}",
                    ]
                )
                results.append(
                    {
                        "mode": mode,
                        "seeds": n,
                        "health": health,
                        "steps_per_seed": steps,
                        "env_steps_per_s": rate,
                        "env_steps_per_s_runs": [r.env_steps_per_s for r in repeats],
                        "ratio_vs_torchrl": ratio,
                        "ratio_vs_health_off": versus_off,
                        "compile_s": result.compile_s,
                        "wall_s": result.wall_s,
                        "mean_final_eval_return": mean_return,
                    }
                )
                print(rows[-1], flush=True)
    print_table(
        f"PPO CartPole-v1 (4 envs x 128 steps, 4 epochs x 4 minibatches), 1 thread; TorchRL reference "
        f"{ref['env_steps_per_s']:,.0f} env-steps/s (1 seed)",
        [
            "mode",
            "seeds",
            "health",
            "steps/seed",
            "env-steps/s (all seeds)",
            "x TorchRL",
            "x health off",
            "first calls s",
            "wall s",
            "final return",
        ],
        rows,
    )
    write_json(
        f"bench_seeds{'_' + str(args.device) if args.device else ''}",
        {"torchrl_reference": ref, "rows": results},
    )


if __name__ == "__main__":
    main()
