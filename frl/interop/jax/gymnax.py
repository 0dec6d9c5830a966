"""Any gymnax environment as a frl pure environment: ``GymnaxEnv("CartPole-v1")``.

The environment's ``reset`` and ``step`` run in JAX (jitted, vmapped over environments) as
torch operators built by :func:`frl.interop.jax.jax_function`, so a ``GymnaxEnv`` goes
wherever a :class:`frl.envs.Environment` goes: ``frl.algos.<name>.make_train(config, env)``,
``frl.run`` with vmapped seeds, compiled rollouts (the operators are opaque nodes in the graph;
``torch.func.vmap`` over seeds becomes ``jax.vmap``), and TorchRL through
:func:`frl.envs.to_torchrl`. Tensors cross through DLPack without copies.

frl's semantics are kept: same-step auto-reset with ``info["final_observation"]``, and
termination separated from truncation (gymnax folds its time limit into ``done``; here
``truncated = time >= max_steps_in_episode`` and ``terminated`` is gymnax's ``is_terminal``
evaluated without the time limit, so a truncated step still bootstraps).

Randomness matches a JAX program exactly: ``reset(key, num_envs=E)`` resets environment ``i``
from ``jax.random.split(key, E)[i]`` and ``step`` draws each environment's key the same way
(then gymnax's own ``split`` into a step key and a reset key), as purejaxrl does; frl keys and
``jax.random`` keys are the same words (:func:`frl.interop.jax.to_jax_key`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import torch
from gymnax.environments import spaces as gspaces
from torch import Tensor

from frl import random
from frl.envs.spaces import Box, Discrete
from frl.interop.jax.functions import JaxFunction

__all__ = ["PREFIX", "GymnaxEnv", "make_gymnax"]

PREFIX = "gymnax:"
_NO_LIMIT = 2**30
_SOURCE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _key_words(key: Tensor) -> Tensor:
    """frl key words (int64 in [0, 2**32)) as int32 with the same bits (JAX runs without x64)."""
    return (key - (key >= 2**31).to(key.dtype) * 2**32).to(torch.int32)


def _wrap_key(words: jax.Array) -> jax.Array:
    return jax.random.wrap_key_data(jax.lax.bitcast_convert_type(words, jnp.uint32))


def _space(space: Any, name: str, env_name: str) -> Box | Discrete:
    if isinstance(space, gspaces.Discrete):
        return Discrete(int(space.n))
    if isinstance(space, gspaces.Box):
        shape = tuple(int(s) for s in space.shape)
        low = np.broadcast_to(np.asarray(space.low, dtype=np.float64), shape).ravel()
        high = np.broadcast_to(np.asarray(space.high, dtype=np.float64), shape).ravel()
        return Box(tuple(float(v) for v in low), tuple(float(v) for v in high), shape)
    raise TypeError(
        f"GymnaxEnv({env_name!r}): {name} space {type(space).__name__} is not supported (Box, Discrete)"
    )


@dataclass(frozen=True, eq=False)
class GymnaxEnv:
    """A gymnax environment behind frl's pure-environment API (see the module docstring).

    Args:
      env_name: a gymnax id (``gymnax.registered_envs``), e.g. ``"CartPole-v1"``.
      env_params: gymnax ``EnvParams`` (default: the environment's ``default_params``).
      env_kwargs: passed to ``gymnax.make``.
      dtype: observation and reward dtype on the torch side.

    Example::

        env = GymnaxEnv("CartPole-v1")
        obs, state = env.reset(frl.random.key(0), num_envs=8)        # obs [8, 4]
        obs, state, reward, terminated, truncated, info = env.step(key, state, action)
        train = frl.algos.ppo.make_train(ppo.Config(env_id=env.id), env)
    """

    env_name: str
    env_params: Any = None
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if self.env_name not in gymnax.registered_envs:
            raise ValueError(
                f"GymnaxEnv: unknown `env_name` {self.env_name!r}; gymnax has "
                f"{', '.join(gymnax.registered_envs)}"
            )
        env, default = gymnax.make(self.env_name, **dict(self.env_kwargs))
        params = default if self.env_params is None else self.env_params
        if not hasattr(params, "max_steps_in_episode"):
            raise TypeError(f"GymnaxEnv({self.env_name!r}): `env_params` must be gymnax EnvParams")
        set_ = object.__setattr__
        set_(self, "gymnax_env", env)
        set_(self, "params", params)
        set_(self, "observation_space", _space(env.observation_space(params), "observation", self.env_name))
        set_(self, "action_space", _space(env.action_space(params), "action", self.env_name))
        obs_space = self.observation_space
        if isinstance(obs_space, Discrete):
            raise TypeError(f"GymnaxEnv({self.env_name!r}): discrete observations are not supported")
        _, example = env.reset(jax.random.key(0), params)
        paths, treedef = jax.tree_util.tree_flatten_with_path(example)
        names = tuple(
            ".".join(str(getattr(p, "name", getattr(p, "key", getattr(p, "idx", p)))) for p in path)
            or "state"
            for path, _ in paths
        )
        if "time" not in names:
            raise TypeError(f"GymnaxEnv({self.env_name!r}): the state has no `time` field")
        set_(self, "state_names", names)
        set_(self, "_treedef", treedef)
        # what the operators compute, for their names (compiled graphs cached on disk call them by name)
        version = importlib.metadata.version("gymnax")
        described = f"{self.env_name} {params!r} {dict(self.env_kwargs)!r} {self.dtype} gymnax {version}"
        key = None if " at 0x" in described else f"{described} {_SOURCE_DIGEST}"
        set_(
            self,
            "_reset_fn",
            JaxFunction(self._jax_reset, name=f"gymnax_reset_{self.env_name}", cache_key=key),
        )
        set_(
            self, "_step_fn", JaxFunction(self._jax_step, name=f"gymnax_step_{self.env_name}", cache_key=key)
        )

    # -- the JAX side ---------------------------------------------------------------------

    def _leaves(self, state: Any) -> tuple[jax.Array, ...]:
        return tuple(jnp.asarray(x) for x in jax.tree_util.tree_leaves(state))

    def _obs(self, obs: jax.Array) -> jax.Array:
        return obs.astype(jnp.dtype(str(self.dtype).removeprefix("torch.")))

    def _reset_one(self, words: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        obs, state = self.gymnax_env.reset_env(_wrap_key(words), self.params)
        return self._obs(obs), self._leaves(state)

    def _step_one(self, words: jax.Array, *args: jax.Array) -> tuple[Any, ...]:
        *leaves, action = args
        env, params = self.gymnax_env, self.params
        state = jax.tree_util.tree_unflatten(self._treedef, leaves)
        key_step, key_reset = jax.random.split(_wrap_key(words))
        obs_st, state_st, reward, _, _ = env.step_env(key_step, state, action, params)
        truncated = state_st.time >= params.max_steps_in_episode
        terminated = env.is_terminal(state_st, params.replace(max_steps_in_episode=_NO_LIMIT))
        done = terminated | truncated
        obs_re, state_re = env.reset_env(key_reset, params)
        next_state = jax.tree_util.tree_map(lambda a, b: jax.lax.select(done, a, b), state_re, state_st)
        obs = jax.lax.select(done, obs_re, obs_st)
        reward = jnp.reshape(reward, ()).astype(self._obs(obs).dtype)
        return self._obs(obs), self._leaves(next_state), reward, terminated, truncated, self._obs(obs_st)

    def _vmapped(self, fn: Any, words: jax.Array) -> Any:
        for _ in range(words.ndim - 1):
            fn = jax.vmap(fn)
        return fn

    def _jax_reset(self, words: jax.Array) -> Any:
        return self._vmapped(self._reset_one, words)(words)

    def _jax_step(self, words: jax.Array, *args: jax.Array) -> Any:
        return self._vmapped(self._step_one, words)(words, *args)

    # -- frl's pure-environment API -------------------------------------------------------

    @property
    def id(self) -> str:
        return PREFIX + self.env_name

    @property
    def max_episode_steps(self) -> int:
        return int(self.params.max_steps_in_episode)

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, Discrete)

    def default_params(self) -> None:
        """None: the gymnax ``EnvParams`` are fixed at construction (``env_params``)."""
        return None

    def _check_params(self, params: Any) -> None:
        if params is not None:
            raise TypeError(
                f"{self.id}: per-call `params` are not supported; build GymnaxEnv(env_params=...) instead"
            )

    def _state(self, leaves: tuple[Tensor, ...]) -> dict[str, Tensor]:
        return dict(zip(self.state_names, leaves))

    def reset(
        self, key: Tensor, params: Any = None, num_envs: int | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``(obs, state)``: one environment, or ``num_envs`` reset from ``split(key, num_envs)``."""
        self._check_params(params)
        keys = key if num_envs is None else random.split(key, num_envs)
        obs, leaves = self._reset_fn(_key_words(keys))
        return obs, self._state(leaves)

    def step(
        self, key: Tensor, state: Mapping[str, Tensor], action: Tensor, params: Any = None
    ) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """One step with time limit and same-step auto-reset (as :meth:`frl.envs.Environment.step`).

        A batched state (from ``reset(..., num_envs=E)``) steps environment ``i`` with
        ``split(key, E)[i]``.
        """
        self._check_params(params)
        missing = [n for n in self.state_names if n not in state]
        if missing:
            raise ValueError(f"{self.id}: `state` lacks {missing}; pass the state reset/step returned")
        batch = tuple(state["time"].shape)
        self._check_action(action, batch)
        keys = random.split(key, batch[0]) if batch else key
        if len(batch) > 1:
            raise ValueError(
                f"{self.id}: `state` must be one environment or [num_envs], got batch {list(batch)}"
            )
        action = action.to(torch.int32) if self.discrete else action.to(torch.float32)
        leaves = [state[n] for n in self.state_names]
        obs, next_leaves, reward, terminated, truncated, final_obs = self._step_fn(
            _key_words(keys), *leaves, action
        )
        return obs, self._state(next_leaves), reward, terminated, truncated, {"final_observation": final_obs}

    def _check_action(self, action: Tensor, batch: tuple[int, ...]) -> None:
        if not isinstance(action, Tensor):
            raise TypeError(f"{self.id}: `action` must be a tensor, got {type(action)!r}")
        expected = batch + tuple(self.action_space.shape)
        floating = action.dtype.is_floating_point
        if tuple(action.shape) != expected or floating == self.discrete:
            kind = f"integer indices in [0, {self.action_space.n})" if self.discrete else "a float tensor"
            raise ValueError(
                f"{self.id}: `action` must be {kind} of shape {list(expected)}, got dtype {action.dtype} "
                f"and shape {list(action.shape)}"
            )


def make_gymnax(env_id: str, **kwargs: Any) -> GymnaxEnv:
    """``GymnaxEnv`` from ``"gymnax:<name>"`` (or a bare gymnax name); kwargs go to the constructor."""
    return GymnaxEnv(env_id.removeprefix(PREFIX), **kwargs)
