"""Multi-agent RL, measured: unit micro-control on MicroCombat maps (:mod:`frl.envs.micro_combat`).

Per map (``--maps``): MAPPO (a centralised state critic) and QMIX (or VDN, ``--value-agent``) over N
seeds in one vmapped run each; every seed's greedy policy is evaluated on ``--episodes`` episodes
at the end (team return and win rate against the heuristic enemy), beside two baselines: a
uniformly random legal policy and the enemy's own heuristic played by the agents (the mirror
match). Mean over seeds with 95% percentile bootstrap intervals; learning curves with bands.
Throughput: MAPPO's environment steps per second for 1 and 32 seeds (compile excluded).

    python benchmarks/bench_marl.py                                  # 3m and 2s3z, 8 seeds
    python benchmarks/bench_marl.py --maps 3m --seeds 2 --mappo-steps 50000 --value-steps 0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, cell, interval, plot, print_table, write_json

from frl import envs, random
from frl.algos import mappo, qmix
from frl.distributions import MaskedCategorical
from frl.run import run


def baseline(env_id: str, policy: str, seeds: int, episodes: int) -> dict[str, np.ndarray]:
    """Per seed: mean team return and win rate of ``"random"`` (uniform over legal actions) or
    ``"heuristic"`` (the enemy's rule played by the agents) over ``episodes`` episodes."""
    env = envs.make(env_id)
    out = {"return": [], "win": []}
    for s in range(seeds):
        key = random.fold_in(random.key(500), s)
        obs, state = env.reset(key, num_envs=episodes)
        live = torch.ones(episodes, dtype=torch.bool)
        total, won = torch.zeros(episodes, dtype=torch.float64), torch.zeros(episodes, dtype=torch.bool)
        for _ in range(env.max_episode_steps):
            key, k_act, k_step = random.split(key, 3)
            if policy == "random":
                mask = obs["agents"]["action_mask"]
                action = MaskedCategorical().sample(k_act, (torch.zeros(mask.shape), mask))
            else:
                action = env.heuristic_agents(state["physics"])
            obs, state, reward, terminated, truncated, info = env.step(k_step, state, action)
            total += torch.where(live, reward.double(), 0.0)
            won |= live & info["win"]
            live &= ~(terminated | truncated)
        out["return"].append(float(total.mean()))
        out["win"].append(float(won.double().mean()))
    return {k: np.asarray(v) for k, v in out.items()}


def train_agent(name: str, train, args: argparse.Namespace, steps: int, out_dir: Path) -> dict:
    """One vmapped run of ``args.seeds`` seeds; the final greedy evaluation per seed."""
    start = time.perf_counter()
    result = run(
        train,
        seeds=args.seeds,
        compile=args.compile,
        eval_every=max(steps // 8, 1),
        eval_episodes=args.episodes,
        out_dir=out_dir,
        progress=False,
    )
    wall = time.perf_counter() - start
    last = result.history[-1]
    print(
        f"{name}: wall {wall:.0f} s, compile {result.compile_s:.0f} s, "
        f"{result.env_steps_per_s:,.0f} env-steps/s (all seeds)",
        flush=True,
    )
    return {
        "steps": steps,
        "return": np.asarray(result.eval_returns),
        "win": np.asarray(last["eval_win_per_member"]),
        "training": {
            "wall_s": wall,
            "compile_s": result.compile_s,
            "env_steps_per_s": result.env_steps_per_s,
        },
    }


def combat_rows(args: argparse.Namespace) -> dict:
    payload = {}
    value_config = qmix.VDNConfig if args.value_agent == "vdn" else qmix.Config
    for map_name in args.maps:
        env_id = f"MicroCombat-{map_name}-v0"
        runs, rows, entry = {}, [], {}
        agents = []
        if args.mappo_steps > 0:
            agents.append(
                ("MAPPO", mappo.make_train(mappo.Config(env_id=env_id, total_timesteps=args.mappo_steps)))
            )
        if args.value_steps > 0:
            config = value_config(env_id=env_id, total_timesteps=args.value_steps)
            agents.append((args.value_agent.upper(), qmix.make_train(config)))
        for label, train in agents:
            runs[label] = args.out / f"combat-{map_name}-{label.lower()}"
            got = train_agent(f"{env_id} {label}", train, args, train.config.total_timesteps, runs[label])
            entry[label] = {
                "steps": got["steps"],
                **{
                    k: {"per_seed": got[k].tolist(), "mean_ci95": interval(got[k])} for k in ("return", "win")
                },
                "training": got["training"],
            }
            rows.append(
                [
                    label,
                    f"{got['steps']:,}",
                    cell(interval(got["return"]), ".2f"),
                    cell(interval(got["win"]), ".2f"),
                ]
            )
        for name in ("random", "heuristic"):
            got = baseline(env_id, name, args.seeds, args.episodes)
            entry[name] = {
                k: {"per_seed": got[k].tolist(), "mean_ci95": interval(got[k])} for k in ("return", "win")
            }
            label = "random legal actions" if name == "random" else "heuristic mirror"
            rows.append([label, "-", cell(interval(got["return"]), ".2f"), cell(interval(got["win"]), ".2f")])
        print_table(
            f"{env_id}: {args.seeds} seeds, {args.episodes} greedy evaluation episodes per seed "
            "(mean [95% bootstrap])",
            ["policy", "steps per seed", "team return", "win rate"],
            rows,
        )
        baselines = {f"{k} (return)": entry[k]["return"]["mean_ci95"][0] for k in ("random", "heuristic")}
        print(f"curve: {plot(runs, baselines, args.out / f'combat-{map_name}.png', env_id, 'team return')}")
        payload[env_id] = entry
    return payload


def throughput(args: argparse.Namespace) -> dict:
    """MAPPO's env-steps/s on 3m at 1 and 32 seeds: timed iterations after the first call."""
    out = {}
    rows = []
    for seeds in (1, 32):
        train = mappo.make_train(mappo.Config(total_timesteps=10**9))
        state = torch.func.vmap(train.init)(random.split(random.key(0), seeds))
        step = torch.func.vmap(train.step, randomness="error")
        if args.compile:
            import frl

            step = frl.compile(step)
        start = time.perf_counter()
        state, _ = step(state)
        first = time.perf_counter() - start
        iterations = 5
        start = time.perf_counter()
        for _ in range(iterations):
            state, _ = step(state)
        seconds = time.perf_counter() - start
        rate = iterations * train.steps_per_iteration * seeds / seconds
        out[seeds] = {"env_steps_per_s": rate, "first_call_s": first}
        rows.append([seeds, f"{rate:,.0f}", f"{first:.1f}"])
    print_table(
        f"MAPPO on MicroCombat-3m-v0 ({'compiled' if args.compile else 'eager'} iterations of "
        f"{train.steps_per_iteration} steps per seed)",
        ["seeds", "env-steps/s (all seeds)", "first call s"],
        rows,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parts = ("combat", "throughput")
    parser.add_argument("--only", nargs="*", choices=parts, default=parts)
    parser.add_argument("--maps", nargs="*", default=("3m", "2s3z"))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--mappo-steps", type=int, default=200_000, help="MAPPO steps per seed (0: skip)")
    parser.add_argument("--value-steps", type=int, default=200_000, help="QMIX/VDN steps per seed (0: skip)")
    parser.add_argument("--value-agent", choices=("qmix", "vdn"), default="qmix")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per seed")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", type=Path, default=RESULTS / "marl")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {}
    if "combat" in args.only:
        payload["combat"] = combat_rows(args)
    if "throughput" in args.only:
        payload["throughput"] = throughput(args)
    print(f"wrote {write_json('bench_marl', payload)}")


if __name__ == "__main__":
    main()
