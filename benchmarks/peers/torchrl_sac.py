"""The TorchRL peer for SAC: CleanRL's ``sac_continuous_action.py`` written the TorchRL way on
Pendulum-v1 (``GymEnv``, a ``Collector`` of one frame per batch with 5k random initial frames,
a ``ReplayBuffer`` over ``LazyTensorStorage``, ``SACLoss`` with twin critics and automatic
temperature, ``SoftUpdate``, one ``torch.optim.Adam`` per group: 3e-4 for the actor, 1e-3 for
the critics and the temperature), one gradient step per env step, one seed per process.

Runs in its own virtual environment (``requirements/torch.txt``); prints one ``RESULT {json}``
line.
"""

from __future__ import annotations

import argparse
import time

import torch

LEARNING_STARTS, BATCH = 5_000, 256


def torchrl_sac(total_steps: int, seed: int = 0) -> dict[str, float]:
    """The run: env-steps/s, wall seconds, steps and the last 20 episode returns."""
    from tensordict.nn import NormalParamExtractor, TensorDictModule
    from torch import nn
    from torchrl.collectors import Collector
    from torchrl.data import LazyTensorStorage, ReplayBuffer
    from torchrl.envs import GymEnv, RewardSum, TransformedEnv
    from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
    from torchrl.objectives import SACLoss, SoftUpdate

    torch.manual_seed(seed)
    env = TransformedEnv(GymEnv("Pendulum-v1"), RewardSum())
    env.set_seed(seed)
    low, high = env.action_spec.space.low, env.action_spec.space.high

    class Critic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(4, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1)
            )

        def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
            return self.net(torch.cat([obs, action], -1))

    torso = nn.Sequential(
        nn.Linear(3, 256),
        nn.ReLU(),
        nn.Linear(256, 256),
        nn.ReLU(),
        nn.Linear(256, 2),
        NormalParamExtractor(scale_mapping="biased_softplus_1.0"),
    )
    actor = ProbabilisticActor(
        TensorDictModule(torso, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": low, "high": high},
        return_log_prob=False,
        spec=env.action_spec,
    )
    qvalue = ValueOperator(Critic(), in_keys=["observation", "action"], out_keys=["state_action_value"])
    loss = SACLoss(actor, qvalue, num_qvalue_nets=2, loss_function="l2", target_entropy="auto")
    loss.make_value_estimator(gamma=0.99)
    target = SoftUpdate(loss, tau=0.005)
    optimizers = [
        torch.optim.Adam(loss.actor_network_params.values(True, True), lr=3e-4),
        torch.optim.Adam(loss.qvalue_network_params.values(True, True), lr=1e-3),
        torch.optim.Adam([loss.log_alpha], lr=1e-3),
    ]
    buffer = ReplayBuffer(storage=LazyTensorStorage(total_steps), batch_size=BATCH)
    collector = Collector(
        env,
        actor,
        frames_per_batch=1,
        total_frames=total_steps,
        init_random_frames=LEARNING_STARTS,
        auto_register_policy_transforms=False,  # the policy needs no transform of the env
    )
    returns: list[float] = []
    steps = 0
    start = time.perf_counter()
    for batch in collector:
        buffer.extend(batch.reshape(-1))
        steps += batch.numel()
        done = batch["next", "done"].reshape(-1)
        if done.any():
            returns.extend(batch["next", "episode_reward"].reshape(-1)[done].tolist())
        if steps < LEARNING_STARTS:
            continue
        losses = loss(buffer.sample())
        total = losses["loss_actor"] + losses["loss_qvalue"] + losses["loss_alpha"]
        for optimizer in optimizers:
            optimizer.zero_grad()
        total.backward()
        for optimizer in optimizers:
            optimizer.step()
        target.step()
    wall = time.perf_counter() - start
    collector.shutdown()
    return {"wall_s": wall, "steps": steps, "returns": returns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=7_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from _result import emit

    result = torchrl_sac(args.steps, args.seed)
    emit(
        "torchrl",
        ("torch", "torchrl"),
        seeds=1,
        steps_per_seed=result["steps"],
        run_s=result["wall_s"],
        wall_s=result["wall_s"],
        returns=result["returns"],
    )


if __name__ == "__main__":
    main()
