"""A pure replay buffer: a ring of transitions in a TensorDict state.

::

    state = buffers.init(example_transition, capacity)      # example: one transition, no batch dim
    state = buffers.add(state, batch)                        # batch: [B] transitions
    sample = buffers.sample(state, key, batch_size)          # uniform over the stored ones

Every function is pure (``add`` returns a new state; the ring is written with out-of-place
``index_copy``), so a buffer per seed lives inside a vmapped, compiled training state.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import random

__all__ = ["add", "init", "sample"]


def init(example: TensorDictBase, capacity: int) -> TensorDict:
    """An empty buffer for transitions shaped like ``example`` (one transition, ``batch_size []``).

    Returns:
      ``{"data": [capacity] zeros like example, "position": 0, "size": 0}``.
    """
    if not isinstance(capacity, int) or capacity <= 0:
        raise ValueError(f"buffers.init: `capacity` must be a positive int, got {capacity!r}")
    if example.batch_dims != 0:
        raise ValueError(
            f"buffers.init: `example` must be one transition (batch_size []), got {list(example.batch_size)}"
        )
    data = example.apply(lambda x: torch.zeros((capacity, *x.shape), dtype=x.dtype, device=x.device))
    data.batch_size = [capacity]
    zero = torch.zeros((), dtype=torch.int64, device=data.device)
    return TensorDict({"data": data, "position": zero, "size": zero.clone()}, batch_size=[])


def add(state: TensorDictBase, batch: TensorDictBase) -> TensorDict:
    """Append ``batch`` ([B] transitions), overwriting the oldest once full."""
    data = state["data"]
    capacity = data.batch_size[0]
    n = batch.batch_size[0] if batch.batch_dims else 1
    if batch.batch_dims != 1 or n > capacity:
        raise ValueError(
            f"buffers.add: `batch` must have one batch dim of at most {capacity}, "
            f"got {list(batch.batch_size)}"
        )
    index = (state["position"] + torch.arange(n, device=state["position"].device)) % capacity
    new_data = data.apply(lambda buf, x: torch.index_copy(buf, 0, index, x.to(buf.dtype)), batch)
    return TensorDict(
        {
            "data": new_data,
            "position": (state["position"] + n) % capacity,
            "size": torch.clamp(state["size"] + n, max=capacity),
        },
        batch_size=[],
    )


def sample(state: TensorDictBase, key: Tensor, batch_size: int) -> TensorDictBase:
    """``batch_size`` transitions drawn uniformly, with replacement, from the stored ones.

    The buffer must hold at least one transition (an empty buffer returns zeros).
    """
    size = torch.clamp(state["size"], min=1)
    index = random.randint(key, (batch_size,), 0, size)
    return state["data"].apply(lambda buf: torch.index_select(buf, 0, index), batch_size=[batch_size])
