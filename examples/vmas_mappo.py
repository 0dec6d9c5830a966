"""VMAS navigation (and MPE2's simple_spread) in a TorchRL multi-agent loop with frl's MAPPO learner.

TorchRL does what its multi-agent tutorial does: ``VmasEnv("navigation")`` (three agents, 60
vectorised environments, continuous 2-D forces, a reward per agent), ``RewardSum`` for the
episode returns and a ``Collector`` of 6,000 frames per batch, in TorchRL's group layout
(``("agents", "observation")`` ``[E, T, n, O]``). frl supplies the learner: one Gaussian actor
shared by the agents (:class:`frl.nn.GaussianPolicy`), a critic that reads every agent's
observation (MAPPO: ``--critic team``, one value for the team, TorchRL's centralised critic;
``--critic joint``, a value per agent from the joint observation and the agent's identity) or
only its own (IPPO, ``--critic local``) through :func:`frl.losses.critic_values`, GAE per agent
(:func:`frl.returns.gae`), and
:func:`frl.losses.mappo_loss` in one pure update (:func:`frl.update.make_update`), compiled once.
The settings are the tutorial's: 30 epochs of 400-frame minibatches per batch, Adam at 3e-4,
gradients clipped at norm 1, clip 0.2, gamma 0.99, lambda 0.9, two 256-unit tanh layers.

``--env mpe2:simple_spread`` swaps in MPE2's cooperative spread (three agents cover three
landmarks, discrete moves) through TorchRL's ``PettingZooWrapper`` (its group is ``"agent"``, one
environment per ``SerialEnv`` worker): the actor becomes categorical, the rest is unchanged.

    python examples/vmas_mappo.py [--env vmas:navigation] [--iterations 10] [--critic team|joint|local]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch
from tensordict import TensorDict
from torch import Tensor
from torchrl.collectors import Collector
from torchrl.envs import EnvBase, PettingZooWrapper, RewardSum, SerialEnv, TransformedEnv
from torchrl.envs.libs.vmas import VmasEnv

import frl
from frl import nn, optim, random
from frl.distributions import Categorical, DiagGaussian
from frl.losses import bind, critic_values, mappo_loss
from frl.returns import gae
from frl.update import make_update

ENVIRONMENTS = ("vmas:navigation", "mpe2:simple_spread")
N_AGENTS, NUM_ENVS, MAX_STEPS = 3, 60, 100
FRAMES_PER_BATCH, EPOCHS, MINIBATCH = 6_000, 30, 400
GAMMA, LAMBDA, LEARNING_RATE, MAX_GRAD_NORM, CLIP, ENTROPY = 0.99, 0.9, 3e-4, 1.0, 0.2, 1e-4


def _simple_spread() -> PettingZooWrapper:
    from mpe2 import simple_spread_v3

    pz = simple_spread_v3.parallel_env(N=N_AGENTS, max_cycles=25, continuous_actions=False)
    return PettingZooWrapper(pz, use_mask=False, categorical_actions=True)


def make_env(env_id: str, seed: int, num_envs: int = NUM_ENVS) -> TransformedEnv:
    """``env_id`` (one of :data:`ENVIRONMENTS`) as TorchRL builds it, each agent's episode return
    summed into ``(group, "episode_reward")``."""
    if env_id == "vmas:navigation":
        env: EnvBase = VmasEnv(
            scenario="navigation",
            num_envs=num_envs,
            continuous_actions=True,
            max_steps=MAX_STEPS,
            n_agents=N_AGENTS,
            device="cpu",
            seed=seed,
        )
    elif env_id == "mpe2:simple_spread":
        env = SerialEnv(num_envs, _simple_spread)
        env.set_seed(seed)
    else:
        raise ValueError(f"make_env: `env_id` must be one of {ENVIRONMENTS}, got {env_id!r}")
    summed = RewardSum(in_keys=[env.reward_key], out_keys=[(group_of(env), "episode_reward")])
    return TransformedEnv(env, summed)


def group_of(env: EnvBase) -> str:
    """The environment's one group of agents (``"agents"`` in VMAS, ``"agent"`` in PettingZoo)."""
    return env.reward_key[0]


def episode_returns(batch: TensorDict, group: str) -> Tensor:
    """Team returns (the agents' mean) of the episodes that ended in ``batch``."""
    done = batch["next", "done"].squeeze(-1)
    return batch["next", group, "episode_reward"].mean((-2, -1))[done]


def per_agent_flag(batch: TensorDict, group: str, name: str, shape: torch.Size) -> Tensor:
    """``("next", group, name)`` where the environment writes one per agent, else the shared flag
    ``("next", name)`` for every agent: ``bool [E, T, n]``."""
    if (group, name) in batch["next"].keys(True):
        return batch["next", group, name].squeeze(-1)
    return batch["next", name].expand(shape)


