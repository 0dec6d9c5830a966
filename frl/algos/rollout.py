"""On-policy collection into a fixed ``[T, E]`` trajectory buffer held in the training state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import nn, random
from frl.algos.base import episode_metrics, episode_stats
from frl.distributions import Categorical, DiagGaussian, Distribution
from frl.envs import Environment

__all__ = ["actor_critic", "clip_action", "init_trajectory", "make_collect", "make_explore"]


def actor_critic(
    env: Environment, hidden: tuple[int, ...], log_std_init: float = 0.0
) -> tuple[Any, Distribution, nn.ValueNetwork]:
    """CleanRL's on-policy networks for ``env``: ``(actor, dist, critic)``.

    Discrete actions: a categorical policy (tanh MLP, near-uniform start); continuous: a diagonal
    Gaussian with a state-independent log-std starting at ``log_std_init``. The critic is a tanh
    MLP value network.
    """
    if getattr(env, "pixels", False):
        raise ValueError(
            f"on-policy agents take vector observations; {env.id} has images "
            f"{list(env.observation_space.shape)} (the Nature CNN path is dqn's)"
        )
    obs_dim = env.observation_space.shape[0]
    if env.discrete:
        actor: Any = nn.CategoricalPolicy(obs_dim, env.action_space.n, hidden=hidden, activation="tanh")
        dist: Distribution = Categorical()
    else:
        actor = nn.GaussianPolicy(
            obs_dim, env.action_space.shape[0], hidden=hidden, log_std_init=log_std_init
        )
        dist = DiagGaussian()
    return actor, dist, nn.ValueNetwork(obs_dim, hidden=hidden)


def make_explore(
    actor_apply: Callable[[TensorDictBase, Tensor], Any], dist: Distribution
) -> Callable[[TensorDictBase, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``explore(params, obs, key, env_steps) -> (action, log_prob)``: a sample of the current
    policy (``params["actor"]``) and its log-probability, as :func:`make_collect` draws them."""

    def explore(params: TensorDictBase, obs: Tensor, key: Tensor, env_steps: Tensor) -> tuple[Tensor, Tensor]:
        dist_params = actor_apply(params["actor"], obs)
        action = dist.sample(key, dist_params)
        return action, dist.log_prob(dist_params, action).detach()

    return explore


def clip_action(env: Environment, action: Tensor) -> Tensor:
    """Clamp continuous actions into the action box (discrete actions pass through)."""
    if env.discrete:
        return action
    space = env.action_space
    return torch.clamp(
        action,
        space.low_tensor(action.device).to(action.dtype),
        space.high_tensor(action.device).to(action.dtype),
    )


def init_trajectory(env: Environment, num_steps: int, num_envs: int) -> TensorDict:
    """Zeros ``[T, E, ...]`` for observations, actions, log-probs, rewards, flags, final observations."""
    obs_shape = tuple(env.observation_space.shape)
    action = (
        torch.zeros(num_steps, num_envs, dtype=torch.int64)
        if env.discrete
        else torch.zeros(num_steps, num_envs, *env.action_space.shape, dtype=env.dtype)
    )
    zeros = torch.zeros(num_steps, num_envs, dtype=env.dtype)
    flags = torch.zeros(num_steps, num_envs, dtype=torch.bool)
    return TensorDict(
        {
            "obs": torch.zeros(num_steps, num_envs, *obs_shape, dtype=env.dtype),
            "action": action,
            "log_prob": zeros,
            "reward": zeros.clone(),
            "terminated": flags,
            "done": flags.clone(),
            "final_obs": torch.zeros(num_steps, num_envs, *obs_shape, dtype=env.dtype),
        },
        batch_size=[num_steps, num_envs],
    )


STATS = ("return", "length", "last_return", "last_length", "episodes")
FIELDS = ("obs", "action", "log_prob", "reward", "terminated", "done", "final_obs")


def make_collect(
    env: Environment,
    actor_apply: Callable[[TensorDictBase, Tensor], Any],
    dist: Distribution,
    chunk: int,
) -> Callable[[TensorDictBase], tuple[TensorDict, TensorDict]]:
    """A unit that runs ``chunk`` environment steps with the current policy.

    Reads ``learner.params.actor``, ``env.{state, obs}``, ``key``, ``t``; writes transitions
    into ``traj`` at rows ``t .. t + chunk - 1``, updates ``stats`` and ``env_steps``.
    The step loop works on plain tensors and dicts and writes the trajectory once per chunk:
    dynamo traces TensorDict operations slowly, and this unit is unrolled ``chunk`` times.
    """

    def collect(state: TensorDictBase) -> tuple[TensorDict, TensorDict]:
        key = state["key"]
        obs = state["env", "obs"]
        env_state = {k: state["env", "state", k] for k in env.state_names}
        actor = state["learner", "params", "actor"]
        stats = {k: state["stats", k] for k in STATS}
        rows: dict[str, list[Tensor]] = {k: [] for k in FIELDS}
        for _ in range(chunk):
            key, k_act, k_env = random.split(key, 3)
            dist_params = actor_apply(actor, obs)
            action = dist.sample(k_act, dist_params)
            log_prob = dist.log_prob(dist_params, action)
            next_obs, env_state, reward, terminated, truncated, info = env.step(
                k_env, env_state, clip_action(env, action)
            )
            done = terminated | truncated
            for name, value in zip(
                FIELDS, (obs, action, log_prob.detach(), reward, terminated, done, info["final_observation"])
            ):
                rows[name].append(value)
            stats = episode_stats(stats, reward, done)
            obs = next_obs
        t = state["t"]
        index = t + torch.arange(chunk, device=t.device)
        traj = state["traj"]
        new = state.copy()
        new["traj"] = TensorDict(
            {k: torch.index_copy(traj[k], 0, index, torch.stack(rows[k])) for k in FIELDS},
            batch_size=traj.batch_size,
        )
        new["key"] = key
        new["env"] = TensorDict({"state": env_state, "obs": obs}, batch_size=[])
        new["t"] = t + chunk
        new["stats"] = TensorDict(stats, batch_size=[])
        new["env_steps"] = state["env_steps"] + chunk * obs.shape[0]
        return new, episode_metrics(stats)

    return collect
