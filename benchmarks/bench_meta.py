"""Meta-RL: RL^2 against bandit algorithms and planning, MAML against pretraining and fine-tuning.

Three parts (``--parts``), each over ``--seeds`` seeds:

* ``bandits``: RL^2 (``recurrent_ppo`` on ``BernoulliBandits-v0``: 10 arms, 100 pulls per trial,
  a new task per trial) trained in one vmapped run; each seed's policy plays 2,000 new trials
  (sampled actions, as trained; and greedy) and its expected regret ``sum_t max(p) - p[a_t]`` is
  compared with Thompson sampling (Beta(1, 1) priors), UCB1 and uniform pulls on the same tasks.
  The issue's bar: RL^2's regret within 1.3x Thompson sampling's.
* ``mdps``: RL^2 on ``RandomMDPs-v0`` (10 states, 5 actions, 10 episodes of 10 steps per trial):
  the mean trial return against uniform actions and the oracle that knows each MDP (backward
  induction over an episode's 10 steps).
* ``maml``: MAML (``frl.algos.maml``) and the baseline pretrained on the task distribution with
  the same policy gradient and iterations, each seed evaluated on 40 new goals after 0 to 3
  inner steps of the same size on fresh trajectories. The bar: MAML's return after 1 and 3
  steps higher than the baseline's (paired over seeds, 95% intervals).

    python benchmarks/bench_meta.py                                   # all parts, 8 seeds
    python benchmarks/bench_meta.py --parts maml --seeds 2 --maml-iterations 20   # smoke
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import cell, interval, print_table, ratio_interval, write_json

from frl import random
from frl.algos import maml, recurrent_ppo
from frl.run import run

TRIALS = 2000


def _rl2(env_id: str, seeds: int | list[int], steps: int | None, compiled: bool):
    overrides = {} if steps is None else {"total_timesteps": steps}
    config = recurrent_ppo.Config.preset(env_id, **overrides)
    train = recurrent_ppo.make_train(config)
    result = run(train, seeds=seeds, compile=compiled, progress=False, eval_episodes=64)
    return train, result


@torch.no_grad()
def _play(env, act, key: torch.Tensor, n: int, regret: bool) -> np.ndarray:
    """Per-trial regret (or return) of ``act(obs, key, carry) -> (action, carry)`` on ``n`` trials
    whose tasks are drawn from ``key`` (the same tasks for every method given the same key)."""
    k_reset, key = random.split(key)
    obs, state = env.reset(k_reset, num_envs=n)
    carry, total = None, torch.zeros(n, dtype=torch.float64)
    for _ in range(env.max_episode_steps):
        key, k_act, k_env = random.split(key, 3)
        action, carry = act(obs, k_act, carry, state)
        if regret:
            best = env.means(state["physics"]).max(-1).values
            total += (best - env.expected_reward(state["physics"], action)).double()
        obs, state, reward, *_ = env.step(k_env, state, action)
        if not regret:
            total += reward.double()
    return total.numpy()


def _agent(train, params, greedy: bool):
    def act(obs, key, carry, state):
        carry = train.memory(obs.shape[0]) if carry is None else carry
        if greedy:
            return train.policy(params, obs, carry)
        action, _, carry = train.explore(params, None, obs, key, None, carry)
        return action, carry

    return act


def thompson(env, generator: torch.Generator):
    """Thompson sampling with Beta(1, 1) priors on each arm (counts in the carry)."""

    def act(obs, key, carry, state):
        n = obs.shape[0]
        wins, losses = carry if carry is not None else (torch.zeros(n, env.arms), torch.zeros(n, env.arms))
        if carry is not None:  # the observation holds the previous pull and its reward
            last, reward = obs[:, : env.arms], obs[:, env.arms : env.arms + 1]
            wins, losses = wins + last * reward, losses + last * (1 - reward)
        a, b = (wins + 1).double(), (losses + 1).double()
        x = _gamma(a, generator)
        y = _gamma(b, generator)
        return (x / (x + y)).argmax(-1), (wins, losses)

    return act


def _gamma(concentration: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gamma(k, 1) draws for integer ``k``: sums of ``k`` exponentials (counts here are <= 101)."""
    k_max = int(concentration.max())
    u = torch.rand(*concentration.shape, k_max, generator=generator, dtype=torch.float64).clamp_min(1e-300)
    mask = torch.arange(k_max, dtype=torch.float64) < concentration.unsqueeze(-1)
    return (-torch.log(u) * mask).sum(-1)


