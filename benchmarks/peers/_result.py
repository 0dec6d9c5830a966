"""The one line every peer prints: ``RESULT {json}`` (standard library only: peers run in their
own virtual environments)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any


def emit(
    peer: str,
    packages: Sequence[str],
    *,
    seeds: int,
    steps_per_seed: int,
    run_s: float,
    wall_s: float,
    compile_s: float = 0.0,
    returns: Sequence[float] = (),
) -> None:
    """Print the row: env-steps/s over ``run_s`` (compile excluded), the installed versions of
    ``packages``, and the mean of the last 20 episode ``returns`` (null without episodes)."""
    last = list(returns)[-20:]
    row = {
        "peer": peer,
        "versions": {name: metadata.version(name) for name in packages},
        "seeds": seeds,
        "steps_per_seed": steps_per_seed,
        "env_steps_per_s": steps_per_seed * seeds / run_s,
        "compile_s": compile_s,
        "wall_s": wall_s,
        "final_return": sum(last) / len(last) if last else None,
    }
    print("RESULT " + json.dumps(row), flush=True)


def run_sb3(algorithm: str, env: Any, description: str, **settings: Any) -> None:
    """A Stable-Baselines3 peer's whole main: ``--steps``/``--seed`` from the command line, one
    thread, ``stable_baselines3.<algorithm>("MlpPolicy", env(seed) or env, **settings)`` learning
    for ``--steps``, and its row (episode returns from SB3's episode buffer)."""
    import stable_baselines3
    import torch

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    env = env(args.seed) if callable(env) else env
    model = getattr(stable_baselines3, algorithm)("MlpPolicy", env, device="cpu", seed=args.seed, **settings)
    model.learn(total_timesteps=args.steps)
    wall = time.perf_counter() - start
    steps = int(model.num_timesteps)
    returns = [info["r"] for info in model.ep_info_buffer]
    emit(
        "sb3",
        ("stable-baselines3", "torch"),
        seeds=1,
        steps_per_seed=steps,
        run_s=wall,
        wall_s=wall,
        returns=returns,
    )


def run_jax(make_train: Callable[[int], tuple[Callable, int]], description: str) -> None:
    """A JAX peer's whole main: ``--seeds``/``--steps``, ``train, steps = make_train(steps)``
    compiled once as ``jit(vmap(train))`` over seed keys (timed apart), run, and its row
    (``train(key)`` returns the last episode return)."""
    import jax

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=500_000, help="steps per seed")
    args = parser.parse_args()
    start = time.perf_counter()
    train, steps = make_train(args.steps)
    keys = jax.random.split(jax.random.PRNGKey(0), args.seeds)
    compiled = jax.jit(jax.vmap(train)).lower(keys).compile()
    compile_s = time.perf_counter() - start
    run_start = time.perf_counter()
    returns = jax.block_until_ready(compiled(keys))
    run_s = time.perf_counter() - run_start
    emit(
        "jax",
        ("jax", "gymnax", "optax"),
        seeds=args.seeds,
        steps_per_seed=steps,
        run_s=run_s,
        wall_s=time.perf_counter() - start,
        compile_s=compile_s,
        returns=[float(returns.mean())],
    )
