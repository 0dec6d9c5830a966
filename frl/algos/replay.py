"""Off-policy collection into a replay buffer held in the training state, and masked learning."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import buffers, random
from frl.algos.base import episode_metrics, episode_stats
from frl.algos.rollout import STATS
from frl.envs import Environment

__all__ = ["example_transition", "make_collect", "masked"]

_FIELDS = ("obs", "action", "next_obs", "reward", "terminated", "truncated", "done")
ActFn = Callable[[TensorDictBase, Tensor, Tensor, Tensor], Tensor]


def example_transition(env: Environment) -> TensorDict:
    """One transition in ``frl.losses``' layout, for ``buffers.init``."""
    obs = torch.zeros(env.observation_space.shape, dtype=getattr(env, "obs_dtype", env.dtype))
    action = (
        torch.zeros((), dtype=torch.int64)
        if env.discrete
        else torch.zeros(env.action_space.shape, dtype=env.dtype)
    )
    flag = torch.zeros((), dtype=torch.bool)
    return TensorDict(
        {
            "observation": obs,
            "action": action,
            "next": {
                "observation": obs.clone(),
                "reward": torch.zeros((), dtype=env.dtype),
                "terminated": flag,
                "truncated": flag.clone(),
                "done": flag.clone(),
            },
        },
        batch_size=[],
    )


def make_collect(
    env: Environment, act: ActFn, steps: int
) -> Callable[[TensorDictBase], tuple[TensorDict, TensorDict]]:
    """A unit that takes ``steps`` environment steps with ``act(state, obs, key, env_steps)`` and
    stores them.

    Transitions go to ``buffer`` with the true final observation as ``next.observation``.
    """

    def collect(state: TensorDictBase) -> tuple[TensorDict, TensorDict]:
        key = state["key"]
        obs = state["env", "obs"]
        env_state = {k: state["env", "state", k] for k in env.state_names}
        stats = {k: state["stats", k] for k in STATS}
        env_steps = state["env_steps"]
        rows: dict[str, list[Tensor]] = {k: [] for k in _FIELDS}
        for _ in range(steps):
            key, k_act, k_env = random.split(key, 3)
            action = act(state, obs, k_act, env_steps)
            next_obs, env_state, reward, terminated, truncated, info = env.step(k_env, env_state, action)
            done = terminated | truncated
            for name, value in zip(
                _FIELDS, (obs, action, info["final_observation"], reward, terminated, truncated, done)
            ):
                rows[name].append(value)
            stats = episode_stats(stats, reward, done)
            env_steps = env_steps + obs.shape[0]
            obs = next_obs
        # one write per chunk, in the order of sequential adds (step-major, then environment)
        flat = {k: torch.stack(v).flatten(0, 1) for k, v in rows.items()}
        transitions = TensorDict(
            {
                "observation": flat["obs"],
                "action": flat["action"],
                "next": {
                    k: flat[n]
                    for k, n in (
                        ("observation", "next_obs"),
                        ("reward", "reward"),
                        ("terminated", "terminated"),
                        ("truncated", "truncated"),
                        ("done", "done"),
                    )
                },
            },
            batch_size=[steps * obs.shape[0]],
        )
        buffer = buffers.add(state["buffer"], transitions)
        new = state.copy()
        new["key"] = key
        new["env"] = TensorDict({"state": env_state, "obs": obs}, batch_size=[])
        new["stats"] = TensorDict(stats, batch_size=[])
        new["buffer"] = buffer
        new["env_steps"] = env_steps
        return new, episode_metrics(stats)

    return collect


def masked(flag: Tensor, new: TensorDictBase, old: TensorDictBase) -> TensorDictBase:
    """``new`` where ``flag`` else ``old``, leafwise (a learning step that may not happen yet)."""
    return new.apply(lambda n, o: torch.where(flag, n, o), old)
