"""What every agent exposes: ``Train(init, step, units, ...)`` and shared helpers.

``Train.step(state)`` is one collect-and-update iteration, a pure function of the training
state (one TensorDict), so ``torch.func.vmap(train.step)`` trains many seeds. ``step`` is the
sequential composition of ``Train.units``: small pure functions ``state -> (state, metrics)``,
each run ``repeats`` times. On CPU, compile time grows with graph size, so the driver
(``frl.run``) compiles each unit (vmapped over seeds) and loops over them in Python; the result
is the same as calling ``step``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl.envs import Environment, GymEnvironment
from frl.optim import GradientTransformation

__all__ = [
    "Train",
    "Unit",
    "check_config",
    "check_segments",
    "compose",
    "episode_metrics",
    "episode_stats",
    "init_episode_stats",
    "init_state",
    "wrapped_optimizer",
]

UnitFn = Callable[[TensorDictBase], tuple[TensorDictBase, TensorDictBase]]


class Unit(NamedTuple):
    """A pure piece of an iteration: ``fn(state) -> (state, metrics)``, run ``repeats`` times."""

    name: str
    fn: UnitFn
    repeats: int


class Train(NamedTuple):
    """A complete agent.

    Attributes:
      config: the validated configuration.
      env: the training environment.
      init: ``key -> state``.
      step: ``state -> (state, metrics)``: one iteration (``compose(units)``).
      units: the pieces ``step`` is made of, in order.
      steps_per_iteration: environment steps one ``step`` takes (per seed).
      policy: ``(params, obs) -> action``, deterministic, for evaluation.
      explore: ``(params, obs, key, env_steps) -> (action, log_prob)``: the behaviour policy
        the collect unit runs (exploration noise, epsilon, random warm-up included), for
        collectors outside the pure path (TorchRL over gymnasium). Returns the action the
        learner stores; the environment receives it clipped to the action box.
    """

    config: Any
    env: Environment
    init: Callable[[Tensor], TensorDict]
    step: UnitFn
    units: tuple[Unit, ...]
    steps_per_iteration: int
    policy: Callable[[TensorDictBase, Tensor], Tensor]
    explore: Callable[[TensorDictBase, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]] | None = None


def compose(units: tuple[Unit, ...]) -> UnitFn:
    """``step(state)``: every unit ``repeats`` times, in order; metrics merged (last call wins)."""

    def step(state: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        metrics: dict[str, Tensor] = {}
        for unit in units:
            for _ in range(unit.repeats):
                state, m = unit.fn(state)
                metrics.update(m.items())
        return state, TensorDict(metrics, batch_size=[])

    return step


def check_config(config: Any) -> None:
    """Validate a config dataclass: positive ints and floats where names say so.

    Fields named ``num_*``, ``*_steps``, ``*_size``, ``*_epochs``, ``*_frequency``, ``hidden``
    must be positive; ``learning_rate``/``*_lr`` positive; ``gamma``, ``*_lambda``, ``tau`` in
    ``[0, 1]``; ``*_coef`` non-negative. Raises a ValueError naming the field.
    """
    name = type(config).__name__
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        f = field.name
        if isinstance(value, bool):
            continue
        if f == "hidden":
            if not value or any(not isinstance(h, int) or h <= 0 for h in value):
                raise ValueError(
                    f"{name}: `hidden` must be a non-empty tuple of positive ints, got {value!r}"
                )
        elif f.startswith("num_") or f.endswith(
            ("_steps", "_size", "_epochs", "_frequency", "_timesteps", "_chunk")
        ):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: `{f}` must be a positive int, got {value!r}")
        elif f == "learning_rate" or f.endswith("_lr"):
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name}: `{f}` must be a positive number, got {value!r}")
        elif f in ("gamma", "tau") or f.endswith("_lambda"):
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: `{f}` must lie in [0, 1], got {value!r}")
        elif f.endswith("_coef") and (not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"{name}: `{f}` must be non-negative, got {value!r}")


def check_segments(config: Any) -> None:
    """On-policy segments: ``num_steps`` a multiple of ``rollout_chunk``, and ``total_timesteps``
    at least one iteration of ``num_envs * num_steps`` steps."""
    if config.num_steps % config.rollout_chunk:
        raise ValueError(
            f"Config: `num_steps` ({config.num_steps}) must be a multiple of `rollout_chunk` "
            f"({config.rollout_chunk})"
        )
    if config.total_timesteps < config.num_envs * config.num_steps:
        raise ValueError(
            f"Config: `total_timesteps` ({config.total_timesteps}) must cover one iteration of "
            f"num_envs * num_steps = {config.num_envs * config.num_steps} steps"
        )


def init_state(
    env: Environment | GymEnvironment, key_env: Tensor, key_run: Tensor, num_envs: int, **fields: Any
) -> TensorDict:
    """A training state: ``fields`` (learner, trajectory or buffer, ...) plus what every agent
    carries: ``num_envs`` freshly reset environments (from ``key_env``), the run's ``key``,
    episode statistics and the ``env_steps`` counter."""
    obs, env_state = env.reset(key_env, num_envs=num_envs)
    return TensorDict(
        {
            **fields,
            "env": TensorDict({"state": env_state, "obs": obs}, batch_size=[]),
            "key": key_run,
            "stats": init_episode_stats(num_envs, env.dtype),
            "env_steps": torch.zeros((), dtype=torch.int64),
        },
        batch_size=[],
    )


def init_episode_stats(num_envs: int, dtype: torch.dtype = torch.float32) -> TensorDict:
    """Running and last-finished episode return/length per environment."""
    zeros = torch.zeros(num_envs, dtype=dtype)
    return TensorDict(
        {
            "return": zeros,
            "length": torch.zeros(num_envs, dtype=torch.int64),
            "last_return": zeros.clone(),
            "last_length": torch.zeros(num_envs, dtype=torch.int64),
            "episodes": torch.zeros((), dtype=torch.int64),
        },
        batch_size=[],
    )


def episode_metrics(stats: Mapping[str, Tensor]) -> TensorDict:
    """Mean return and length of the last finished episode of each environment."""
    return TensorDict(
        {
            "episode_return": stats["last_return"].mean(),
            "episode_length": stats["last_length"].to(stats["last_return"].dtype).mean(),
        },
        batch_size=[],
    )


def episode_stats(stats: Mapping[str, Tensor], reward: Tensor, done: Tensor) -> dict[str, Tensor]:
    """Accumulate one step's rewards; on ``done`` move the episode into ``last_*`` and restart.

    Works on a plain dict (inside compiled rollouts) or a TensorDict of the same keys.
    """
    ret = stats["return"] + reward
    length = stats["length"] + 1
    return {
        "return": torch.where(done, torch.zeros_like(ret), ret),
        "length": torch.where(done, torch.zeros_like(length), length),
        "last_return": torch.where(done, ret, stats["last_return"]),
        "last_length": torch.where(done, length, stats["last_length"]),
        "episodes": stats["episodes"] + done.sum(),
    }


def wrapped_optimizer(optimizer: GradientTransformation, wrap: Callable | None) -> GradientTransformation:
    """``wrap(optimizer)``, or ``optimizer`` when ``wrap`` is None (``make_train``'s hook)."""
    return optimizer if wrap is None else wrap(optimizer)
