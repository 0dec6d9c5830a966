"""The applications, learned and measured against baselines that give the numbers a meaning.

Recommendation (``RecSim-InterestEvolution-v0``, :mod:`frl.envs.recsim`): PPO's slate policy
(Plackett-Luce over per-candidate scores) trained over N seeds in one vmapped run, then every
seed's deterministic policy and the baselines (random, greedy = highest immediate click
probability, the quality oracle) run ``--sessions`` whole sessions each. Per policy: session
watch time (the return), click-through rate and session length, the mean over seeds with a 95%
percentile bootstrap interval (seeds resampled); and PPO's watch time over greedy's, with its
interval. A learning curve with a band over seeds, the baselines drawn as lines, goes next to
the JSON.

    python benchmarks/bench_applications.py                      # 8 seeds x 200k steps
    python benchmarks/bench_applications.py --seeds 2 --steps 50000 --no-compile
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, print_table, write_json

from frl import envs, random
from frl.algos import ppo
from frl.envs import recsim
from frl.plot import bootstrap_band, load_curve
from frl.run import run

ENV_ID = "RecSim-InterestEvolution-v0"
BASELINES = {
    "random": recsim.random_slate,
    "greedy": recsim.greedy_slate,
    "quality oracle": recsim.quality_slate,
}


def interval(per_seed: np.ndarray, samples: int = 5000, seed: int = 0) -> tuple[float, float, float]:
    """Mean over seeds and its 95% percentile bootstrap interval."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_seed), size=(samples, len(per_seed)))
    means = per_seed[idx].mean(1)
    return float(per_seed.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def ratio_interval(
    a: np.ndarray, b: np.ndarray, samples: int = 5000, seed: int = 1
) -> tuple[float, float, float]:
    """``mean(a) / mean(b)`` over seeds with a paired 95% bootstrap interval."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(samples, len(a)))
    ratios = a[idx].mean(1) / b[idx].mean(1)
    return float(a.mean() / b.mean()), float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975))


def cell(summary: tuple[float, float, float], fmt: str) -> str:
    """``mean [low, high]``."""
    m, lo, hi = summary
    return f"{m:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def session_stats(env, policy, seeds: int, sessions: int, salt: int) -> dict[str, np.ndarray]:
    """Per seed: mean watch time, click-through rate and length over ``sessions`` sessions."""
    rows = {"watch_time": [], "ctr": [], "length": []}
    for s in range(seeds):
        out = recsim.rollout_sessions(env, policy(s), random.fold_in(random.key(salt), s), sessions)
        for name in rows:
            rows[name].append(float(out[name].double().mean()))
    return {k: np.asarray(v) for k, v in rows.items()}


def plot(run_dir: Path, baselines: dict[str, float], output: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, returns = load_curve(run_dir)
    center, low, high = bootstrap_band(returns)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.plot(steps, center, color="C0", label=f"PPO slate policy ({returns.shape[1]} seeds, 95% band)")
    ax.fill_between(steps, low, high, color="C0", alpha=0.25, linewidth=0)
    for i, (name, value) in enumerate(baselines.items()):
        ax.axhline(value, color=f"C{i + 1}", linestyle="--", label=name)
    ax.set_xlabel("environment steps (per seed)")
    ax.set_ylabel("session watch time (evaluation)")
    ax.set_title(ENV_ID)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(output)
    plt.close(fig)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--sessions", type=int, default=500, help="evaluation sessions per seed and policy")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", type=Path, default=RESULTS / "applications")
    args = parser.parse_args()

    env = envs.make(ENV_ID)
    train = ppo.make_train(ppo.Config.preset(ENV_ID, total_timesteps=args.steps))
    run_dir = args.out / "recsim-ppo"
    start = time.perf_counter()
    result = run(
        train,
        seeds=args.seeds,
        compile=args.compile,
        eval_every=max(args.steps // 8, 1),
        eval_episodes=20,
        out_dir=run_dir,
        progress=False,
    )
    wall = time.perf_counter() - start
    params = result.state["params"]

    def trained(s: int):
        member = params[s]
        return lambda env, physics, p, key: train.policy(member, env.observe(physics))

    stats = {"PPO slate policy": session_stats(env, trained, args.seeds, args.sessions, salt=100)}
    for name, policy in BASELINES.items():
        stats[name] = session_stats(env, lambda s, policy=policy: policy, args.seeds, args.sessions, salt=100)

    rows, payload = [], {"env": ENV_ID, "seeds": args.seeds, "steps": args.steps, "sessions": args.sessions}
    for name, per_seed in stats.items():
        summary = {k: interval(v) for k, v in per_seed.items()}
        payload[name] = {
            k: {"mean": m, "ci95": [lo, hi], "per_seed": per_seed[k].tolist()}
            for k, (m, lo, hi) in summary.items()
        }
        rows.append(
            [
                name,
                cell(summary["watch_time"], ".1f"),
                cell(summary["ctr"], ".3f"),
                cell(summary["length"], ".1f"),
            ]
        )
    title = (
        f"{ENV_ID}: {args.seeds} seeds x {args.steps:,} steps, {args.sessions} sessions per seed "
        "(mean [95% bootstrap])"
    )
    print_table(title, ["policy", "watch time", "click-through", "session length"], rows)
    ppo_watch, greedy = stats["PPO slate policy"]["watch_time"], stats["greedy"]["watch_time"]
    r, lo, hi = ratio_interval(ppo_watch, greedy)
    ctr_gap = interval(stats["greedy"]["ctr"] - stats["PPO slate policy"]["ctr"])
    print(f"PPO / greedy watch time: {cell((r, lo, hi), '.2f')}")
    print(f"greedy - PPO click-through: {cell(ctr_gap, '+.3f')}")
    print(
        f"training: wall {wall:.0f} s, compile {result.compile_s:.0f} s, "
        f"{result.env_steps_per_s:,.0f} env-steps/s"
    )
    payload["ppo_over_greedy_watch_time"] = {"ratio": r, "ci95": [lo, hi]}
    payload["greedy_minus_ppo_ctr"] = {"mean": ctr_gap[0], "ci95": [ctr_gap[1], ctr_gap[2]]}
    payload["training"] = {
        "wall_s": wall,
        "compile_s": result.compile_s,
        "env_steps_per_s": result.env_steps_per_s,
    }
    baselines = {name: float(stats[name]["watch_time"].mean()) for name in BASELINES}
    figure = plot(run_dir, baselines, args.out / "recsim.png")
    print(f"curve: {figure}")
    print(f"wrote {write_json('bench_applications', payload)}")


if __name__ == "__main__":
    main()
