"""The TorchRL peer: CleanRL's PPO written the TorchRL way (``SerialEnv`` of 4 ``GymEnv``,
``Collector``, ``GAE``, ``ClipPPOLoss``, ``torch.optim.Adam``), one seed per process.

Also the in-process reference of ``benchmarks/bench_seeds.py``; prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import time

import torch


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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=51_200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from _result import emit

    result = torchrl_reference(args.steps)
    emit(
        "torchrl",
        ("torch", "torchrl"),
        seeds=1,
        steps_per_seed=result["steps"],
        run_s=result["wall_s"],
        wall_s=result["wall_s"],
    )


if __name__ == "__main__":
    main()
