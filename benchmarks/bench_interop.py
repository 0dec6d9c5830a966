"""What crossing between torch and JAX costs, and what a JAX environment costs a torch learner.

1. Conversion per leaf: ``to_jax``/``from_jax`` (DLPack, zero-copy) vs a NumPy round trip
   (``jnp.array(x.numpy())`` and ``torch.from_numpy(np.array(a))``, each a copy), for growing sizes.
2. Conversion per batch: a PPO minibatch (6 leaves) and the actor-critic params (12 leaves).
3. Environments: gymnax CartPole (JAX, through ``GymnaxEnv``) vs frl's native CartPole, raw
   steps/s for a few and many environments, and PPO (CleanRL settings) learning through
   ``frl.run``: env-steps/s and the final return, eager and (``--compile``) compiled.

    python benchmarks/bench_interop.py [--ppo-steps 51200] [--seeds 1 8] [--compile]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

from benchmarks._common import print_table, time_call, write_json  # sets threads and cache first

# isort: split
import jax
import jax.numpy as jnp
import numpy as np
import torch
from tensordict import TensorDict

from frl import envs, nn, random
from frl.algos import ppo
from frl.interop.jax import from_jax, to_jax
from frl.run import run


def numpy_to_jax(tree):
    return jax.tree_util.tree_map(lambda x: jnp.array(x.numpy()), tree)


def numpy_from_jax(tree):
    return jax.tree_util.tree_map(lambda a: torch.from_numpy(np.array(a)), tree)


def block(tree):
    return jax.block_until_ready(tree)


def leaves(records: list, rows: list) -> None:
    for n in (16, 4096, 262_144, 4_194_304):
        x = torch.randn(n)
        a = to_jax(x)
        t = {
            "to_jax": time_call(lambda: to_jax(x)),
            "numpy->jax": time_call(lambda: block(jnp.array(x.numpy()))),
            "from_jax": time_call(lambda: from_jax(a)),
            "jax->numpy": time_call(lambda: torch.from_numpy(np.array(a))),
        }
        frl_us = (t["to_jax"] + t["from_jax"]) * 1e6
        np_us = (t["numpy->jax"] + t["jax->numpy"]) * 1e6
        label = f"leaf float32[{n:,}] ({n * 4 / 1024:,.0f} KiB)"
        rows.append([label, t["to_jax"] * 1e6, t["from_jax"] * 1e6, frl_us, np_us, np_us / frl_us])
        records.append(
            {"case": label, **{k: v * 1e6 for k, v in t.items()}, "ratio_numpy_over_frl": np_us / frl_us}
        )


def batches(records: list, rows: list) -> None:
    g = torch.Generator().manual_seed(0)
    minibatch = TensorDict(
        {
            "observation": torch.randn(512, 4, generator=g),
            "action": torch.randint(0, 2, (512,), generator=g).to(torch.int32),
            **{
                k: torch.randn(512, generator=g)
                for k in ("action_log_prob", "advantage", "value_target", "state_value")
            },
        },
        batch_size=[512],
    )
    params = TensorDict(
        {
            "actor": nn.CategoricalPolicy(4, 2).init(random.key(0)),
            "critic": nn.ValueNetwork(4).init(random.key(1)),
        },
        batch_size=[],
    )
    for label, td in (
        ("PPO minibatch (6 leaves, 512 rows)", minibatch),
        ("actor-critic params (12 leaves)", params),
    ):
        tree = to_jax(td)
        plain = td.to_dict()
        t = {
            "to_jax": time_call(lambda: to_jax(td)),
            "numpy->jax": time_call(lambda: block(numpy_to_jax(plain))),
            "from_jax": time_call(lambda: from_jax(tree)),
            "jax->numpy": time_call(lambda: numpy_from_jax(tree)),
        }
        frl_us = (t["to_jax"] + t["from_jax"]) * 1e6
        np_us = (t["numpy->jax"] + t["jax->numpy"]) * 1e6
        rows.append([label, t["to_jax"] * 1e6, t["from_jax"] * 1e6, frl_us, np_us, np_us / frl_us])
        records.append(
            {"case": label, **{k: v * 1e6 for k, v in t.items()}, "ratio_numpy_over_frl": np_us / frl_us}
        )


def env_steps(records: list, rows: list) -> None:
    for num_envs in (4, 256):
        speeds = {}
        for env_id in ("CartPole-v1", "gymnax:CartPole-v1"):
            env = envs.make(env_id)
            _obs, state = env.reset(random.key(0), num_envs=num_envs)
            action = torch.ones(num_envs, dtype=torch.int64)
            holder = {"state": state}

            def step(env=env, action=action, holder=holder):
                holder["state"] = env.step(random.key(1), holder["state"], action)[1]

            speeds[env_id] = num_envs / time_call(step)
        ratio = speeds["CartPole-v1"] / speeds["gymnax:CartPole-v1"]
        rows.append(
            [f"{num_envs} envs, eager step", speeds["CartPole-v1"], speeds["gymnax:CartPole-v1"], ratio]
        )
        records.append({"case": f"env step x{num_envs}", "steps_per_s": speeds, "native_over_gymnax": ratio})


def ppo_runs(args, records: list, rows: list) -> None:
    for seeds in args.seeds:
        for compiled in [False] + ([True] if args.compile else []):
            result_row = []
            for env_id in ("CartPole-v1", "gymnax:CartPole-v1"):
                env = envs.make(env_id)
                train = ppo.make_train(ppo.Config(env_id=env_id, total_timesteps=args.ppo_steps), env)
                result = run(
                    train,
                    seeds=seeds,
                    total_steps=args.ppo_steps,
                    compile=compiled,
                    progress=False,
                    eval_episodes=10,
                )
                speed = result.env_steps_per_s  # all seeds, compile time excluded
                final = sum(result.eval_returns) / len(result.eval_returns)
                result_row.append((speed, final, result.compile_s))
                records.append(
                    {
                        "case": f"ppo {env_id}",
                        "seeds": seeds,
                        "compiled": compiled,
                        "env_steps_per_seed": result.env_steps,
                        "env_steps_per_s": speed,
                        "compile_s": result.compile_s,
                        "wall_s": result.wall_s,
                        "final_return": final,
                    }
                )
            (native, nat_ret, _), (gx, gx_ret, _) = result_row
            mode = "compiled" if compiled else "eager"
            rows.append([f"PPO {seeds} seed(s), {mode}", native, gx, native / gx, nat_ret, gx_ret])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ppo-steps", type=int, default=51_200)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--compile", action="store_true", help="also run the PPO rows compiled")
    parser.add_argument("--skip-ppo", action="store_true")
    args = parser.parse_args()
    records: list = []

    rows: list = []
    leaves(records, rows)
    batches(records, rows)
    print_table(
        "Conversion cost, microseconds (frl: DLPack both ways, zero-copy; NumPy: a copy each way)",
        ["case", "to_jax", "from_jax", "frl round trip", "NumPy round trip", "NumPy / frl"],
        rows,
    )
    rows = []
    env_steps(records, rows)
    print_table(
        "Environment steps/s, CartPole, one process, 1 thread",
        ["setting", "frl native", "gymnax via GymnaxEnv", "native / gymnax"],
        rows,
    )
    if not args.skip_ppo:
        rows = []
        ppo_runs(args, records, rows)
        print_table(
            f"PPO on CartPole through frl.run ({args.ppo_steps:,} steps per seed): env-steps/s (all seeds, "
            "compile time excluded) and final deterministic return",
            [
                "setting",
                "native steps/s",
                "gymnax steps/s",
                "native / gymnax",
                "native return",
                "gymnax return",
            ],
            rows,
        )
    print(f"\nwrote {write_json('bench_interop', {'results': records})}")


if __name__ == "__main__":
    main()
