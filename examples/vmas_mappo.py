"""VMAS navigation with a TorchRL multi-agent loop and frl's MAPPO learner.

TorchRL does what its multi-agent tutorial does: ``VmasEnv("navigation")`` (three agents, 60
vectorised environments, continuous 2-D forces, a reward per agent), ``RewardSum`` for the
episode returns and a ``Collector`` of 6,000 frames per batch, in TorchRL's group layout
(``("agents", "observation")`` ``[E, T, n, O]``). frl supplies the learner: one Gaussian actor
shared by the agents (:class:`frl.nn.GaussianPolicy`), a critic that reads every agent's
observation (MAPPO, ``--critic joint``) or only its own (IPPO, ``--critic local``) through
:func:`frl.losses.critic_observation`, GAE per agent (:func:`frl.returns.gae`), and
:func:`frl.losses.mappo_loss` in one pure update (:func:`frl.update.make_update`), compiled once.
The settings are the tutorial's: 30 epochs of 400-frame minibatches per batch, Adam at 3e-4,
gradients clipped at norm 1, clip 0.2, gamma 0.99, lambda 0.9, two 256-unit tanh layers.

    python examples/vmas_mappo.py [--iterations 10] [--critic joint|local] [--eager]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch
from tensordict import TensorDict
from torch import Tensor
from torchrl.collectors import Collector
from torchrl.envs import RewardSum, TransformedEnv
from torchrl.envs.libs.vmas import VmasEnv

import frl
from frl import nn, optim, random
from frl.distributions import DiagGaussian
from frl.losses import bind, critic_observation, mappo_loss
from frl.returns import gae
from frl.update import make_update

N_AGENTS, NUM_ENVS, MAX_STEPS = 3, 60, 100
FRAMES_PER_BATCH, EPOCHS, MINIBATCH = 6_000, 30, 400
GAMMA, LAMBDA, LEARNING_RATE, MAX_GRAD_NORM, CLIP, ENTROPY = 0.99, 0.9, 3e-4, 1.0, 0.2, 1e-4


def make_env(seed: int, num_envs: int = NUM_ENVS) -> TransformedEnv:
    """VMAS navigation as TorchRL builds it, with each agent's episode return summed."""
    env = VmasEnv(
        scenario="navigation",
        num_envs=num_envs,
        continuous_actions=True,
        max_steps=MAX_STEPS,
        n_agents=N_AGENTS,
        device="cpu",
        seed=seed,
    )
    return TransformedEnv(env, RewardSum(in_keys=[env.reward_key], out_keys=[("agents", "episode_reward")]))


def episode_returns(batch: TensorDict) -> Tensor:
    """Team returns (the agents' mean) of the episodes that ended in ``batch``."""
    done = batch["next", "done"].squeeze(-1)
    return batch["next", "agents", "episode_reward"].mean((-2, -1))[done]


