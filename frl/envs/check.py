"""``frl.envs.check``: run an environment with random actions and report what breaks its contract.

In the spirit of Stable-Baselines3's ``check_env`` and TorchRL's ``check_env_specs``, for frl's
pure environments and for gymnasium ones (``gym:<id>``, stepped through TorchRL):

* observations of the declared shape and dtype, finite, inside finite ``Box`` bounds;
* rewards finite; ``terminated`` and ``truncated`` boolean;
* time limits reported as truncation: ``truncated`` only at ``max_episode_steps``, and no
  episode that always "terminates" exactly at the limit (a time limit misreported as a
  terminal state biases every bootstrapped target);
* determinism: the same seed and actions give the same observations and rewards;
* multi-agent environments: every observation entry (the group's observations and action masks,
  the global state) of the declared shape and dtype, at least one legal action per agent, and
  random *legal* actions only.

Each problem is one line naming the step and the quantity; an empty list means none was found.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

from frl import random
from frl.envs.spaces import Slate

__all__ = ["check", "random_return"]


def _random_actions(space: Any, key: Tensor, steps: int) -> Tensor:
    """``steps`` actions drawn from ``space`` (normal draws along an infinite bound)."""
    if space.discrete:
        u = random.uniform(key, (steps,), torch.float32)
        return (u * space.n).long().clamp(max=space.n - 1)
    if isinstance(space, Slate):  # k distinct items: the top k of uniform draws
        u = random.uniform(key, (steps, space.n), torch.float32)
        return torch.topk(u, space.k, dim=-1).indices
    nvec = getattr(space, "nvec", None)
    if nvec is not None:  # MultiDiscrete / MultiBinary
        n = torch.tensor(nvec)
        u = random.uniform(key, (steps, len(nvec)), torch.float32)
        return (u * n).long().minimum(n - 1)
    shape = (steps, *space.shape)
    low, high = space.low_tensor(), space.high_tensor()
    finite = torch.isfinite(low) & torch.isfinite(high)
    u = random.uniform(key, shape, space.dtype)
    bounded = low + u * torch.where(finite, high - low, torch.zeros_like(low))
    return torch.where(finite, bounded, random.normal(random.fold_in(key, 1), shape, space.dtype))


def _pure_trajectory(env: Any, seed: int, actions: Tensor) -> dict[str, list[Tensor]]:
    key = random.key(seed)
    k_reset, k_steps = random.split(key)
    obs, state = env.reset(k_reset)
    out: dict[str, list[Tensor]] = {"obs": [obs], "reward": [], "terminated": [], "truncated": [], "time": []}
    for i, k in enumerate(random.split(k_steps, actions.shape[0])):
        time = int(state["time"]) + 1
        obs, state, reward, terminated, truncated, info = env.step(k, state, actions[i])
        out["obs"].append(info["final_observation"])
        out["obs"].append(obs)
        out["reward"].append(reward)
        out["terminated"].append(terminated)
        out["truncated"].append(truncated)
        out["time"].append(torch.tensor(time))
    return out


def _gym_trajectory(env: Any, seed: int, actions: Tensor) -> dict[str, list[Tensor]]:
    base = env.make_env(seed=seed, train=False)
    try:
        td = base.reset()
        out: dict[str, list[Tensor]] = {
            "obs": [td["observation"]],
            "reward": [],
            "terminated": [],
            "truncated": [],
            "time": [],
        }
        time = 0
        for action in actions:
            td["action"] = action
            td = base.step(td)
            nxt = td["next"]
            time += 1
            out["obs"].append(nxt["observation"])
            out["reward"].append(nxt["reward"].reshape(()))
            out["terminated"].append(nxt["terminated"].reshape(()))
            out["truncated"].append(nxt["truncated"].reshape(()))
            out["time"].append(torch.tensor(time))
            td = base.reset() if bool(nxt["done"].reshape(())) else nxt.clone()
            if bool(nxt["done"].reshape(())):
                time = 0
        return out
    finally:
        base.close()


def check(env: Any, steps: int = 500, seed: int = 0) -> list[str]:
    """Problems found running ``env`` (an frl environment, or an id for ``frl.envs.make``) for
    ``steps`` random-action steps from ``seed``, twice; ``[]`` when none."""
    from frl import envs

    if isinstance(env, str):
        env = envs.make(env)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"check: `steps` must be a positive int, got {steps!r}")
    if getattr(env, "multi_agent", False):
        first = _multi_agent_trajectory(env, seed, steps)
        second = _multi_agent_trajectory(env, seed, steps)
        return _multi_agent_problems(env, first) + _episode_problems(env, first, second, seed)
    actions = _random_actions(env.action_space, random.key(seed + 1), steps)
    trajectory = _pure_trajectory if getattr(env, "pure", True) else _gym_trajectory
    first = trajectory(env, seed, actions)
    return _observation_problems(env, first) + _episode_problems(
        env, first, trajectory(env, seed, actions), seed
    )


def _observation_problems(env: Any, first: dict[str, list[Tensor]]) -> list[str]:
    """Observations of the declared shape and dtype, finite and inside the bounds."""
    problems: list[str] = []
    space = env.observation_space
    obs_dtype = getattr(env, "obs_dtype", env.dtype)
    low, high = space.low_tensor(), space.high_tensor()
    for i, obs in enumerate(first["obs"]):
        where = f"observation {i}"
        if tuple(obs.shape) != tuple(space.shape):
            problems.append(f"{where}: shape {list(obs.shape)}, the space declares {list(space.shape)}")
            break
        if obs.dtype != obs_dtype:
            problems.append(f"{where}: dtype {obs.dtype}, the environment declares {obs_dtype}")
            break
        if obs.dtype.is_floating_point and not bool(torch.isfinite(obs).all()):
            problems.append(f"{where}: non-finite values {obs.flatten()[:8].tolist()}")
            break
        if bool(((obs < low) | (obs > high)).any()):
            problems.append(f"{where}: outside the observation bounds ({obs.flatten()[:8].tolist()})")
            break
    return problems


def _episode_problems(
    env: Any, first: dict[str, list[Tensor]], second: dict[str, list[Tensor]], seed: int
) -> list[str]:
    """Rewards and flags, time limits reported as truncation, determinism between two runs."""
    problems: list[str] = []
    for i, (reward, terminated, truncated) in enumerate(
        zip(first["reward"], first["terminated"], first["truncated"], strict=True)
    ):
        if reward.numel() != 1 or not math.isfinite(float(reward)):
            problems.append(f"step {i}: reward {reward.tolist()} is not one finite number")
            break
        if terminated.dtype != torch.bool or truncated.dtype != torch.bool:
            problems.append(
                f"step {i}: terminated/truncated are {terminated.dtype}/{truncated.dtype}, not bool"
            )
            break
    limit = getattr(env, "max_episode_steps", None)
    ends = [
        (int(t), bool(term), bool(trunc))
        for t, term, trunc in zip(first["time"], first["terminated"], first["truncated"], strict=True)
        if bool(term) or bool(trunc)
    ]
    if limit:
        early = [t for t, _, trunc in ends if trunc and t < limit]
        if early:
            problems.append(f"truncated after {early[0]} steps, before the time limit of {limit}")
        at_limit = [term and not trunc for t, term, trunc in ends if t == limit]
        if at_limit and all(at_limit):
            problems.append(
                f"every episode that reached the time limit ({limit} steps) reported terminated, "
                "not truncated: a time limit is not a terminal state"
            )
    for name in ("obs", "reward"):
        for i, (a, b) in enumerate(zip(first[name], second[name], strict=True)):
            if a.shape != b.shape or not torch.allclose(a, b, rtol=0.0, atol=0.0, equal_nan=True):
                problems.append(f"non-deterministic: {name} {i} differs between two runs from seed {seed}")
                break
    return problems


def _multi_agent_trajectory(env: Any, seed: int, steps: int) -> dict[str, list[Tensor]]:
    """A multi-agent environment under uniformly random *legal* actions (drawn from each
    observation's mask); observations are kept as their flattened entries (``obs``) and as the
    dicts themselves (``raw``)."""
    from frl.distributions import MaskedCategorical

    k_reset, key = random.split(random.key(seed))
    obs, state = env.reset(k_reset)

    def flat(o: Any) -> Tensor:
        return torch.cat([x.reshape(-1).to(torch.float64) for x in pytree.tree_leaves(o)])

    out: dict[str, list[Any]] = {
        "obs": [flat(obs)],
        "raw": [obs],
        "reward": [],
        "terminated": [],
        "truncated": [],
        "time": [],
    }
    for _ in range(steps):
        key, k_act, k_step = random.split(key, 3)
        mask = obs[env.group]["action_mask"]
        action = MaskedCategorical().sample(k_act, (torch.zeros(mask.shape), mask))
        time = int(state["time"]) + 1
        obs, state, reward, terminated, truncated, info = env.step(k_step, state, action)
        for o in (info["final_observation"], obs):
            out["obs"].append(flat(o))
            out["raw"].append(o)
        out["reward"].append(reward)
        out["terminated"].append(terminated)
        out["truncated"].append(truncated)
        out["time"].append(torch.tensor(time))
    return out


def _multi_agent_problems(env: Any, first: dict[str, list[Any]]) -> list[str]:
    """Each observation entry of the example's shape and dtype, finite, and at least one legal
    action per agent."""
    example = env.observation_example()
    for i, obs in enumerate(first["raw"]):
        for key, like in example.items(include_nested=True, leaves_only=True):
            path = (key,) if isinstance(key, str) else key
            value = obs
            for part in path:
                value = value[part]
            name = ".".join(path)
            if tuple(value.shape) != tuple(like.shape) or value.dtype != like.dtype:
                return [
                    f"observation {i}: `{name}` is {value.dtype} {list(value.shape)}, the environment "
                    f"declares {like.dtype} {list(like.shape)}"
                ]
            if value.dtype.is_floating_point and not bool(torch.isfinite(value).all()):
                return [f"observation {i}: `{name}` has non-finite values"]
        if not bool(obs[env.group]["action_mask"].any(-1).all()):
            return [f"observation {i}: an agent has no legal action (an all-false action_mask row)"]
    return []


def random_return(env: Any, key: Tensor, episodes: int = 20) -> float:
    """The mean return of a uniformly random policy over ``episodes`` whole episodes of a pure
    discrete-action environment run side by side (each counted until it first ends): the
    "random" row a learning curve is read against."""
    if not getattr(env, "discrete", False):
        raise ValueError(f"random_return: {env.id} has {env.action_space}; it draws discrete actions")
    k_reset, key = random.split(key)
    _, state = env.reset(k_reset, num_envs=episodes)
    total = torch.zeros(episodes, dtype=torch.float64)
    live = torch.ones(episodes, dtype=torch.bool)
    for _ in range(env.max_episode_steps):
        key, k_action, k_step = random.split(key, 3)
        action = random.randint(k_action, (episodes,), 0, env.action_space.n)
        _, state, reward, terminated, truncated, _ = env.step(k_step, state, action)
        total += torch.where(live, reward.double(), 0.0)
        live = live & ~(terminated | truncated)
        if not bool(live.any()):
            break
    return float(total.mean())
