"""The training-state spec: the one layout every agent's state follows.

A state is a TensorDict (``batch_size=[]`` per member; ``frl.run`` stacks members on a leading
dim) with exactly these entries:

================  ==============================================================================
``params``        every network's parameters, target networks included (float leaves)
``opt_state``     the optimizer's state (moments, counts, its own constants)
``hyperparams``   every hyper-parameter the agent's Config declares (:func:`frl.algos.config.hyper`),
                  a 0-d float64 tensor each; the pure functions read them here and nowhere else
``env``           ``observation [E, *obs]`` and ``state`` (the pure environment's state dict;
                  empty for environments stepped outside the graph, e.g. gymnasium's); a
                  recurrent agent's ``memory`` (its carries ``{name: [E, S]}``) and ``is_init``
                  (bool ``[E]``), :data:`frl.algos.collect.MEMORY`
``data``          what the agent consumes (:class:`Segments` or :class:`Replay`): an on-policy
                  segment ``[E, T]``, time last, or a replay buffer (``frl.buffers``), in
                  TorchRL's transition keys
``key``           the run's random key (``frl.random``: two 32-bit words in an int64 ``[2]``)
``counters``      int64 0-d counters: ``env_steps``, ``updates`` (gradient steps), and the
                  agent's own (``segment_step``: where collection writes in the segment)
``episodes``      ``return [E]``, ``length [E]`` (the running episode), ``last_return [E]``,
                  ``last_length [E]`` (the last finished one) and ``count`` (finished episodes)
``scratch``       optional: an agent's own per-iteration intermediates (PPO's minibatch order),
                  rebuilt every iteration and never read by the driver
================  ==============================================================================

Transitions carry TorchRL's names everywhere: ``observation``, ``action``, ``action_log_prob``
(on-policy), and under ``next``: ``observation`` (the true next observation, also at episode
ends), ``reward``, ``terminated``, ``truncated``, ``done``. :func:`check_state` validates a state
against the spec and raises an error naming the first entry that breaks it; ``Train.init``
calls it on every state it builds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl._compile import readable
from frl.envs.base import loops_in_graph
from frl.envs.spaces import MultiDiscrete

__all__ = [
    "REQUIRED",
    "TRANSITION_KEYS",
    "UNROLLED_CHUNK",
    "Replay",
    "Segments",
    "check_state",
    "collection_chunk",
    "episode_step",
    "example_transition",
    "init_episodes",
    "new_state",
]

REQUIRED = ("params", "opt_state", "hyperparams", "env", "data", "key", "counters", "episodes")
OPTIONAL = ("scratch",)
TRANSITION_KEYS = (
    "observation",
    "action",
    ("next", "observation"),
    ("next", "reward"),
    ("next", "terminated"),
    ("next", "truncated"),
    ("next", "done"),
)
EPISODE_KEYS = ("return", "length", "last_return", "last_length", "count")


@dataclass(frozen=True)
class Segments:
    """On-policy data: each iteration collects ``num_steps`` steps on each of ``num_envs``
    environments into ``state["data"]``, a segment ``[num_envs, num_steps]`` (time last, as
    ``frl.returns`` reads it), which the learning units then consume.

    Attributes:
      num_envs, num_steps: the segment's shape ``[E, T]``.
      chunk: steps per call of the pure-environment collection unit (a divisor of ``num_steps``;
        0 reads as ``num_steps``, the whole segment in one call; agents resolve a config's 0
        with :func:`collection_chunk`).
      extra: per-step float entries the agent adds to the segment (PPO: ``state_value``,
        ``advantage``, ``value_target``); collection leaves them alone.
    """

    num_envs: int
    num_steps: int
    chunk: int
    extra: tuple[str, ...] = ()

    kind: ClassVar[str] = "segments"

    def __post_init__(self) -> None:
        if self.chunk == 0:
            object.__setattr__(self, "chunk", self.num_steps)

    @property
    def steps_per_iteration(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def first_learning_iteration(self) -> int:
        """On-policy agents learn from their first iteration."""
        return 0


UNROLLED_CHUNK = 16
"""The default collection chunk where the environment's steps are unrolled in the graph (its
compile time grows with the chunk)."""


def collection_chunk(rollout_chunk: int, num_steps: int, env: Any) -> int:
    """A config's ``rollout_chunk``, 0 resolved: the whole segment (``num_steps``) where ``env`` is
    ``scannable`` (its steps loop inside the graph), else the largest divisor of ``num_steps`` up
    to :data:`UNROLLED_CHUNK`."""
    if rollout_chunk:
        return rollout_chunk
    if loops_in_graph(env):
        return num_steps
    return max(d for d in range(1, UNROLLED_CHUNK + 1) if num_steps % d == 0)


@dataclass(frozen=True)
class Replay:
    """Off-policy data: each iteration appends ``num_steps`` steps of ``num_envs`` environments to
    the replay buffer ``state["data"]`` (``frl.buffers``, capacity ``capacity``); learning
    starts once ``learning_starts`` environment steps were taken, on minibatches of ``batch_size``
    (a resumed run that saved no buffer refills one before learning again).
    """

    num_envs: int
    num_steps: int
    capacity: int
    learning_starts: int = 0
    batch_size: int = 1
    extra: tuple[str, ...] = ()

    kind: ClassVar[str] = "replay"

    @property
    def chunk(self) -> int:
        """Steps per call of the pure-environment collection unit: the whole iteration."""
        return self.num_steps

    @property
    def steps_per_iteration(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def first_learning_iteration(self) -> int:
        """The first iteration (from 0) whose learning step is kept: the first to end with at
        least ``learning_starts`` environment steps. Before it the learning units change nothing
        (:func:`frl.algos.replay.make_replay_learn`), so the driver skips them."""
        return max(0, -(-self.learning_starts // self.steps_per_iteration) - 1)


def _multi_agent_transition(env: Any, log_prob: bool, extra: tuple[str, ...]) -> TensorDict:
    """A multi-agent environment's transition in TorchRL's group layout (:mod:`frl.envs.multi_agent`):
    the agents' ``observation``, ``action_mask``, ``action`` (and ``action_log_prob`` and the
    ``extra`` entries, one per agent) under ``env.group``, the global ``state``, the team's
    ``reward`` (and each agent's, where the environment gives one) and the episode's flags under
    ``next``. Actions are indices, or a box per agent ``[n, D]`` for continuous actions."""
    n, group = env.n_agents, env.group
    obs = env.observation_example()
    flag = torch.zeros((), dtype=torch.bool)
    out = TensorDict(
        {
            **obs,
            "next": {
                **obs.clone(),
                "reward": torch.zeros((), dtype=env.dtype),
                "terminated": flag,
                "truncated": flag.clone(),
                "done": flag.clone(),
            },
        },
        batch_size=[],
    )
    if getattr(env, "discrete", True):
        out[group, "action"] = torch.zeros(n, dtype=torch.int64)
    else:  # a box per agent (VMAS's forces)
        out[group, "action"] = torch.zeros(n, *env.action_space.shape, dtype=env.dtype)
    if getattr(env, "per_agent_reward", False):  # each agent's own reward beside the team's
        out["next", group, "reward"] = torch.zeros(n, dtype=env.dtype)
    for name in (("action_log_prob",) if log_prob else ()) + extra:
        out[group, name] = torch.zeros(n, dtype=env.dtype)
    return out


def example_transition(env: Any, *, log_prob: bool, extra: tuple[str, ...] = ()) -> TensorDict:
    """One transition of ``env`` in TorchRL's keys (zeros; ``batch_size=[]``), with the agent's
    ``extra`` per-step float entries (per agent, under the group, for a multi-agent ``env``)."""
    if getattr(env, "multi_agent", False):
        return _multi_agent_transition(env, log_prob, extra)
    obs_dtype = getattr(env, "obs_dtype", env.dtype)
    obs = torch.zeros(tuple(env.observation_space.shape), dtype=obs_dtype)
    if env.discrete:
        action = torch.zeros((), dtype=torch.int64)
    elif isinstance(env.action_space, MultiDiscrete):
        action = torch.zeros(env.action_space.shape, dtype=torch.int64)
    else:
        action = torch.zeros(tuple(env.action_space.shape), dtype=env.dtype)
    flag = torch.zeros((), dtype=torch.bool)
    out = TensorDict(
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
    if log_prob:
        out["action_log_prob"] = torch.zeros((), dtype=env.dtype)
    for name in extra:
        out[name] = torch.zeros((), dtype=env.dtype)
    return out


def init_episodes(num_envs: int, dtype: torch.dtype = torch.float32) -> TensorDict:
    """Episode statistics of ``num_envs`` environments, all zero."""
    zeros = torch.zeros(num_envs, dtype=dtype)
    steps = torch.zeros(num_envs, dtype=torch.int64)
    return TensorDict(
        {
            "return": zeros,
            "length": steps,
            "last_return": zeros.clone(),
            "last_length": steps.clone(),
            "count": torch.zeros((), dtype=torch.int64),
        },
        batch_size=[],
    )


def episode_step(episodes: Mapping[str, Tensor], reward: Tensor, done: Tensor) -> dict[str, Tensor]:
    """Add one step's rewards; where ``done``, move the episode into ``last_*`` and restart.

    Works on a plain dict (inside compiled collection) or a TensorDict of the same keys.
    """
    ret = episodes["return"] + reward
    length = episodes["length"] + 1
    if readable(done) and not bool(done.any()):  # eagerly, with no episode ended: nothing moves
        kept = ("last_return", "last_length", "count")
        return {"return": ret, "length": length, **{k: episodes[k] for k in kept}}
    return {
        "return": ret.masked_fill(done, 0.0),
        "length": length.masked_fill(done, 0),
        "last_return": torch.where(done, ret, episodes["last_return"]),
        "last_length": torch.where(done, length, episodes["last_length"]),
        "count": episodes["count"] + done.sum(),
    }


def new_state(
    env: Any,
    *,
    key: Tensor,
    env_key: Tensor,
    num_envs: int,
    params: TensorDictBase,
    opt_state: TensorDictBase,
    hyperparams: TensorDictBase,
    data: TensorDictBase,
    counters: Mapping[str, int] | None = None,
    scratch: TensorDictBase | None = None,
) -> TensorDict:
    """A state in the spec's layout: ``num_envs`` environments reset from ``env_key``, the
    counters ``env_steps`` and ``updates`` at 0 (plus the agent's own ``counters``), empty
    episode statistics."""
    if getattr(env, "pure", True):
        obs, env_state = env.reset(env_key, num_envs=num_envs)
    elif getattr(env, "multi_agent", False):  # stepped outside the graph: placeholders
        obs, env_state = env.observation_example().expand(num_envs).clone(), {}
    else:  # stepped outside the graph (TorchRL collectors): placeholders the collectors overwrite
        shape = (num_envs, *env.observation_space.shape)
        obs, env_state = torch.zeros(shape, dtype=getattr(env, "obs_dtype", env.dtype)), {}
    counts = {"env_steps": 0, "updates": 0, **(counters or {})}
    state = TensorDict(
        {
            "params": params,
            "opt_state": opt_state,
            "hyperparams": hyperparams,
            "env": TensorDict({"observation": obs, "state": env_state}, batch_size=[]),
            "data": data,
            "key": key,
            "counters": TensorDict(
                {k: torch.tensor(v, dtype=torch.int64) for k, v in counts.items()}, batch_size=[]
            ),
            "episodes": init_episodes(num_envs, env.dtype),
        },
        batch_size=[],
    )
    if scratch is not None:
        state["scratch"] = scratch
    return state


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


class StateError(ValueError):
    """A training state that breaks the spec (the message names the entry)."""


def _fail(path: str, message: str) -> None:
    raise StateError(f"training state: `{path}` {message} (see frl.algos.spec)")


def _name(key: Any) -> str:
    return key if isinstance(key, str) else ".".join(key)


def _tensor(
    state: TensorDictBase, path: tuple[str, ...], dtype: torch.dtype | None, shape: tuple | None
) -> Tensor:
    value = state.get(path, None)
    name = _name(path)
    if value is None:
        _fail(name, "is missing")
    if not isinstance(value, Tensor):
        _fail(name, f"must be a tensor, got {type(value).__name__}")
    if dtype is not None and value.dtype != dtype:
        _fail(name, f"must be {dtype}, got {value.dtype}")
    if shape is not None and tuple(value.shape) != shape:
        _fail(name, f"must have shape {list(shape)}, got {list(value.shape)}")
    return value


def _mapping(state: TensorDictBase, key: str) -> TensorDictBase:
    value = state.get(key, None)
    if not isinstance(value, TensorDictBase):
        _fail(key, "is missing" if value is None else f"must be a TensorDict, got {type(value).__name__}")
    return value


def check_state(
    state: Any,
    *,
    consumes: Segments | Replay,
    observation_shape: tuple[int, ...],
    hyperparam_names: tuple[str, ...],
    reward_dtype: torch.dtype = torch.float32,
    example: TensorDictBase | None = None,
) -> None:
    """Raise a :class:`StateError` (a ``ValueError``) naming the first entry of ``state`` that
    breaks the spec (see the module docstring). ``example``: a multi-agent environment's
    :func:`example_transition` (its observation is a TensorDict in TorchRL's group layout, and
    ``env.observation`` and every stored transition must match the example entry by entry)."""
    if not isinstance(state, TensorDictBase):
        raise StateError(f"training state: must be a TensorDict, got {type(state).__name__}")
    if state.batch_dims != 0:
        raise StateError(
            f"training state: one member's state has batch_size [], got {list(state.batch_size)}"
        )
    keys = set(state.keys())
    for key in REQUIRED:
        if key not in keys:
            _fail(key, "is missing")
    for key in sorted(keys - set(REQUIRED) - set(OPTIONAL)):
        _fail(
            key,
            f"is not part of the spec (entries: {', '.join(REQUIRED + OPTIONAL)}; "
            "an agent's own go under `scratch`)",
        )
    E = consumes.num_envs

    params = _mapping(state, "params")
    for k, leaf in params.items(include_nested=True, leaves_only=True):
        if not leaf.dtype.is_floating_point:
            _fail(f"params.{_name(k)}", f"must be floating point, got {leaf.dtype}")
    _mapping(state, "opt_state")
    hyper = _mapping(state, "hyperparams")
    have = {_name(k) for k in hyper.keys(include_nested=True, leaves_only=True)}
    for name in hyperparam_names:
        _tensor(state, ("hyperparams", name), torch.float64, ())
    for extra in sorted(have - set(hyperparam_names)):
        _fail(
            f"hyperparams.{extra}", f"is not a hyper-parameter of the config ({', '.join(hyperparam_names)})"
        )

    _mapping(state, "env")
    if example is None:
        obs = _tensor(state, ("env", "observation"), None, (E, *observation_shape))
    env_state = state.get(("env", "state"), None)
    if not isinstance(env_state, TensorDictBase):
        _fail("env.state", "must be a TensorDict (empty for environments stepped outside the graph)")
    _tensor(state, ("key",), torch.int64, (2,))
    counters = _mapping(state, "counters")
    for name in ("env_steps", "updates"):
        _tensor(state, ("counters", name), torch.int64, ())
    for k in counters.keys(include_nested=True, leaves_only=True):
        _tensor(state, ("counters", *((k,) if isinstance(k, str) else k)), torch.int64, ())
    episodes = _mapping(state, "episodes")
    if set(episodes.keys()) != set(EPISODE_KEYS):
        _fail("episodes", f"must hold exactly {list(EPISODE_KEYS)}, got {sorted(episodes.keys())}")
    for name, dtype, shape in (
        ("return", reward_dtype, (E,)),
        ("length", torch.int64, (E,)),
        ("last_return", reward_dtype, (E,)),
        ("last_length", torch.int64, (E,)),
        ("count", torch.int64, ()),
    ):
        _tensor(state, ("episodes", name), dtype, shape)
    if example is None:
        _check_data(state, consumes, obs.dtype, observation_shape, reward_dtype)
        return
    # the observation's entries: those the example has both now and under `next`, but the flags
    # and the rewards (the team's, and an agent's under its group)
    not_observed = {"reward", "terminated", "truncated", "done"}
    observation = example.exclude("next").select(
        *(
            k
            for k in example["next"].keys(True, True)
            if (k if isinstance(k, str) else k[-1]) not in not_observed
        )
    )
    _check_like(state, ("env", "observation"), observation, (E,))
    if consumes.kind == "segments":
        _check_like(state, ("data",), example, (consumes.num_envs, consumes.num_steps))
    else:
        _check_like(state, ("data", "data"), example, (consumes.capacity,))


def _check_like(
    state: TensorDictBase, prefix: tuple[str, ...], example: TensorDictBase, lead: tuple[int, ...]
) -> None:
    """Every entry of ``example`` at ``prefix`` in ``state``, with the leading dims ``lead`` and the
    example's per-step shape and dtype."""
    for key, like in example.items(include_nested=True, leaves_only=True):
        path = (*prefix, *((key,) if isinstance(key, str) else key))
        value = _tensor(state, path, None, None)
        expected = (*lead, *like.shape)
        if tuple(value.shape) != expected or value.dtype != like.dtype:
            _fail(
                _name(path), f"must be {like.dtype} {list(expected)}, got {value.dtype} {list(value.shape)}"
            )


def _check_data(
    state: TensorDictBase,
    consumes: Segments | Replay,
    obs_dtype: torch.dtype,
    observation_shape: tuple[int, ...],
    reward_dtype: torch.dtype,
) -> None:
    data = _mapping(state, "data")
    if consumes.kind == "segments":
        lead, prefix = (consumes.num_envs, consumes.num_steps), ("data",)
        if tuple(data.batch_size) != lead:
            _fail(
                "data",
                f"must be a segment with batch_size {list(lead)} ([E, T], time last), "
                f"got {list(data.batch_size)}",
            )
        keys = (*TRANSITION_KEYS, "action_log_prob", *consumes.extra)
    else:
        for name in ("size", "position"):
            _tensor(state, ("data", name), torch.int64, ())
        storage = data.get("data", None)
        if not isinstance(storage, TensorDictBase):
            _fail("data.data", "must be the replay buffer's storage (frl.buffers.init)")
        lead, prefix = (consumes.capacity,), ("data", "data")
        if tuple(storage.batch_size[:1]) != lead:
            _fail(
                "data.data",
                f"must hold {consumes.capacity} transitions, got batch_size {list(storage.batch_size)}",
            )
        keys = (*TRANSITION_KEYS, *consumes.extra)
    for key in keys:
        path = (*prefix, *((key,) if isinstance(key, str) else key))
        value = _tensor(state, path, None, None)
        if tuple(value.shape[: len(lead)]) != lead:
            _fail(_name(path), f"must lead with {list(lead)}, got {list(value.shape)}")
        per_step = tuple(value.shape[len(lead) :])
        name = _name(key)
        if name in ("observation", "next.observation"):
            if per_step != observation_shape or value.dtype != obs_dtype:
                _fail(
                    _name(path),
                    f"must be {obs_dtype} {list(observation_shape)} per step, "
                    f"got {value.dtype} {list(per_step)}",
                )
        elif name in ("next.terminated", "next.truncated", "next.done"):
            if value.dtype != torch.bool or per_step != ():
                _fail(_name(path), f"must be one bool per step, got {value.dtype} {list(per_step)}")
        elif name != "action" and (value.dtype != reward_dtype or per_step != ()):
            _fail(_name(path), f"must be one {reward_dtype} per step, got {value.dtype} {list(per_step)}")
