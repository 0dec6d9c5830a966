"""The applications, learned and measured against baselines that give the numbers a meaning.

Recommendation (``RecSim-InterestEvolution-v0``, :mod:`frl.envs.recsim`): PPO's slate policy
(Plackett-Luce over per-candidate scores) trained over N seeds in one vmapped run, then every
seed's deterministic policy and the baselines (random, greedy = highest immediate click
probability, the quality oracle) run ``--sessions`` whole sessions each. Per policy: session
watch time (the return), click-through rate and session length, the mean over seeds with a 95%
percentile bootstrap interval (seeds resampled); and PPO's watch time over greedy's, with its
interval. Beside them: SlateQ (observed interests, the known choice model) and a policy learned
offline from sessions a softmax-greedy recommender logged, against that logger.

Driving (``Highway-v0``, :mod:`frl.envs.highway`): SAC and PPO over N seeds each (SAC trained on
the reward minus ``--sac-headway-weight`` times the headway cost), then every seed's deterministic
policy and the hand-tuned controller (PD lane keeping + IDM) drive ``--episodes`` evaluation
episodes per seed on the task's reward: return, collisions (every termination is a crash or
leaving the road) and mean speed; SAC's return over the controller's with its interval.

Atari-like (MinAtar, ``--games``): PPO and DQN with MinAtar's CNN over N seeds beside a random policy.

Learning curves with bands over seeds (baselines as lines) go next to the JSON.

    python benchmarks/bench_applications.py                      # everything, 8 seeds
    python benchmarks/bench_applications.py --only recsim --seeds 2 --steps 50000 --no-compile
    python benchmarks/bench_applications.py --only driving --seeds 8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, cell, interval, plot, print_table, ratio_interval, write_json

from frl import envs, random
from frl.algos import dqn, ppo, sac, slateq
from frl.algos.logged import pretrain_from_logs
from frl.envs import highway, recsim
from frl.envs.check import random_return
from frl.run import run

ENV_ID = "RecSim-InterestEvolution-v0"
OBSERVED_ID = "RecSim-InterestEvolution-Observed-v0"
BASELINES = {
    "random": recsim.random_slate,
    "greedy": recsim.greedy_slate,
    "quality oracle": recsim.quality_slate,
}


def session_stats(env, policy, seeds: int, sessions: int, salt: int) -> dict[str, np.ndarray]:
    """Per seed: mean watch time, click-through rate and length over ``sessions`` sessions."""
    rows = {"watch_time": [], "ctr": [], "length": []}
    for s in range(seeds):
        out = recsim.rollout_sessions(env, policy(s), random.fold_in(random.key(salt), s), sessions)
        for name in rows:
            rows[name].append(float(out[name].double().mean()))
    return {k: np.asarray(v) for k, v in rows.items()}


def recsim_rows(args: argparse.Namespace) -> dict:
    """PPO (latent interests), SlateQ (observed interests, known choice model), the policy learned
    from logged sessions, and the baselines, on the same sessions."""
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

    def of(agent, params):
        return lambda s: lambda env, physics, p, key: agent.policy(params[s], env.observe(physics))

    stats = {
        "PPO slate policy": session_stats(
            env, of(train, result.state["params"]), args.seeds, args.sessions, 100
        )
    }
    if args.slateq_steps:
        observed = envs.make(OBSERVED_ID)
        q_train = slateq.make_train(slateq.Config(total_timesteps=args.slateq_steps))
        q_result = run(q_train, seeds=args.seeds, compile=args.compile, progress=False, eval_episodes=20)
        stats["SlateQ"] = session_stats(
            observed, of(q_train, q_result.state["params"]), args.seeds, args.sessions, 100
        )
    logger = recsim.softmax_greedy(0.5)
    learned = []
    for s in range(args.seeds):
        logs = recsim.log_sessions(env, logger, random.fold_in(random.key(200), s), args.logged_sessions)
        params, _ = pretrain_from_logs(train, logs, key=random.fold_in(random.key(300), s), entropy_coef=2.0)
        learned.append(params)
    stats["learned from logs (offline)"] = session_stats(
        env, of(train, learned), args.seeds, args.sessions, 100
    )
    stats["logger (softmax greedy)"] = session_stats(env, lambda s: logger, args.seeds, args.sessions, 100)
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
    greedy = stats["greedy"]["watch_time"]
    for name in [n for n in ("PPO slate policy", "SlateQ") if n in stats]:
        r, lo, hi = ratio_interval(stats[name]["watch_time"], greedy)
        print(f"{name} / greedy watch time: {cell((r, lo, hi), '.2f')}")
        payload[f"{name} over greedy watch time"] = {"ratio": r, "ci95": [lo, hi]}
    ctr_gap = interval(stats["greedy"]["ctr"] - stats["PPO slate policy"]["ctr"])
    print(f"greedy - PPO click-through: {cell(ctr_gap, '+.3f')}")
    offline = ratio_interval(
        stats["learned from logs (offline)"]["watch_time"], stats["logger (softmax greedy)"]["watch_time"]
    )
    print(f"learned from logs / logger watch time: {cell(offline, '.2f')}")
    print(
        f"PPO training: wall {wall:.0f} s, compile {result.compile_s:.0f} s, "
        f"{result.env_steps_per_s:,.0f} env-steps/s"
    )
    payload["greedy_minus_ppo_ctr"] = {"mean": ctr_gap[0], "ci95": [ctr_gap[1], ctr_gap[2]]}
    payload["logs_over_logger_watch_time"] = {"ratio": offline[0], "ci95": [offline[1], offline[2]]}
    payload["training"] = {
        "wall_s": wall,
        "compile_s": result.compile_s,
        "env_steps_per_s": result.env_steps_per_s,
    }
    baselines = {name: float(stats[name]["watch_time"].mean()) for name in BASELINES}
    figure = plot(
        {"PPO": run_dir}, baselines, args.out / "recsim.png", ENV_ID, "session watch time (evaluation)"
    )
    print(f"curve: {figure}")
    return payload


def driving_stats(env, policy, seeds: int, episodes: int, salt: int) -> dict[str, np.ndarray]:
    """Per seed: mean return, collisions (count) and mean speed over ``episodes`` episodes."""
    rows = {"return": [], "collisions": [], "speed": []}
    for s in range(seeds):
        out = highway.rollout_episodes(env, policy(s), random.fold_in(random.key(salt), s), episodes)
        rows["return"].append(float(out["return"].mean()))
        rows["collisions"].append(int(out["collision"].sum()))
        rows["speed"].append(float(out["mean_speed"].mean()))
    return {k: np.asarray(v) for k, v in rows.items()}


def driving_rows(args: argparse.Namespace) -> dict:
    """SAC and PPO on the highway beside the hand-tuned controller, on the same episodes."""
    env_id = "Highway-v0"
    env = envs.make(env_id)
    # SAC trains on the task's reward minus a headway cost (Highway.headway_cost); every policy is
    # evaluated on the task's reward
    shaped = envs.make(env_id, headway_weight=args.sac_headway_weight, safe_headway=args.sac_safe_headway)
    agents = {
        name: (algo.make_train(algo.Config.preset(env_id, total_timesteps=steps), env=train_env), steps)
        for name, algo, steps, train_env in (
            ("SAC", sac, args.sac_steps, shaped),
            ("PPO", ppo, args.ppo_steps, env),
        )
        if steps > 0  # 0 leaves the agent out
    }
    stats, training, run_dirs = {}, {}, {}
    for name, (train, steps) in agents.items():
        run_dirs[name] = args.out / f"highway-{name.lower()}"
        start = time.perf_counter()
        result = run(
            train,
            seeds=args.seeds,
            compile=args.compile,
            eval_every=max(steps // 8, 1),
            eval_episodes=10,
            out_dir=run_dirs[name],
            progress=False,
        )
        training[name] = {
            "steps": steps,
            "wall_s": time.perf_counter() - start,
            "compile_s": result.compile_s,
            "env_steps_per_s": result.env_steps_per_s,
        }
        params = result.state["params"]
        stats[name] = driving_stats(
            env,
            lambda s, train=train, params=params: (
                lambda e, physics, p, key: train.policy(params[s], e.observe(physics))
            ),
            args.seeds,
            args.episodes,
            500,
        )
    stats["hand-tuned controller"] = driving_stats(
        env, lambda s: highway.hand_tuned, args.seeds, args.episodes, 500
    )
    payload = {"env": env_id, "seeds": args.seeds, "episodes_per_seed": args.episodes, "training": training}
    payload["sac_training_env"] = {
        "headway_weight": shaped.headway_weight,
        "safe_headway": shaped.safe_headway,
    }
    rows = []
    for name, per_seed in stats.items():
        payload[name] = {
            "return": {"mean_ci95": interval(per_seed["return"]), "per_seed": per_seed["return"].tolist()},
            "collisions_per_seed": per_seed["collisions"].tolist(),
            "mean_speed": float(per_seed["speed"].mean()),
        }
        steps = f"{training[name]['steps']:,}" if name in training else "-"
        rows.append(
            [
                name,
                steps,
                cell(interval(per_seed["return"]), ".1f"),
                f"{int(per_seed['collisions'].sum())} / {args.seeds * args.episodes}",
                f"{per_seed['speed'].mean():.1f}",
            ]
        )
    print_table(
        f"{env_id}: {args.seeds} seeds, {args.episodes} evaluation episodes per seed (mean [95% bootstrap])",
        ["policy", "steps per seed", "return", "collisions", "speed m/s"],
        rows,
    )
    controller = stats["hand-tuned controller"]["return"]
    for name in agents:
        r, lo, hi = ratio_interval(stats[name]["return"], controller)
        print(f"{name} / hand-tuned return: {cell((r, lo, hi), '.3f')}")
        payload[f"{name} over controller return"] = {"ratio": r, "ci95": [lo, hi]}
        t = training[name]
        print(
            f"{name} training: wall {t['wall_s']:.0f} s, compile {t['compile_s']:.0f} s, "
            f"{t['env_steps_per_s']:,.0f} env-steps/s"
        )
    lines = {"hand-tuned controller": float(controller.mean())}
    for name in agents:
        figure = plot(
            {name: run_dirs[name]},
            lines,
            args.out / f"highway-{name.lower()}.png",
            f"{env_id} ({name})",
            "return (evaluation)",
        )
        print(f"curve: {figure}")
    return payload


def minatar_rows(args: argparse.Namespace) -> dict:
    """PPO and DQN with MinAtar's CNN on each of ``--games``, beside a uniformly random policy."""
    agents = {
        name: (algo, steps)
        for name, algo, steps in (("PPO", ppo, args.minatar_steps), ("DQN", dqn, args.dqn_steps))
        if steps > 0  # 0 leaves the agent out
    }
    payload = {}
    for game in args.games:
        env_id = f"{game}-MinAtar"
        rand = np.asarray(
            [random_return(envs.make(env_id), random.fold_in(random.key(400), s)) for s in range(args.seeds)]
        )
        payload[env_id] = {"random": {"per_seed": rand.tolist(), "mean_ci95": interval(rand)}}
        rows, run_dirs = [], {}
        for name, (algo, steps) in agents.items():
            train = algo.make_train(algo.Config.preset(env_id, total_timesteps=steps))
            run_dirs[name] = args.out / f"minatar-{game.lower()}-{name.lower()}"
            start = time.perf_counter()
            result = run(
                train,
                seeds=args.seeds,
                compile=True,  # the CNN eagerly runs ~200 env-steps/s here
                warm_start=True,
                eval_every=max(steps // 8, 1),
                eval_episodes=20,
                out_dir=run_dirs[name],
                progress=False,
            )
            wall = time.perf_counter() - start
            final = np.asarray(result.eval_returns)
            rows.append([f"{name} (MinAtar CNN)", f"{steps:,}", cell(interval(final), ".2f")])
            print(
                f"{env_id} {name} training: wall {wall:.0f} s, compile {result.compile_s:.0f} s, "
                f"{result.env_steps_per_s:,.0f} env-steps/s"
            )
            payload[env_id][name.lower()] = {
                "steps": steps,
                "per_seed": final.tolist(),
                "mean_ci95": interval(final),
                "training": {
                    "wall_s": wall,
                    "compile_s": result.compile_s,
                    "env_steps_per_s": result.env_steps_per_s,
                },
            }
        rows.append(["random", "-", cell(interval(rand), ".2f")])
        print_table(
            f"{env_id}: {args.seeds} seeds (final evaluation, 20 episodes per seed, mean [95% bootstrap])",
            ["policy", "steps per seed", "return"],
            rows,
        )
        figure = plot(
            run_dirs,
            {"random": float(rand.mean())},
            args.out / f"minatar-{game.lower()}.png",
            env_id,
            "return (evaluation)",
        )
        print(f"curve: {figure}")
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parts = ("recsim", "driving", "minatar")
    parser.add_argument("--only", nargs="*", choices=parts, default=parts)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200_000, help="PPO steps per seed on RecSim")
    parser.add_argument("--slateq-steps", type=int, default=40_000, help="SlateQ steps per seed (0: skip)")
    parser.add_argument("--logged-sessions", type=int, default=500, help="sessions logged per seed")
    parser.add_argument(
        "--minatar-steps", type=int, default=300_000, help="PPO steps per seed and game (0: skip)"
    )
    parser.add_argument(
        "--dqn-steps", type=int, default=300_000, help="DQN steps per seed and game (0: skip)"
    )
    parser.add_argument(
        "--games",
        nargs="*",
        default=("Breakout", "SpaceInvaders"),
        choices=("Asterix", "Breakout", "Freeway", "SpaceInvaders"),
        help="MinAtar games",
    )
    parser.add_argument(
        "--sac-steps", type=int, default=200_000, help="SAC steps per seed on Highway-v0 (0: skip)"
    )
    parser.add_argument(
        "--sac-headway-weight",
        type=float,
        default=3.0,
        help="SAC trains on Highway-v0's reward minus this times its headway cost (0: the task's reward)",
    )
    parser.add_argument(
        "--sac-safe-headway", type=float, default=1.5, help="the time gap (s) the headway cost starts at"
    )
    parser.add_argument(
        "--ppo-steps", type=int, default=200_000, help="PPO steps per seed on Highway-v0 (0: skip)"
    )
    parser.add_argument("--episodes", type=int, default=100, help="driving evaluation episodes per seed")
    parser.add_argument("--sessions", type=int, default=500, help="evaluation sessions per seed and policy")
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=True, help="RecSim's and driving's agents"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "applications")
    args = parser.parse_args()
    payload = {}
    if "recsim" in args.only:
        payload["recsim"] = recsim_rows(args)
    if "driving" in args.only:
        payload["driving"] = driving_rows(args)
    if "minatar" in args.only:
        payload["minatar"] = minatar_rows(args)
    print(f"wrote {write_json('bench_applications', payload)}")


if __name__ == "__main__":
    main()
