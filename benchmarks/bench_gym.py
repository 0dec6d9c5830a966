"""The gymnasium path: learning on gymnasium ids through TorchRL collectors, and SAC speed against
Stable-Baselines3 and a TorchRL ``SACLoss`` loop, side by side in one run.

Sections (``--only``):

* ``sac-threshold``: frl SAC on ``gym:Pendulum-v1``, 4 seeds in one vmapped compiled run,
  20k steps; target: mean final evaluation >= -200.
* ``sac-speed``: one seed of SAC on Pendulum-v1 with one gradient step per environment step
  (the same updates-per-step ratio everywhere), 256x256 networks, batch 256, 5k random steps
  first: frl (gym path, compiled), Stable-Baselines3 ``SAC`` and a TorchRL loop (``Collector``,
  ``TensorDictReplayBuffer``, ``SACLoss``, ``SoftUpdate``, Adam). Env-steps/s and updates/s
  are measured over the learning phase; wall is the whole run; ratios are frl / reference.
* ``dqn-cartpole``, ``dqn-acrobot`` (opt-in): frl DQN on the gymnasium ids, 500k steps,
  CleanRL's settings; targets >= 475 and >= -100.
* ``sac-halfcheetah`` (opt-in, needs ``mujoco``): frl SAC on ``HalfCheetah-v5``, 100k steps.

    python benchmarks/bench_gym.py                                # sac-threshold, sac-speed
    python benchmarks/bench_gym.py --only sac-speed --steps 8000  # a shorter speed comparison
    python benchmarks/bench_gym.py --only dqn-cartpole dqn-acrobot --seeds 4
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from _common import print_table, write_json

from frl.algos import dqn, sac
from frl.run import run

DEFAULT = ("sac-threshold", "sac-speed")
OPT_IN = ("dqn-cartpole", "dqn-acrobot", "sac-halfcheetah")


# -- frl ------------------------------------------------------------------------------------------


def frl_sac(env: str, steps: int, seeds: int, learning_starts: int, eval_every: int) -> dict:
    config = sac.Config.preset(
        env.removeprefix("gym:"), total_timesteps=steps, learning_starts=learning_starts
    )
    config = dataclasses.replace(config, env_id=env)
    marks: dict[str, float] = {}

    def mark(row: dict) -> bool:
        if row["env_steps"] >= learning_starts and "learn" not in marks:
            marks["learn"], marks["learn_steps"] = time.perf_counter(), row["env_steps"]
        return False

    start = time.perf_counter()
    result = run(
        sac.make_train(config),
        seeds=seeds,
        eval_every=eval_every,
        log_every=1000,
        progress=False,
        callbacks=[mark],
    )
    wall = time.perf_counter() - start
    learn_s = time.perf_counter() - marks["learn"]
    learn_steps = steps - marks["learn_steps"]
    return {
        "final_eval_per_seed": result.eval_returns,
        "final_eval_mean": sum(result.eval_returns) / len(result.eval_returns),
        "eval_curve": [
            [r["env_steps"], r["eval_return_per_member"]]
            for r in result.history
            if "eval_return_per_member" in r
        ],
        "wall_s": wall,
        "compile_s": result.compile_s,
        "learning_env_steps_per_s": learn_steps * seeds / learn_s,
        "updates_per_s": learn_steps * seeds / learn_s,
    }


# -- Stable-Baselines3 ------------------------------------------------------------------------------


def sb3_sac(steps: int, learning_starts: int, seed: int) -> dict:
    import gymnasium as gym
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    class Mark(BaseCallback):
        learn_start = 0.0

        def _on_step(self) -> bool:
            if self.num_timesteps == learning_starts:
                Mark.learn_start = time.perf_counter()
            return True

    model = SAC(
        "MlpPolicy",
        gym.make("Pendulum-v1"),
        learning_starts=learning_starts,
        batch_size=256,
        train_freq=1,
        gradient_steps=1,
        buffer_size=steps,
        seed=seed,
        device="cpu",
    )
    start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=Mark())
    end = time.perf_counter()
    mean, _ = evaluate_policy(model, gym.make("Pendulum-v1"), n_eval_episodes=10, deterministic=True)
    return {
        "wall_s": end - start,
        "learning_env_steps_per_s": (steps - learning_starts) / (end - Mark.learn_start),
        "updates_per_s": (steps - learning_starts) / (end - Mark.learn_start),
        "final_eval_mean": float(mean),
    }


# -- TorchRL: Collector + replay buffer + SACLoss ----------------------------------------------------


def torchrl_sac(steps: int, learning_starts: int, seed: int) -> dict:
    from tensordict.nn import NormalParamExtractor, TensorDictModule
    from torch import nn
    from torchrl.collectors import Collector
    from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
    from torchrl.envs import ExplorationType, GymEnv, set_exploration_type
    from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator
    from torchrl.objectives import SACLoss, SoftUpdate

    torch.manual_seed(seed)
    env = GymEnv("Pendulum-v1")
    env.set_seed(seed)
    body = nn.Sequential(
        MLP(in_features=3, out_features=2, num_cells=[256, 256], activation_class=nn.ReLU),
        NormalParamExtractor(),
    )
    actor = ProbabilisticActor(
        TensorDictModule(body, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        spec=env.action_spec,
        distribution_class=TanhNormal,
        distribution_kwargs={"low": env.action_spec.space.low, "high": env.action_spec.space.high},
    )
    qvalue = ValueOperator(
        MLP(in_features=4, out_features=1, num_cells=[256, 256], activation_class=nn.ReLU),
        in_keys=["observation", "action"],
    )
    loss = SACLoss(actor, qvalue, num_qvalue_nets=2, loss_function="l2")
    loss.make_value_estimator(gamma=0.99)
    target = SoftUpdate(loss, tau=0.005)
    optimizer = torch.optim.Adam(loss.parameters(), lr=3e-4)
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(steps), batch_size=256)
    collector = Collector(
        env,
        actor,
        frames_per_batch=1,
        total_frames=steps,
        init_random_frames=learning_starts,
        trust_policy=True,
    )
    start = time.perf_counter()
    learn_start = None
    for frames, batch in enumerate(collector, start=1):
        buffer.extend(batch.reshape(-1))
        if frames < learning_starts:
            continue
        if learn_start is None:
            learn_start = time.perf_counter()
        losses = loss(buffer.sample())
        total = losses["loss_actor"] + losses["loss_qvalue"] + losses["loss_alpha"]
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        target.step()
    end = time.perf_counter()
    collector.shutdown()
    returns = []
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        for _ in range(10):
            returns.append(float(env.rollout(200, actor)["next", "reward"].sum()))
    return {
        "wall_s": end - start,
        "learning_env_steps_per_s": (steps - learning_starts) / (end - learn_start),
        "updates_per_s": (steps - learning_starts + 1) / (end - learn_start),
        "final_eval_mean": sum(returns) / len(returns),
    }


# -- DQN on gymnasium ids ------------------------------------------------------------------------------


def frl_dqn(env: str, steps: int, seeds: int) -> dict:
    config = dqn.Config.preset(env.removeprefix("gym:"), total_timesteps=steps)
    config = dataclasses.replace(config, env_id=env)
    start = time.perf_counter()
    result = run(dqn.make_train(config), seeds=seeds, eval_every=steps // 10, progress=False)
    evals = [r["eval_return_per_member"] for r in result.history if "eval_return_per_member" in r]
    return {
        "final_eval_per_seed": result.eval_returns,
        "best_eval_per_seed": [max(col) for col in zip(*evals, strict=True)],
        "wall_s": time.perf_counter() - start,
        "compile_s": result.compile_s,
        "env_steps_per_s": result.env_steps_per_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", choices=DEFAULT + OPT_IN, default=None)
    parser.add_argument("--steps", type=int, default=20_000, help="SAC speed run length")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for every framework")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sections = args.only or DEFAULT
    payload: dict = {"threads": args.threads}

    if "sac-threshold" in sections:
        out = frl_sac("gym:Pendulum-v1", 20_000, args.seeds, 5_000, 2_000)
        out["passed"] = out["final_eval_mean"] >= -200.0
        payload["sac-threshold"] = out
        print_table(
            f"SAC gym:Pendulum-v1, {args.seeds} seeds x 20k steps (one vmapped compiled run)",
            ["target", "final mean", "per seed", "met", "wall s", "compile s"],
            [
                [
                    ">= -200",
                    f"{out['final_eval_mean']:.1f}",
                    " ".join(f"{v:.0f}" for v in out["final_eval_per_seed"]),
                    "yes" if out["passed"] else "NO",
                    f"{out['wall_s']:.0f}",
                    f"{out['compile_s']:.0f}",
                ]
            ],
        )

    if "sac-speed" in sections:
        steps, starts = args.steps, min(5_000, args.steps // 4)
        rows, speed = [], {}
        speed["frl"] = frl_sac("gym:Pendulum-v1", steps, 1, starts, steps)
        speed["frl"]["final_eval_mean"] = speed["frl"]["final_eval_per_seed"][0]
        speed["sb3"] = sb3_sac(steps, starts, 0)
        speed["torchrl"] = torchrl_sac(steps, starts, 0)
        for name, label in (
            ("frl", "frl (gym path, compiled)"),
            ("sb3", "Stable-Baselines3 SAC"),
            ("torchrl", "TorchRL SACLoss loop"),
        ):
            r = speed[name]
            rows.append(
                [
                    label,
                    f"{r['learning_env_steps_per_s']:.1f}",
                    f"{r['updates_per_s']:.1f}",
                    f"{r['wall_s']:.0f}",
                    f"{speed['frl']['learning_env_steps_per_s'] / r['learning_env_steps_per_s']:.2f}",
                    f"{r['final_eval_mean']:.0f}",
                ]
            )
        speed.update(steps=steps, learning_starts=starts, updates_per_step=1)
        speed["ratio_vs_sb3"] = (
            speed["frl"]["learning_env_steps_per_s"] / speed["sb3"]["learning_env_steps_per_s"]
        )
        speed["ratio_vs_torchrl"] = (
            speed["frl"]["learning_env_steps_per_s"] / speed["torchrl"]["learning_env_steps_per_s"]
        )
        payload["sac-speed"] = speed
        print_table(
            f"SAC Pendulum-v1, 1 seed, {steps} steps ({starts} random first), 1 update per step, "
            f"{args.threads} thread(s)",
            ["implementation", "env-steps/s (learning)", "updates/s", "wall s", "frl ratio", "final eval"],
            rows,
        )

    for name, env, target in (
        ("dqn-cartpole", "gym:CartPole-v1", 475.0),
        ("dqn-acrobot", "gym:Acrobot-v1", -100.0),
    ):
        if name in sections:
            out = frl_dqn(env, 500_000, args.seeds)
            mean = sum(out["final_eval_per_seed"]) / len(out["final_eval_per_seed"])
            out["passed"] = mean >= target
            payload[name] = out
            print_table(
                f"DQN {env}, {args.seeds} seeds x 500k steps",
                ["target", "final mean", "best per seed", "met", "wall s", "env-steps/s"],
                [
                    [
                        f">= {target:g}",
                        f"{mean:.1f}",
                        " ".join(f"{v:.0f}" for v in out["best_eval_per_seed"]),
                        "yes" if out["passed"] else "NO",
                        f"{out['wall_s']:.0f}",
                        f"{out['env_steps_per_s']:.0f}",
                    ]
                ],
            )

    if "sac-halfcheetah" in sections:
        out = frl_sac("gym:HalfCheetah-v5", 100_000, 1, 5_000, 10_000)
        payload["sac-halfcheetah"] = out
        print_table(
            "SAC gym:HalfCheetah-v5, 1 seed x 100k steps",
            ["final return", "env-steps/s (learning)", "wall s"],
            [
                [
                    f"{out['final_eval_mean']:.0f}",
                    f"{out['learning_env_steps_per_s']:.1f}",
                    f"{out['wall_s']:.0f}",
                ]
            ],
        )

    payload["ok"] = all(
        not isinstance(v, dict) or v.get("passed", True)
        for v in payload.values()
        if not isinstance(v, (int, float))
    )
    write_json("bench_gym" if sections == DEFAULT else "bench_gym_" + "_".join(sections), payload)


if __name__ == "__main__":
    main()
