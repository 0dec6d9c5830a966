"""Evaluation: the deterministic policy's return, on the pure environment or on a TorchRL one.

* :class:`PureEvaluation`: every member's evaluation environments step inside compiled chunks
  (vmapped over members); each environment counts its first episode only.
* :func:`episode_returns`: episodes on a TorchRL environment, with the training environment's
  observation statistics, frozen: one after another (gymnasium ids), or the first episode of each
  of ``episodes`` environments stepped as one batch where the task simulates environments in
  batches (``batched_episodes``: VMAS).
* :func:`evaluate`: one member, eagerly, whichever the environment.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import Tensor

from frl import random
from frl._compile import scan
from frl.algos.networks import clip_action
from frl.algos.train import Train
from frl.driver.compiled import CompiledFunction
from frl.envs.base import loops_in_graph

__all__ = [
    "UNROLLED_EVAL_CHUNK",
    "PureEvaluation",
    "episode_returns",
    "evaluate",
    "evaluate_outcomes",
    "evaluation_keys",
    "first_episodes",
    "outcomes",
]


UNROLLED_EVAL_CHUNK = 5
"""Evaluation steps per compiled call where the environment's steps are unrolled (its compile time
grows with it: 5 steps compiled in 10.7 s, 20 in 28.8 s)."""


def outcomes(env: Any) -> tuple[str, ...]:
    """The bool episode outcomes ``env`` reports in its step ``info`` (``MicroCombat``: ``win``);
    evaluation counts each one's rate over the first episodes."""
    return tuple(getattr(env, "outcomes", ()))


def _first_episodes_init(train: Train, key: Tensor, episodes: int) -> dict[str, Any]:
    obs, env_state = train.env.reset(key, num_envs=episodes)
    return {
        "env": {"state": env_state, "obs": obs},
        "return": torch.zeros(episodes, dtype=train.env.dtype, device=key.device),
        "done": torch.zeros(episodes, dtype=torch.bool, device=key.device),
        "key": random.fold_in(key, 1),
        **{name: torch.zeros(episodes, dtype=torch.bool, device=key.device) for name in outcomes(train.env)},
        **({} if train.memory is None else {"memory": train.memory(episodes, key.device)}),
    }


def _first_episodes_chunk(
    train: Train, steps: int
) -> Callable[[TensorDictBase, Mapping[str, Any]], dict[str, Any]]:
    names = outcomes(train.env)

    def chunk(params: TensorDictBase, ev: Mapping[str, Any]) -> dict[str, Any]:
        def step(ev: dict[str, Any]) -> tuple[dict[str, Any], Tensor]:
            key, k_env = random.split(ev["key"])
            obs, done, carries = ev["env"]["obs"], ev["done"], ev.get("memory")
            if carries is None:
                action = train.policy(params, obs)
            else:  # each environment's first episode counts: its carries never need a reset
                action, carries = train.policy(params, obs, carries)
            obs, env_state, reward, terminated, truncated, info = train.env.step(
                k_env, ev["env"]["state"], action
            )
            out = {
                "env": {"state": env_state, "obs": obs},
                "return": ev["return"] + torch.where(done, torch.zeros_like(reward), reward),
                "done": done | terminated | truncated,
                "key": key,
                **{name: ev[name] | (~done & info[name]) for name in names},
            }
            # the loop's per-step output is one flag per environment: evaluation keeps no trajectory
            return (out if carries is None else {**out, "memory": carries}), out["done"]

        return scan(step, dict(ev), steps, loops_in_graph(train.env))[0]

    return chunk


def evaluation_keys(members: Sequence[Mapping[str, Any]], steps: int) -> Tensor:
    """Each member's evaluation key at ``steps``: a function of its seed and the step count."""
    return torch.stack([random.fold_in(random.key(m["seed"]), 2**31 + steps % 2**31) for m in members])


class PureEvaluation:
    """Mean return of ``episodes`` first episodes per member on the pure environment, with the
    policy stepped ``chunk`` steps per (compiled, vmapped) call (0: the environment's episode
    limit, one call per evaluation, where the environment is ``scannable``; else 5: an unrolled
    step compiles in ~2 s)."""

    def __init__(
        self,
        train: Train,
        members: Sequence[Mapping[str, Any]],
        episodes: int,
        chunk: int,
        batched: bool,
        compiled: bool,
    ) -> None:
        self.train, self.members, self.batched = train, list(members), batched
        chunk = chunk or (train.env.max_episode_steps if loops_in_graph(train.env) else UNROLLED_EVAL_CHUNK)
        self.calls = math.ceil(train.env.max_episode_steps / chunk)
        self._init = CompiledFunction(
            "eval_init", lambda k: _first_episodes_init(train, k, episodes), batched, False
        )
        self._chunk = CompiledFunction("eval_chunk", _first_episodes_chunk(train, chunk), batched, compiled)
        self.outcomes: dict[str, list[float]] = {}
        """The last evaluation's outcome rates per member (``{"win": [...]}`` on MicroCombat)."""

    @property
    def first_call_s(self) -> float:
        return self._chunk.first_call_s

    def __call__(self, params: TensorDictBase, steps: int) -> list[float]:
        # the environments start on the parameters' device (``frl.run(device=...)``)
        device = next(iter(params.values(True, True))).device
        keys = evaluation_keys(self.members, steps).to(device)
        ev = self._init(keys if self.batched else keys[0])
        for _ in range(self.calls):
            ev = self._chunk(params, ev)
        members = len(self.members)
        self.outcomes = {
            name: ev[name].reshape(members, -1).double().mean(-1).tolist()
            for name in outcomes(self.train.env)
        }
        return ev["return"].reshape(members, -1).double().mean(-1).tolist()


