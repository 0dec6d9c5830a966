"""Off-policy learning from the replay buffer in the state (DQN, SAC): one shared unit."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import buffers, random
from frl.algos import train as agent
from frl.algos.spec import Replay
from frl.tree import map_leaves, replace
from frl.update import update_targets

__all__ = ["linear_epsilon", "make_replay_learn", "q_learning_step"]

LearnStep = Callable[
    [TensorDictBase, TensorDictBase, Tensor], tuple[TensorDictBase, TensorDictBase, TensorDict]
]


def make_replay_learn(consumes: Replay, learn_step: LearnStep) -> Callable:
    """The unit: sample ``consumes.batch_size`` transitions, ``learn_step(state, batch, key) ->
    (params, opt_state, metrics)``, keep the result once ``learning_starts`` environment steps
    were taken and count the update.

    Before that the step is computed and discarded and the state is returned unchanged, key
    included: the driver skips the unit in those iterations
    (``Replay.first_learning_iteration``) and the state stays the same pure function of the
    iteration count whether the unit ran or not."""

    def learn(state: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        key, k_sample, k_loss = random.split(state["key"], 3)
        batch = buffers.sample(state["data"], k_sample, consumes.batch_size)
        params, opt_state, metrics = learn_step(state, batch, k_loss)
        learning = state["counters", "env_steps"] >= consumes.learning_starts
        counters = state["counters"]

        def kept(n: Tensor, o: Tensor) -> Tensor:  # the update where learning has started
            return torch.where(learning, n, o)

        new = replace(
            state,
            params=map_leaves(kept, params, state["params"]),
            opt_state=map_leaves(kept, opt_state, state["opt_state"]),
            counters=replace(counters, updates=counters["updates"] + learning.to(torch.int64)),
            key=torch.where(learning, key, state["key"]),
        )
        return new, metrics

    return learn


def linear_epsilon(total_timesteps: int) -> Callable[[TensorDictBase, Tensor], Tensor]:
    """``epsilon(hyperparams, env_steps)``: ``start_e`` decaying linearly to ``end_e`` over
    ``exploration_fraction * total_timesteps`` environment steps, then flat (CleanRL's DQN)."""

    def epsilon(hp: TensorDictBase, env_steps: Tensor) -> Tensor:
        decay_steps = torch.clamp(hp["exploration_fraction"] * total_timesteps, min=1.0)
        frac = torch.clamp(env_steps / decay_steps, max=1.0)
        return hp["start_e"] + frac * (hp["end_e"] - hp["start_e"])

    return epsilon


def q_learning_step(
    loss: Callable[..., tuple[Tensor, TensorDict]],
    optimizer: Any,
    period: int,
    epsilon: Callable[[TensorDictBase, Tensor], Tensor],
) -> LearnStep:
    """A value-learning ``learn_step`` for :func:`make_replay_learn` (DQN, SlateQ): one gradient
    step of ``loss(params, batch, gamma=...)`` on ``params["online"]`` (the state's learning rate
    and gamma), then ``target <- tau online + (1 - tau) target`` every ``period`` updates; the
    metrics add the exploration rate."""

    def learn_step(state: TensorDictBase, batch: TensorDictBase, key: Tensor):
        hp = state["hyperparams"]
        rate = {"learning_rate": hp["learning_rate"]}
        step = agent.gradient_update(
            state, partial(loss, gamma=hp["gamma"]), optimizer, batch, trainable=["online"], hyperparams=rate
        )
        params, opt_state, metrics = step
        due = (state["counters", "updates"] + 1) % period == 0
        tau = torch.where(due, hp["tau"], torch.zeros_like(hp["tau"]))
        metrics["epsilon"] = epsilon(hp, state["counters", "env_steps"])
        return update_targets(params, {"target": "online"}, tau), opt_state, metrics

    return learn_step