def train(
    seed: int = 0,
    iterations: int = 10,
    critic_input: str = "joint",
    compiled: bool = True,
    frames_per_batch: int = FRAMES_PER_BATCH,
    epochs: int = EPOCHS,
    num_envs: int = NUM_ENVS,
    log: bool = True,
) -> dict[str, float | list[float]]:
    """Train one seed; returns the team return per iteration, env-steps/s (compile excluded), the
    compile and wall seconds, the mean milliseconds of one minibatch update and the seconds spent
    in the collector (stepping VMAS with the policy)."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)  # VMAS draws its resets from torch's generator

    # ENVIRONMENT: TorchRL's VmasEnv; actions are forces in [-1, 1]
    env = make_env(seed, num_envs)
    obs_dim = env.observation_spec["agents", "observation"].shape[-1]
    action_dim = env.full_action_spec[env.action_key].shape[-1]
    low = env.full_action_spec[env.action_key].space.low[0, 0]
    high = env.full_action_spec[env.action_key].space.high[0, 0]

    # NETWORKS: one actor shared across the agent dim; the critic reads critic_observation(...)
    actor = nn.GaussianPolicy(obs_dim, action_dim, hidden=(256, 256))
    critic_dim = {"joint": N_AGENTS * (obs_dim + 1), "local": obs_dim}[critic_input]
    critic = nn.ValueNetwork(critic_dim, hidden=(256, 256))
    k_actor, k_critic, key = random.split(random.key(seed), 3)
    params = TensorDict({"actor": actor.init(k_actor), "critic": critic.init(k_critic)}, batch_size=[])
    dist = DiagGaussian()

    def value(p: TensorDict, obs: Tensor) -> Tensor:  # [..., n, O] -> [..., n]
        return critic.apply(p, critic_observation(critic_input, obs))

    # LEARNER: the MAPPO loss over (sample, agent), gradients clipped, Adam; one compiled step
    loss = bind(
        mappo_loss,
        "actor",
        "critic",
        policy_apply=actor.apply,
        value_apply=critic.apply,
        dist=dist,
        critic_input=critic_input,
        clip_eps=CLIP,
        entropy_coef=ENTROPY,
        value_coef=1.0,
        normalize_advantage=False,
    )
    learner = make_update(
        loss, optim.chain(optim.clip_by_global_norm(MAX_GRAD_NORM), optim.adam(LEARNING_RATE))
    )
    state = learner.init(params)
    update = frl.compile(learner.step) if compiled else learner.step

    # POLICY for the collector: a sample of the shared actor; the env gets it clipped to the box
    calls = [0]

    def policy(td: TensorDict) -> TensorDict:
        calls[0] += 1
        with torch.no_grad():
            mean_log_std = actor.apply(state["params", "actor"], td["agents", "observation"])
            raw = dist.sample(random.fold_in(key, calls[0]), mean_log_std)
            td["agents", "raw_action"] = raw
            td["agents", "action_log_prob"] = dist.log_prob(mean_log_std, raw)
            td["agents", "action"] = raw.clamp(low, high)
        return td

    collector = Collector(
        env,
        policy,
        frames_per_batch=frames_per_batch,
        total_frames=frames_per_batch * iterations,
        trust_policy=True,
    )

    # TRAINING LOOP: GAE per agent, then EPOCHS passes of minibatch updates
    curve, compile_s, update_s, calls_to_update, collect_s = [], 0.0, 0.0, 0, 0.0
    start = mark = time.perf_counter()
    for iteration, batch in enumerate(collector):
        collect_s += time.perf_counter() - mark  # stepping VMAS with the policy, in the collector
        with torch.no_grad():
            obs = batch["agents", "observation"]  # [E, T, n, O]
            v = value(state["params", "critic"], obs)
            next_v = value(state["params", "critic"], batch["next", "agents", "observation"])
            per_agent = v.shape  # the shared done flags, for every agent

            advantage, target = gae(
                batch["next", "agents", "reward"].squeeze(-1),
                v,
                next_v,
                batch["next", "terminated"].expand(per_agent),
                batch["next", "done"].expand(per_agent),
                gamma=GAMMA,
                lmbda=LAMBDA,
                time_dim=-2,
            )
        agents = {
            "observation": obs,
            "action": batch["agents", "raw_action"],
            "action_log_prob": batch["agents", "action_log_prob"],
            "advantage": advantage,
            "value_target": target,
        }
        flat = TensorDict({"agents": agents}, batch_size=batch.shape).reshape(-1)
        for epoch in range(epochs):
            order = random.permutation(random.fold_in(key, 2**31 + iteration * epochs + epoch), flat.shape[0])
            for index in order.split(MINIBATCH):
                begin = time.perf_counter()
                state, metrics = update(state, flat[index])
                if compiled and calls_to_update < 2:  # tracing, then one recompile for the state's form
                    compile_s += time.perf_counter() - begin
                else:
                    update_s += time.perf_counter() - begin
                calls_to_update += 1
        mark = time.perf_counter()
        curve.append(float(episode_returns(batch).mean()))
        if log:
            steps = (iteration + 1) * frames_per_batch
            print(
                f"iteration {iteration:3d}  frames {steps:7d}  team return {curve[-1]:7.3f}  "
                f"loss {float(metrics['loss']):7.4f}",
                flush=True,
            )
    wall = time.perf_counter() - start
    collector.shutdown()
    frames = frames_per_batch * iterations
    return {
        "curve": curve,
        "final_return": curve[-1],
        "env_steps_per_s": frames / (wall - compile_s),
        "compile_s": compile_s,
        "wall_s": wall,
        "update_ms": 1e3 * update_s / max(calls_to_update - 2 * compiled, 1),
        "loss": float(metrics["loss"]),
        "collect_s": collect_s,
    }


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--critic", choices=("joint", "local"), default="joint", help="MAPPO or IPPO")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eager", action="store_true", help="skip torch.compile")
    args = parser.parse_args(argv)
    result = train(args.seed, args.iterations, args.critic, compiled=not args.eager)
    print(f"final team return {result['final_return']:.3f}, {result['env_steps_per_s']:.0f} env-steps/s")
    return result


if __name__ == "__main__":
    main()
