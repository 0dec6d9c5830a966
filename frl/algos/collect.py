"""Collection: one way to store an iteration's data whatever its source, and the pure-env source.

* :func:`init_data` builds ``state["data"]`` for what an agent consumes (a segment or a replay
  buffer);
* :func:`store` writes a batch of transitions ``[E, n]`` (TorchRL's keys and layout: environments
  first, time last) into it and counts the environment steps; every source uses it: the pure
  environment below, TorchRL collectors and worker processes (``frl.driver``), a user's loop;
* :func:`make_collect` is the pure-environment source: a unit that steps the agent's environment
  ``chunk`` times with its behaviour policy, keeps the episode statistics, and stores the chunk
  (single- or multi-agent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torch.utils import _pytree as pytree

from frl import buffers, random
from frl._compile import scan
from frl.algos.networks import clip_action
from frl.algos.spec import EPISODE_KEYS, Replay, Segments, episode_step, example_transition
from frl.envs.base import loops_in_graph
from frl.tree import assemble, replace

__all__ = ["IS_INIT", "MEMORY", "RECURRENT_STATE", "episode_metrics", "init_data", "make_collect", "store"]

ExploreFn = Callable[..., tuple[Tensor, Tensor]]


def init_data(env: Any, consumes: Segments | Replay, like: Tensor | None = None) -> TensorDict:
    """Zeros for ``state["data"]``: a segment ``[E, T]`` (with the agent's ``extra`` float
    entries) or an empty replay buffer of ``capacity`` transitions.

    ``like`` (any tensor of the member, e.g. its key) goes to :func:`frl.buffers.init`, so that
    under ``vmap`` every member owns its replay ring (:func:`store` writes into it in place)."""
    if consumes.kind == "segments":
        one = example_transition(env, log_prob=True, extra=consumes.extra)
        shape = (consumes.num_envs, consumes.num_steps)
        data = one.apply(lambda x: torch.zeros((*shape, *x.shape), dtype=x.dtype))
        data.batch_size = list(shape)
        return data
    return buffers.init(example_transition(env, log_prob=False), consumes.capacity, like=like)


def store(state: TensorDictBase, batch: TensorDictBase, consumes: Segments | Replay) -> TensorDictBase:
    """``state`` with ``batch`` (``[E, n]`` transitions) stored and ``counters.env_steps += E n``.

    Segments: the ``n`` steps are written at ``counters.segment_step`` (which advances by ``n``,
    modulo ``T``); entries of the segment the batch lacks (an agent's ``extra``) are kept.
    Replay: the transitions are appended step by step (``t`` major, then environment), the order
    in which they happened, written into the ring in place (:func:`frl.buffers.add_`: the
    input state's buffer storage is donated; ``clone()`` a state to branch from it).
    """
    E, n = batch.batch_size
    data = state["data"]
    new = replace(state)
    counters = replace(state["counters"])
    if consumes.kind == "segments":
        t = counters["segment_step"]
        index = t + torch.arange(n, device=t.device)
        keys = [k for k in data.keys(include_nested=True, leaves_only=True) if k in batch.keys(True, True)]
        written = data.copy()
        for k in keys:
            written.set(k, torch.index_copy(data.get(k), 1, index, batch.get(k).to(data.get(k).dtype)))
        new["data"] = written
        counters["segment_step"] = (t + n) % consumes.num_steps
    else:
        stored = data["data"]
        in_order = batch.select(*stored.keys(include_nested=True, leaves_only=True)).transpose(0, 1)
        new["data"] = buffers.add_(data, in_order.reshape(E * n))
    counters["env_steps"] = counters["env_steps"] + E * n
    new["counters"] = counters
    return new


def episode_metrics(episodes: Any) -> TensorDict:
    """Mean return and length of the last finished episode of each environment."""
    return assemble(
        {
            "episode_return": episodes["last_return"].mean(),
            "episode_length": episodes["last_length"].to(episodes["last_return"].dtype).mean(),
        }
    )


MEMORY, IS_INIT, RECURRENT_STATE = ("env", "memory"), "is_init", "recurrent_state"
"""Where a recurrent agent's carries live: ``env.memory`` (``{name: [E, S]}``, after the last
step), ``env.is_init`` (bool ``[E]``: the next step starts an episode), and per step in the
segment ``recurrent_state`` (the carries the step was taken from) and ``is_init``."""


def make_collect(env: Any, explore: ExploreFn, consumes: Segments | Replay, memory: bool = False) -> Callable:
    """The unit that takes ``consumes.chunk`` steps of the pure environment with ``explore``.

    It reads ``params``, ``hyperparams``, ``env``, ``key``, ``counters.env_steps`` and
    ``episodes``; :func:`store` writes the chunk. The step loop runs on plain tensors and dicts
    (dynamo traces TensorDict operations slowly) through :func:`frl._compile.scan`: compiled, the
    step is traced once and looped inside the graph, whatever ``chunk``, where the environment is
    ``scannable`` and the agent stores segments (else the loop is unrolled ``chunk`` times).
    A multi-agent environment (:mod:`frl.envs.multi_agent`) hands ``explore`` its observation dict,
    takes ``(action, log_prob)`` per agent ``[E, n]``, and the chunk is stored in TorchRL's group
    layout (``(group, "observation")``, ``(group, "action_mask")``, ``(group, "action")``,
    ``(group, "action_log_prob")``, ``state``, the team's ``next.reward``).

    ``memory``: a recurrent agent's ``explore(params, hyperparams, obs, key, env_steps, carries)
    -> (action, log_prob, carries)``, ``carries`` a dict ``{name: [E, S]}`` read from and written
    back to ``env.memory``; the carries are zeroed before an episode's first step
    (``env.is_init``), and each step stores the carries it was taken from and its ``is_init``
    (:data:`MEMORY`), so that the learner replays the segment exactly.
    """
    # A replay ring is written in place after the loop: the code Inductor's C++ wrapper generated
    # for a vmapped loop followed by that write crashed (segmentation fault, torch 2.13; DQN on
    # CartPole, 4+ seeds), so replay agents unroll their chunk (train_frequency steps).
    chunk = consumes.chunk
    in_graph = loops_in_graph(env) and consumes.kind == "segments"
    multi_agent = getattr(env, "multi_agent", False)

    def collect(state: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        key = state["key"]
        obs = state["env", "observation"]
        obs = obs.to_dict() if multi_agent else obs
        env_state = {k: state["env", "state", k] for k in env.state_names}
        params, hyperparams = state["params"], state["hyperparams"]
        episodes = {k: state["episodes", k] for k in EPISODE_KEYS}
        env_steps = state["counters", "env_steps"]
        if memory:
            carries, is_init = state[MEMORY].to_dict(), state["env", IS_INIT]

        def step(carry: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
            key, obs, env_state, episodes, env_steps, *recurrent = carry
            key, k_act, k_env = random.split(key, 3)
            if memory:
                carries, is_init = recurrent
                carries = {
                    k: torch.where(is_init[:, None], torch.zeros_like(c), c) for k, c in carries.items()
                }
                remembered = (carries, is_init)
                action, log_prob, carries = explore(params, hyperparams, obs, k_act, env_steps, carries)
            else:
                action, log_prob = explore(params, hyperparams, obs, k_act, env_steps)
            next_obs, env_state, reward, terminated, truncated, info = env.step(
                k_env, env_state, clip_action(env, action)
            )
            done = terminated | truncated
            row = (obs, action, log_prob, info["final_observation"], reward, terminated, truncated, done)
            new = (
                key,
                next_obs,
                env_state,
                episode_step(episodes, reward, done),
                env_steps + reward.shape[0],
            )
            if memory:
                return (*new, carries, done), (*row, *remembered)
            return new, row

        init = (key, obs, env_state, episodes, env_steps, *((carries, is_init) if memory else ()))
        (key, obs, env_state, episodes, env_steps, *recurrent), columns = scan(step, init, chunk, in_graph)
        # scan stacks the steps first: [n, E, ...] -> the segment's [E, n, ...]
        columns = pytree.tree_map(lambda x: x.movedim(0, 1), columns)
        batch = _transitions(env, *columns[:8])
        if memory:
            carries, is_init = recurrent
            batch[RECURRENT_STATE], batch[IS_INIT] = columns[8:]
        env_entry = {"observation": obs, "state": assemble(env_state)}
        if memory:
            env_entry[MEMORY[1]], env_entry[IS_INIT] = assemble(carries), is_init
        new = store(state, batch, consumes)
        new = replace(new, key=key, env=assemble(env_entry), episodes=assemble(episodes))
        return new, episode_metrics(episodes)

    return collect


def _transitions(
    env: Any,
    seen: Any,
    action: Tensor,
    log_prob: Tensor,
    final: Any,
    reward: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    done: Tensor,
) -> TensorDict:
    """A chunk ``[E, n]`` of stacked steps as TorchRL transitions (the group layout for a
    multi-agent environment)."""
    flags = {"reward": reward, "terminated": terminated, "truncated": truncated, "done": done}
    log_prob = log_prob.to(env.dtype)
    if getattr(env, "multi_agent", False):
        group = env.group
        seen = {**seen, group: {**seen[group], "action": action, "action_log_prob": log_prob}}
        fields = {**seen, "next": {**final, **flags}}
    else:
        fields = {"observation": seen, "action": action, "action_log_prob": log_prob}
        fields["next"] = {"observation": final, **flags}
    return TensorDict(fields, batch_size=list(reward.shape))