def train(
    seed: int = 0,
    env_id: str = "vmas:navigation",
    iterations: int = 10,
    critic_input: str = "team",
    compiled: bool = True,
    frames_per_batch: int = FRAMES_PER_BATCH,
    epochs: int = EPOCHS,
    num_envs: int = NUM_ENVS,
    hidden: int = 256,
    log: bool = True,
) -> dict[str, float | list[float]]:
    """Train one seed; returns the team return per iteration, env-steps/s (compile excluded), the
    compile and wall seconds, the mean milliseconds of one minibatch update and the seconds spent
    in the collector (stepping the environment with the policy)."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)  # VMAS draws its resets from torch's generator

    # ENVIRONMENT: TorchRL's; VMAS's actions are forces in a box, MPE2's are one of 5 moves
    env = make_env(env_id, seed, num_envs)
    group, action_spec = group_of(env), env.full_action_spec[env.action_key]
    obs_dim = env.observation_spec[group, "observation"].shape[-1]
    discrete = not action_spec.dtype.is_floating_point
    if not discrete:
        low, high = action_spec.space.low.flatten()[0], action_spec.space.high.flatten()[0]

    # NETWORKS: one actor shared across the agent dim; the critic reads critic_observation(...)
    if discrete:
        actor = nn.CategoricalPolicy(obs_dim, int(action_spec.space.n), hidden=(hidden, hidden))
    else:
        actor = nn.GaussianPolicy(obs_dim, action_spec.shape[-1], hidden=(hidden, hidden))
    inputs = {"team": N_AGENTS * obs_dim, "joint": N_AGENTS * (obs_dim + 1), "local": obs_dim}
    critic = nn.ValueNetwork(inputs[critic_input], hidden=(hidden, hidden))
    k_actor, k_critic, key = random.split(random.key(seed), 3)
    params = TensorDict({"actor": actor.init(k_actor), "critic": critic.init(k_critic)}, batch_size=[])
    dist = Categorical() if discrete else DiagGaussian()

    def value(p: TensorDict, obs: Tensor) -> Tensor:  # [..., n, O] -> [..., n]
        return critic_values(critic_input, critic.apply, p, obs)

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
        group=group,
    )
    learner = make_update(
        loss, optim.chain(optim.clip_by_global_norm(MAX_GRAD_NORM), optim.adam(LEARNING_RATE))
    )
    state = learner.init(params)
    update = frl.compile(learner.step) if compiled else learner.step

    # POLICY for the collector: a sample of the shared actor (a force goes out clipped to its box)
    calls = [0]

    def policy(td: TensorDict) -> TensorDict:
        calls[0] += 1
        with torch.no_grad():
            dist_params = actor.apply(state["params", "actor"], td[group, "observation"])
            raw = dist.sample(random.fold_in(key, calls[0]), dist_params)
            td[group, "raw_action"] = raw
            td[group, "action_log_prob"] = dist.log_prob(dist_params, raw)
            td[env.action_key] = raw if discrete else raw.clamp(low, high)
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
        collect_s += time.perf_counter() - mark  # stepping the environment with the policy
        with torch.no_grad():
            obs = batch[group, "observation"]  # [E, T, n, O]
            v = value(state["params", "critic"], obs)
            next_v = value(state["params", "critic"], batch["next", group, "observation"])
            advantage, target = gae(
                batch["next", group, "reward"].squeeze(-1),
                v,
                next_v,
                per_agent_flag(batch, group, "terminated", v.shape),
                per_agent_flag(batch, group, "done", v.shape),
                gamma=GAMMA,
                lmbda=LAMBDA,
                time_dim=-2,
            )
        agents = {
            "observation": obs,
            "action": batch[group, "raw_action"],
            "action_log_prob": batch[group, "action_log_prob"],
            "advantage": advantage,
            "value_target": target,
        }
        flat = TensorDict({group: agents}, batch_size=batch.shape).reshape(-1)
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
        curve.append(float(episode_returns(batch, group).mean()))
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
    parser.add_argument("--env", choices=ENVIRONMENTS, default="vmas:navigation")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--critic", choices=("team", "joint", "local"), default="team", help="MAPPO or IPPO")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eager", action="store_true", help="skip torch.compile")
    args = parser.parse_args(argv)
    result = train(args.seed, args.env, args.iterations, args.critic, compiled=not args.eager)
    print(f"final team return {result['final_return']:.3f}, {result['env_steps_per_s']:.0f} env-steps/s")
    return result


if __name__ == "__main__":
    main()