def ucb1(env):
    """UCB1 (Auer et al. 2002): every arm once, then ``mean + sqrt(2 ln t / n)``."""

    def act(obs, key, carry, state):
        n = obs.shape[0]
        wins, pulls, t = (
            carry if carry is not None else (torch.zeros(n, env.arms), torch.zeros(n, env.arms), 0)
        )
        if carry is not None:
            last, reward = obs[:, : env.arms], obs[:, env.arms : env.arms + 1]
            wins, pulls = wins + last * reward, pulls + last
        mean = wins / pulls.clamp(min=1)
        bonus = torch.sqrt(2 * torch.log(torch.tensor(t + 1.0)) / pulls.clamp(min=1))
        score = torch.where(pulls == 0, torch.full_like(mean, 1e9), mean + bonus)
        return score.argmax(-1), (wins, pulls, t + 1)

    return act


def uniform(env):
    def act(obs, key, carry, state):
        return random.randint(key, (obs.shape[0],), 0, env.action_space.n), carry

    return act


def bandits(seeds: list[int], steps: int | None, compiled: bool) -> tuple[list[list[str]], dict]:
    start = time.perf_counter()
    train, result = _rl2("BernoulliBandits-v0", seeds, steps, compiled)
    env, key = train.env, random.key(2024)
    per_seed = {"rl2 (sampled)": [], "rl2 (greedy)": []}
    for i in range(len(seeds)):
        params = result.state["params"][i]
        per_seed["rl2 (sampled)"].append(_play(env, _agent(train, params, False), key, TRIALS, True).mean())
        per_seed["rl2 (greedy)"].append(_play(env, _agent(train, params, True), key, TRIALS, True).mean())
    generator = torch.Generator().manual_seed(0)
    baselines = {
        "thompson": _play(env, thompson(env, generator), key, TRIALS, True),
        "ucb1": _play(env, ucb1(env), key, TRIALS, True),
        "uniform": _play(env, uniform(env), key, TRIALS, True),
    }
    ts = baselines["thompson"].mean()
    rows = []
    for name, values in per_seed.items():
        values = np.array(values)
        ratio = ratio_interval(values, np.full_like(values, ts))
        rows.append([name, f"{len(seeds)} seeds", cell(interval(values), ".2f"), cell(ratio, ".2f")])
    for name, values in baselines.items():
        rows.append([name, f"{TRIALS} trials", cell(interval(values), ".2f"), f"{values.mean() / ts:.2f}"])
    payload = {
        "rl2": {k: [float(x) for x in v] for k, v in per_seed.items()},
        "baselines": {k: float(v.mean()) for k, v in baselines.items()},
        "steps": result.env_steps,
        "wall_s": time.perf_counter() - start,
    }
    return rows, payload


