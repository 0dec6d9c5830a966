"""Speed: PPO on CartPole-v1 for 1..N seeds in one process, eager and compiled, beside TorchRL.

CleanRL/purejaxrl hyper-parameters (4 envs x 128 steps, 4 epochs, 4 minibatches). Each row
trains N seeds in one ``frl.run`` (vmapped over seeds when N > 1) and reports aggregate
environment steps per second after the first calls (``env_steps_per_s``), the first-call
(compile) seconds and the wall time. The reference, in the same run, is a single-seed TorchRL
loop: ``SerialEnv(4 x GymEnv)`` + ``Collector`` + ``GAE`` + ``ClipPPOLoss`` + ``torch.optim.Adam``
with the same networks and settings; ratios are frl / TorchRL.

    python benchmarks/bench_seeds.py                         # full grid (long)
    python benchmarks/bench_seeds.py --seeds 1 8 --steps 100000 --modes compiled
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import print_table, write_json

from frl.algos import ppo
from frl.run import run


def torchrl_reference(total_steps: int) -> dict[str, float]:
    """CleanRL's PPO written the TorchRL way; returns env-steps/s and the final eval return."""
    from tensordict.nn import TensorDictModule
    from torch import nn
    from torchrl.collectors import Collector
    from torchrl.envs import GymEnv, SerialEnv
    from torchrl.modules import ProbabilisticActor, ValueOperator
    from torchrl.objectives import ClipPPOLoss
    from torchrl.objectives.value import GAE

    torch.manual_seed(0)
    env = SerialEnv(4, lambda: GymEnv("CartPole-v1", categorical_action_encoding=True))
    env.set_seed(0)

    def mlp(out: int) -> nn.Module:
        return nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, out))

    actor = ProbabilisticActor(
        TensorDictModule(mlp(2), in_keys=["observation"], out_keys=["logits"]),
        in_keys=["logits"],
        distribution_class=torch.distributions.Categorical,
        return_log_prob=True,
        spec=env.action_spec,
    )
    critic = ValueOperator(mlp(1), in_keys=["observation"])
    loss = ClipPPOLoss(
        actor, critic, clip_epsilon=0.2, entropy_coeff=0.01, critic_coeff=0.5, normalize_advantage=True
    )
    gae = GAE(gamma=0.99, lmbda=0.95, value_network=critic, average_gae=False)
    optimizer = torch.optim.Adam(loss.parameters(), lr=2.5e-4, eps=1e-5)
    frames = 512
    collector = Collector(env, actor, frames_per_batch=frames, total_frames=total_steps)
    start = time.perf_counter()
    steps = 0
    for batch in collector:
        with torch.no_grad():
            gae(batch)
        flat = batch.reshape(-1)
        for _ in range(4):
            perm = torch.randperm(frames)
            for mb in perm.split(frames // 4):
                losses = loss(flat[mb])
                total = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
                optimizer.zero_grad()
                total.backward()
                torch.nn.utils.clip_grad_norm_(loss.parameters(), 0.5)
                optimizer.step()
        steps += frames
    wall = time.perf_counter() - start
    collector.shutdown()
    return {"env_steps_per_s": steps / wall, "wall_s": wall, "steps": steps}


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
            result = run(
                train,
                seeds=n,
                total_steps=steps,
                compile=mode == "compiled",
                progress=False,
                eval_episodes=10,
                device=args.device,
            )
            mean_return = sum(result.eval_returns) / len(result.eval_returns)
            ratio = result.env_steps_per_s / ref["env_steps_per_s"]
            rows.append(
                [
                    mode,
                    n,
                    steps,
                    f"{result.env_steps_per_s:,.0f}",
                    f"{ratio:.1f}",
                    f"{result.compile_s:.1f}",
                    f"{result.wall_s:.0f}",
                    f"{mean_return:.0f}",
                ]
            )
            results.append(
                {
                    "mode": mode,
                    "seeds": n,
                    "steps_per_seed": steps,
                    "env_steps_per_s": result.env_steps_per_s,
                    "ratio_vs_torchrl": ratio,
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
            "steps/seed",
            "env-steps/s (all seeds)",
            "x TorchRL",
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
