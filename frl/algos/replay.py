"""Off-policy learning from the replay buffer in the state (DQN, SAC): one shared unit."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import buffers, random
from frl.algos.spec import Replay

__all__ = ["make_replay_learn"]

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
        new = state.copy()
        new["params"] = params.apply(lambda n, o: torch.where(learning, n, o), state["params"])
        new["opt_state"] = opt_state.apply(lambda n, o: torch.where(learning, n, o), state["opt_state"])
        counters = state["counters"].copy()
        counters["updates"] = counters["updates"] + learning.to(torch.int64)
        new["counters"] = counters
        new["key"] = torch.where(learning, key, state["key"])
        return new, metrics

    return learn