def episode_returns(
    train: Train, params: TensorDictBase, seed: int, episodes: int, norm: dict | None = None
) -> Tensor:
    """Raw returns ``[episodes]`` of the deterministic ``train.policy`` on a fresh TorchRL
    evaluation environment seeded with ``seed`` (``norm``: the training environment's observation
    statistics, from ``frl.envs.gymnasium.norm_state``).

    Episodes run one after another on one environment, or, where the task says it simulates
    environments in batches (``batched_episodes``, VMAS), as the first episodes of ``episodes``
    environments stepped together: ``episodes`` times fewer policy calls and steps (10 VMAS
    navigation episodes: 0.34 s instead of 2.9 s, one core)."""
    from frl.envs.gymnasium import load_norm_state

    batched = getattr(train.env, "batched_episodes", False)
    env = train.env.make_env(seed=seed, train=False, **({"num_envs": episodes} if batched else {}))
    load_norm_state(env, norm, freeze=True)
    group = train.env.group if getattr(train.env, "multi_agent", False) else None

    def act(td: TensorDictBase) -> None:
        if group is None:
            td["action"] = clip_action(train.env, train.policy(params, td["observation"]))
        else:  # every agent's action from the group's observation dict; the team's reward
            td[group, "action"] = clip_action(train.env, train.policy(params, {group: td[group].to_dict()}))

    steps = train.env.max_episode_steps
    try:
        if batched:
            returns = first_episodes(env, act, steps, episodes)
        else:  # one environment: each episode is the first after a reset
            returns = torch.cat([first_episodes(env, act, steps, 1) for _ in range(episodes)])
        return returns.to(torch.get_default_dtype())
    finally:
        env.close()


def first_episodes(env: Any, act: Callable[[TensorDictBase], None], max_steps: int, num_envs: int) -> Tensor:
    """The raw return of each of a TorchRL environment's ``num_envs`` batched environments' first
    episode, float64 ``[num_envs]`` (NaN where non-finite).

    The environments step together for at most ``max_steps`` steps (``act`` writes the batch's
    actions); one whose episode has ended keeps stepping with the others, its rewards no longer
    counted: ``R_i = sum_{t <= T_i} r_{i,t}``, ``T_i`` its first done step.
    """
    td = env.reset()
    total = torch.zeros(num_envs, dtype=torch.float64)
    running = torch.ones(num_envs, dtype=torch.bool)
    with torch.no_grad():
        for _ in range(max_steps):
            act(td)
            td = env.step(td)
            reward = td["next", "reward"].reshape(num_envs, -1).sum(-1).double()
            total += torch.where(running, reward, 0.0)
            running &= ~td["next", "done"].reshape(num_envs, -1).any(-1)
            if not bool(running.any()):
                break
            td = td["next"].exclude("reward", "done", "terminated", "truncated")
    return torch.where(torch.isfinite(total), total, math.nan)


def evaluate(
    train: Train, params: TensorDictBase, key: Tensor, episodes: int = 10, env_state: dict | None = None
) -> Tensor:
    """Returns of ``episodes`` episodes with the deterministic policy (eager, one member).

    Pure environments run ``episodes`` environments until each one's first episode ends; an
    environment stepped outside the graph (a gymnasium id) runs them one after another on an
    evaluation environment seeded from ``key`` (``env_state``: the normalisation statistics a
    checkpoint saved).
    """
    if not hasattr(train.env, "state_names"):
        return episode_returns(train, params, int(random.bits(key)) % 2**31, episodes, env_state)
    return evaluate_outcomes(train, params, key, episodes)[0]


def evaluate_outcomes(
    train: Train, params: TensorDictBase, key: Tensor, episodes: int = 10
) -> tuple[Tensor, dict[str, float]]:
    """As :func:`evaluate` on a pure environment, with the rate of each of its episode
    :func:`outcomes` (``{"win": ...}`` on MicroCombat; ``{}`` where it reports none)."""
    ev = _first_episodes_init(train, key, episodes)
    ev = _first_episodes_chunk(train, train.env.max_episode_steps)(params, ev)
    return ev["return"], {name: float(ev[name].double().mean()) for name in outcomes(train.env)}
