"""A TorchRL training loop with frl's pure SAC update: adopt frl one piece at a time.

TorchRL does what it does in any TorchRL script: a ``GymEnv``, a ``Collector`` and a
``TensorDictReplayBuffer``. frl supplies the learner: networks as pure functions of a params
TensorDict, ``sac_loss`` and ``make_update`` (one pure step: gradients, three Adam optimizers,
Polyak targets), compiled once. ``buffers.torchrl_batch`` turns a TorchRL sample into frl's layout.

    python examples/torchrl_loop_frl_sac.py [--steps 20000] [--eager]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch
from tensordict import TensorDict
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.envs import GymEnv

import frl
from frl import buffers, nn, optim, random
from frl.distributions import TanhGaussian
from frl.losses import bind, sac_loss
from frl.update import make_update


def main(argv: Sequence[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--learning-starts", type=int, default=5_000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eager", action="store_true", help="skip torch.compile")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    # ENVIRONMENT: TorchRL's GymEnv, seeded
    env = GymEnv("Pendulum-v1")
    env.set_seed(args.seed)
    low, high = env.action_spec.space.low, env.action_spec.space.high

    # NETWORKS: pure functions of params (frl.nn), twin critics as one ensemble
    hidden = (args.hidden, args.hidden)
    actor = nn.TanhGaussianPolicy(
        3, 1, hidden=hidden, action_low=tuple(low.tolist()), action_high=tuple(high.tolist())
    )
    critics = nn.Ensemble(nn.ContinuousQNetwork(3, 1, hidden=hidden), num=2)
    dist = TanhGaussian(tuple(low.tolist()), tuple(high.tolist()))

    # LEARNER: frl's SAC loss and one pure update step over a single state TensorDict
    loss = bind(
        sac_loss,
        "actor",
        "critic",
        "target_critic",
        "log_alpha",
        actor_apply=actor.apply,
        critic_apply=critics.network.apply,
        gamma=0.99,
        target_entropy=-1.0,
        dist=dist,
    )
    rates = {"actor": optim.adam(3e-4), "critic": optim.adam(1e-3), "log_alpha": optim.adam(1e-3)}
    learner = make_update(
        loss, optim.partition(**rates), trainable=list(rates), targets={"target_critic": "critic"}, tau=0.005
    )
    key = random.key(args.seed)
    k_actor, k_critic, key = random.split(key, 3)
    critic = critics.init(k_critic)
    params = TensorDict(
        {
            "actor": actor.init(k_actor),
            "critic": critic,
            "target_critic": critic.clone(),
            "log_alpha": torch.tensor(0.0),
        },
        batch_size=[],
    )
    state = learner.init(params)
    update = learner.step if args.eager else frl.compile(learner.step)

    # POLICY for the collector: a sample of the current actor (uniform before learning starts)
    calls = [0]

    def policy(td: TensorDict) -> TensorDict:
        k = random.fold_in(key, calls[0])
        calls[0] += 1
        if calls[0] <= args.learning_starts:
            td["action"] = random.uniform(k, (1,), torch.float32, low, high)
        else:
            with torch.no_grad():
                action, _ = dist.sample_and_log_prob(
                    k, actor.apply(state["params", "actor"], td["observation"])
                )
            td["action"] = action
        return td

    # COLLECTION AND STORAGE: TorchRL
    collector = Collector(env, policy, frames_per_batch=1, total_frames=args.steps, trust_policy=True)
    replay = TensorDictReplayBuffer(storage=LazyTensorStorage(args.steps), batch_size=256)

    # TRAINING LOOP: one frl update per environment step
    start, returns, episode = time.perf_counter(), [], 0.0
    for step, batch in enumerate(collector, start=1):
        replay.extend(batch.reshape(-1))
        episode += float(batch["next", "reward"].sum())
        if bool(batch["next", "done"].any()):
            returns.append(episode)
            episode = 0.0
        if step < args.learning_starts:
            continue
        sample = buffers.torchrl_batch(replay.sample())
        state, metrics = update(state, sample, random.fold_in(key, 2**31 + step))
        if step % 2000 == 0:
            recent = sum(returns[-5:]) / max(len(returns[-5:]), 1)
            print(
                f"step {step:>6}  return {recent:8.1f}  q {float(metrics['q']):7.2f}  "
                f"alpha {float(metrics['alpha']):.3f}  {step / (time.perf_counter() - start):.0f} steps/s",
                flush=True,
            )
    collector.shutdown()
    final = sum(returns[-5:]) / max(len(returns[-5:]), 1)
    print(f"mean return of the last 5 episodes: {final:.1f}")
    return final


if __name__ == "__main__":
    main()
