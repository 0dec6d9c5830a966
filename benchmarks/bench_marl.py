"""Multi-agent RL, measured: unit micro-control on MicroCombat maps (:mod:`frl.envs.micro_combat`).

Per map (``--maps``): MAPPO (a centralised state critic) and QMIX (or VDN, ``--value-agent``) over N
seeds in one vmapped run each; every seed's greedy policy is evaluated on ``--episodes`` episodes
at the end (team return and win rate against the heuristic enemy), beside two baselines: a
uniformly random legal policy and the enemy's own heuristic played by the agents (the mirror
match). Mean over seeds with 95% percentile bootstrap intervals; learning curves with bands.
Throughput: MAPPO's environment steps per second for 1 and 32 seeds (compile excluded).

VMAS navigation (``--only vmas``): TorchRL's own MAPPO (``benchmarks/peers/torchrl_mappo.py``,
its multi-agent tutorial's recipe) beside frl's learners in the same TorchRL collector loop
(``examples/vmas_mappo.py``): MAPPO with TorchRL's critic (``team``: one value of the joint
observation), MAPPO with a value per agent (``joint``: the joint observation and the agent's
identity, ``n`` times the critic's rows) and IPPO, at equal frames and settings, ``--seeds`` seeds
each over ``--workers`` processes: final team return with bootstrap intervals, env-steps/s, the
milliseconds of one minibatch update, the collector's seconds per batch, and two floors: a
plain-torch forward and backward of TorchRL's two networks, and VMAS stepping one batch alone.

    python benchmarks/bench_marl.py                                  # 3m and 2s3z, 8 seeds
    python benchmarks/bench_marl.py --maps 3m --seeds 2 --mappo-steps 50000 --value-steps 0
    python benchmarks/bench_marl.py --only vmas --vmas-iterations 10 --workers 2
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, cell, interval, plot, print_table, ratio_interval, time_call, write_json

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
        figure = plot(
            runs, baselines, args.out / f"combat-{map_name}.png", env_id, "team return (evaluation)"
        )
        print(f"curve: {figure}")
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


VMAS_VARIANTS = ("torchrl mappo", "frl mappo team", "frl mappo joint", "frl ippo")
"""TorchRL's MAPPO, and frl's learner with a team critic (one value of the joint observation,
TorchRL's centralised critic), a joint critic (a value per agent: the joint observation and the
agent's identity) and local critics (IPPO)."""
CRITICS = {"frl mappo team": "team", "frl mappo joint": "joint", "frl ippo": "local"}


def _vmas_job(variant: str, seed: int, iterations: int, epochs: int | None, hidden: int) -> dict:
    """One seed of one learner (in a worker process: the example and the peer on its path)."""
    root = Path(__file__).resolve().parents[1]
    for folder in (str(root / "examples"), str(root / "benchmarks" / "peers")):
        if folder not in sys.path:  # a worker runs many jobs
            sys.path.insert(0, folder)
    if variant == "torchrl mappo":
        import torchrl_mappo

        return torchrl_mappo.train(seed, iterations, epochs=epochs, hidden=hidden)
    import vmas_mappo

    critic = CRITICS[variant]
    epochs = epochs or vmas_mappo.EPOCHS
    return vmas_mappo.train(
        seed, "vmas:navigation", iterations, critic, epochs=epochs, hidden=hidden, log=False
    )


def update_floor_ms(obs_dim: int = 18, n_agents: int = 3, minibatch: int = 400, hidden: int = 256) -> float:
    """Plain torch: forward and backward of TorchRL's two networks on one minibatch, the actor on
    every (sample, agent) row and the centralised critic on every sample's joint observation."""
    from torch import nn

    def mlp(n_in: int, n_out: int) -> nn.Module:
        layers = (
            nn.Linear(n_in, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, n_out),
        )
        return nn.Sequential(*layers)

    actor, critic = mlp(obs_dim, 4), mlp(n_agents * obs_dim, 1)
    obs = torch.randn(minibatch * n_agents, obs_dim)
    joint = torch.randn(minibatch, n_agents * obs_dim)

    def step() -> None:
        (actor(obs).square().mean() + critic(joint).square().mean()).backward()

    return 1e3 * time_call(step)


def vmas_batch_s(num_envs: int = 60, steps: int = 100) -> float:
    """VMAS alone: seconds to step navigation's ``num_envs`` environments ``steps`` times (one
    6,000-frame batch) with random forces, no TorchRL and no policy: the collection floor."""
    import vmas

    torch.manual_seed(0)
    env = vmas.make_env("navigation", num_envs=num_envs, device="cpu", continuous_actions=True, n_agents=3)
    env.reset()

    def batch() -> None:
        for _ in range(steps):
            env.step([torch.rand(num_envs, 2) * 2 - 1 for _ in range(3)])

    return time_call(batch, repeats=3, min_seconds=0.0, warmup=1)


def vmas_rows(args: argparse.Namespace) -> dict:
    """TorchRL's MAPPO and frl's MAPPO/IPPO on VMAS navigation, seeds over worker processes."""
    jobs = [(v, s) for s in range(args.seeds) for v in VMAS_VARIANTS]
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(_vmas_job, v, s, args.vmas_iterations, args.vmas_epochs, args.vmas_hidden)
            for v, s in jobs
        ]
        results = [f.result() for f in futures]
    by = {v: [r for (name, _), r in zip(jobs, results) if name == v] for v in VMAS_VARIANTS}
    final = {v: np.array([r["final_return"] for r in rs]) for v, rs in by.items()}
    speed = {v: np.array([r["env_steps_per_s"] for r in rs]) for v, rs in by.items()}
    reference = "torchrl mappo"
    rows: list[list] = []
    out = {"floor_update_ms": update_floor_ms(hidden=args.vmas_hidden), "vmas_batch_s": vmas_batch_s()}
    for v in VMAS_VARIANTS:
        rs = by[v]
        out[v] = {
            "final_return": final[v].tolist(),
            "curves": [r["curve"] for r in rs],
            "env_steps_per_s": speed[v].tolist(),
            "update_ms": [r["update_ms"] for r in rs],
            "compile_s": [r["compile_s"] for r in rs],
            "collect_s_per_batch": [r["collect_s"] / args.vmas_iterations for r in rs],
        }
        rows.append(
            [
                v,
                cell(interval(final[v]), ".3f"),
                cell(interval(final[v] - final[reference]), "+.3f"),
                f"{speed[v].mean():,.0f}",
                cell(ratio_interval(speed[v], speed[reference]), ".2f"),
                f"{np.mean(out[v]['collect_s_per_batch']):.2f}",
                f"{np.mean(out[v]['update_ms']):.1f}",
                f"{np.mean(out[v]['compile_s']):.0f}",
            ]
        )
    frames = args.vmas_iterations * 6000
    print_table(
        f"VMAS navigation (3 agents, 60 envs, {args.vmas_hidden}-unit layers), {frames:,} frames x "
        f"{args.seeds} seeds; floors: update "
        f"(torch fwd+bwd) {out['floor_update_ms']:.1f} ms, VMAS alone {out['vmas_batch_s']:.2f} s/batch",
        [
            "learner",
            "final team return",
            "- torchrl (paired)",
            "env-steps/s",
            "/ torchrl",
            "collect s/batch",
            "update ms",
            "compile s",
        ],
        rows,
    )
    steps = np.arange(1, args.vmas_iterations + 1) * 6000
    curves = {v: (steps, np.array(out[v]["curves"]).T) for v in VMAS_VARIANTS}
    title = "VMAS navigation, TorchRL collector loop"
    figure = plot(
        curves,
        {},
        args.out / f"vmas-navigation-{args.vmas_hidden}.png",
        title,
        "team return (training episodes)",
    )
    print(f"curve: {figure}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parts = ("combat", "throughput", "vmas")
    parser.add_argument("--only", nargs="*", choices=parts, default=parts)
    parser.add_argument("--maps", nargs="*", default=("3m", "2s3z"))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--mappo-steps", type=int, default=200_000, help="MAPPO steps per seed (0: skip)")
    parser.add_argument("--value-steps", type=int, default=200_000, help="QMIX/VDN steps per seed (0: skip)")
    parser.add_argument("--value-agent", choices=("qmix", "vdn"), default="qmix")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per seed")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--vmas-iterations", type=int, default=10, help="6,000-frame batches per seed")
    parser.add_argument("--vmas-epochs", type=int, default=None, help="epochs per batch (default 30)")
    parser.add_argument("--vmas-hidden", type=int, default=256, help="units per hidden layer (both learners)")
    parser.add_argument("--workers", type=int, default=1, help="processes for the VMAS seeds")
    parser.add_argument("--out", type=Path, default=RESULTS / "marl")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {}
    if "combat" in args.only:
        payload["combat"] = combat_rows(args)
    if "throughput" in args.only:
        payload["throughput"] = throughput(args)
    if "vmas" in args.only:
        payload["vmas"] = vmas_rows(args)
    name = "bench_marl" if set(args.only) == set(parts) else "_".join(("bench_marl", *args.only))
    print(f"wrote {write_json(name, payload)}")


if __name__ == "__main__":
    main()