def _oracle_and_uniform(env, physics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected trial returns of the optimal policy (knowing the MDP) and of uniform actions."""
    P, mu = (x.double() for x in env.tables(physics))
    v_best = torch.zeros(P.shape[0], env.states, dtype=torch.float64)
    v_unif = torch.zeros_like(v_best)
    for _ in range(env.horizon):
        v_best = (mu + torch.einsum("nsat,nt->nsa", P, v_best)).max(-1).values
        v_unif = (mu + torch.einsum("nsat,nt->nsa", P, v_unif)).mean(-1)
    return env.episodes * v_best[:, 0], env.episodes * v_unif[:, 0]


def mdps(seeds: int, steps: int | None, compiled: bool) -> tuple[list[list[str]], dict]:
    start = time.perf_counter()
    train, result = _rl2("RandomMDPs-v0", seeds, steps, compiled)
    env, key = train.env, random.key(2025)
    returns = np.array(
        [
            _play(env, _agent(train, result.state["params"][i], False), key, TRIALS, False).mean()
            for i in range(seeds)
        ]
    )
    _, state = env.reset(random.split(key)[0], num_envs=TRIALS)
    oracle, unif = (x.numpy() for x in _oracle_and_uniform(env, state["physics"]))
    rows = [
        ["rl2 (sampled)", f"{seeds} seeds", cell(interval(returns), ".1f")],
        ["oracle (knows the MDP)", f"{TRIALS} trials", f"{oracle.mean():.1f}"],
        ["uniform actions", f"{TRIALS} trials", f"{unif.mean():.1f}"],
    ]
    payload = {"rl2": returns.tolist(), "oracle": float(oracle.mean()), "uniform": float(unif.mean())}
    payload["wall_s"] = time.perf_counter() - start
    return rows, payload


def maml_part(seeds: int, iterations: int) -> tuple[list[list[str]], dict]:
    start = time.perf_counter()
    config = maml.Config(iterations=iterations)  # the defaults are the measured settings
    curves = {"maml": [], "pretrained": []}
    for seed in range(seeds):
        meta, _ = maml.meta_train(config, seed)
        pre, _ = maml.pretrain(config, seed)
        key = random.key(10_000 + seed)
        curves["maml"].append(maml.adaptation_returns(config, meta, key).tolist())
        curves["pretrained"].append(maml.adaptation_returns(config, pre, key).tolist())
    m, p = np.array(curves["maml"]), np.array(curves["pretrained"])
    rows = []
    for steps in range(m.shape[1]):
        diff = m[:, steps] - p[:, steps]
        rows.append(
            [
                steps,
                cell(interval(m[:, steps]), ".2f"),
                cell(interval(p[:, steps]), ".2f"),
                cell(interval(diff), ".2f"),
            ]
        )
    payload = {"config": config.__dict__, "curves": curves, "wall_s": time.perf_counter() - start}
    return rows, payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--parts", nargs="+", default=["bandits", "mdps", "maml"], choices=["bandits", "mdps", "maml"]
    )
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="bandits: RL^2 seeds first-seed .. + seeds - 1"
    )
    parser.add_argument("--rl2-steps", type=int, default=None, help="steps per seed (default: the preset's)")
    parser.add_argument("--maml-iterations", type=int, default=150)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    payload = {}
    if "bandits" in args.parts:
        seeds = list(range(args.first_seed, args.first_seed + args.seeds))
        rows, payload["bandits"] = bandits(seeds, args.rl2_steps, not args.no_compile)
        payload["bandits"]["seeds"] = seeds
        columns = ["method", "over", "regret per trial (mean [95% CI])", "/ Thompson"]
        print_table("Bernoulli bandits, 10 arms x 100 pulls: expected regret", columns, rows)
        suffix = f"_seeds{seeds[0]}-{seeds[-1]}" if args.first_seed else ""
        write_json(f"bench_meta_bandits{suffix}", payload["bandits"])
    if "mdps" in args.parts:
        rows, payload["mdps"] = mdps(args.seeds, args.rl2_steps, not args.no_compile)
        print_table("Random MDPs, 10 episodes x 10 steps: trial return", ["method", "over", "return"], rows)
        write_json("bench_meta_mdps", payload["mdps"])
    if "maml" in args.parts:
        rows, payload["maml"] = maml_part(args.seeds, args.maml_iterations)
        columns = ["inner steps", "MAML return", "pretrained return", "MAML - pretrained (paired)"]
        print_table("2-D navigation: return after inner steps on new goals", columns, rows)
        write_json("bench_meta_maml", payload["maml"])


if __name__ == "__main__":
    main()
