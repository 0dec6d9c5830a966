"""Between frl's pure buffer state and TorchRL's ``ReplayBuffer``, both ways.

::

    rb = buffers.to_torchrl(state)                             # LazyTensorStorage, same capacity
    rb = buffers.to_torchrl(state, storage="memmap", scratch_dir=path)   # larger than memory
    state = buffers.from_torchrl(rb)                           # oldest first, priorities kept
    batch = buffers.torchrl_batch(rb.sample())                 # ready for frl.losses

Either side can feed frl's updates: a TorchRL sample goes through :func:`torchrl_batch` (which
squeezes TorchRL's trailing ``1`` off per-step scalars and names the importance weights
``_weight``), a pure state through :func:`frl.buffers.sample`.

Prioritized buffers map to a sampler with TorchRL's proportional semantics: TorchRL's own
``PrioritizedSampler`` when its C++ segment trees load, else :class:`ProportionalSampler`, a
TorchRL ``Sampler`` with the same parameters, priorities, weights and ``update_priority`` API
(TorchRL 0.14.1's wheel does not load its C++ extension against torch 2.13: ``undefined
symbol ... torch::autograd::_wrap_outputs``, and its ``PrioritizedSampler`` then refuses to
build).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import Tensor
from torchrl.data import (
    LazyMemmapStorage,
    LazyTensorStorage,
    PrioritizedSampler,
    RandomSampler,
    TensorDictReplayBuffer,
)
from torchrl.data.replay_buffers.samplers import Sampler

from frl.buffers.ring import add, capacity, init, is_prioritized, stored, update_priorities
from frl.losses import squeeze_trailing

__all__ = ["ProportionalSampler", "from_torchrl", "to_torchrl", "torchrl_batch", "torchrl_prioritized"]


class ProportionalSampler(Sampler):
    """Proportional prioritized sampling with TorchRL's ``PrioritizedSampler`` semantics.

    Stored priority ``q_i = (p_i + eps)^alpha``; ``P(i) = q_i / sum q``; weights
    ``(q_i / min q)^-beta`` returned as ``priority_weight``; new items get the largest raw
    priority seen (1 at first). Priorities live in one dense tensor (``O(capacity)`` per draw).
    """

    def __init__(self, max_capacity: int, alpha: float, beta: float, eps: float = 1e-8) -> None:
        if alpha < 0 or beta < 0:
            raise ValueError(f"ProportionalSampler: alpha and beta must be >= 0, got {alpha}, {beta}")
        self._max_capacity, self._alpha, self._beta, self._eps = max_capacity, alpha, beta, eps
        self._priority = torch.zeros(max_capacity, dtype=torch.float64)
        self._max_priority = 1.0

    @property
    def alpha(self) -> float:
        return self._alpha

    @property
    def beta(self) -> float:
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        self._beta = value

    def default_priority(self) -> float:
        return self._max_priority

    def _set(self, index: Tensor, raw: Tensor) -> None:
        self._priority[index] = (raw.double() + self._eps) ** self._alpha

    def add(self, index: int) -> None:
        self._set(torch.as_tensor([index]), torch.tensor([self._max_priority]))

    def extend(self, index: Tensor) -> None:
        index = torch.as_tensor(index).reshape(-1)
        self._set(index, torch.full(index.shape, self._max_priority))

    def update_priority(self, index: Any, priority: Any, *, storage: Any = None) -> None:
        index = torch.as_tensor(index).reshape(-1)
        priority = torch.as_tensor(priority, dtype=torch.float64).detach().reshape(-1).expand(index.shape)
        self._max_priority = max(self._max_priority, float(priority.max()))
        self._set(index, priority)

    def mark_update(self, index: Any, *, storage: Any = None) -> None:
        self.update_priority(index, self.default_priority())

    def sample(self, storage: Any, batch_size: int) -> tuple[Tensor, dict[str, Tensor]]:
        n = len(storage)
        if n == 0:
            raise RuntimeError("ProportionalSampler: cannot sample from an empty storage")
        q = self._priority[:n]
        mass = torch.rand(batch_size, dtype=torch.float64) * q.sum()
        index = torch.searchsorted(torch.cumsum(q, 0), mass, right=True).clamp_max(n - 1)
        weight = (q[index] / q.min()) ** -self._beta
        return index, {"priority_weight": weight.float()}

    def priorities(self, n: int) -> Tensor:
        """Raw priorities ``p_i`` of the first ``n`` storage slots."""
        q = self._priority[:n]
        return ((q ** (1.0 / self._alpha)) - self._eps).clamp_min(0) if self._alpha > 0 else q * 0 + 1

    def _empty(self) -> None:
        self._priority.zero_()
        self._max_priority = 1.0

    def state_dict(self) -> dict[str, Any]:
        return {"priority": self._priority.clone(), "max_priority": self._max_priority}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._priority = state_dict["priority"].clone()
        self._max_priority = state_dict["max_priority"]

    def dumps(self, path: Any) -> None:
        torch.save(self.state_dict(), Path(path) / "sampler.pt")

    def loads(self, path: Any) -> None:
        self.load_state_dict(torch.load(Path(path) / "sampler.pt"))


def torchrl_prioritized(max_capacity: int, alpha: float, beta: float, eps: float = 1e-8) -> Sampler:
    """TorchRL's ``PrioritizedSampler`` if its C++ extension loads, else :class:`ProportionalSampler`."""
    try:
        return PrioritizedSampler(max_capacity, alpha=alpha, beta=beta, eps=eps)
    except RuntimeError:
        return ProportionalSampler(max_capacity, alpha=alpha, beta=beta, eps=eps)


def to_torchrl(
    state: TensorDictBase,
    *,
    storage: str = "tensor",
    scratch_dir: str | Path | None = None,
    batch_size: int | None = None,
    beta: float = 0.4,
) -> TensorDictReplayBuffer:
    """A TorchRL ``TensorDictReplayBuffer`` holding ``state``'s transitions, oldest first.

    Args:
      state: an frl buffer (:func:`frl.buffers.init`).
      storage: ``"tensor"`` (``LazyTensorStorage``, in memory) or ``"memmap"``
        (``LazyMemmapStorage`` in ``scratch_dir``: buffers larger than memory).
      scratch_dir: where memory-mapped storage lives (default: a temporary directory).
      batch_size: the buffer's default sample size.
      beta: importance-weight exponent of a prioritized buffer's sampler.

    Same capacity; a prioritized state gets a proportional sampler with its ``alpha``/``eps``
    and every transition's priority.
    """
    cap = capacity(state)
    if storage == "tensor":
        store: Any = LazyTensorStorage(cap)
    elif storage == "memmap":
        store = LazyMemmapStorage(cap, scratch_dir=None if scratch_dir is None else str(scratch_dir))
    else:
        raise ValueError(f"to_torchrl: `storage` must be 'tensor' or 'memmap', got {storage!r}")
    data = stored(state)
    prioritized = is_prioritized(state)
    if prioritized:
        sampler = torchrl_prioritized(cap, float(state["alpha"]), beta, float(state["eps"]))
    else:
        sampler = RandomSampler()
    rb = TensorDictReplayBuffer(storage=store, sampler=sampler, batch_size=batch_size)
    if data.batch_size[0]:
        priority = data.pop("priority") if prioritized else None
        index = rb.extend(data)
        if prioritized:
            rb.update_priority(index, priority)
    return rb


def from_torchrl(
    rb: TensorDictReplayBuffer, *, capacity: int | None = None, prioritized: bool | None = None
) -> TensorDictBase:
    """An frl buffer state holding ``rb``'s transitions in insertion order.

    Args:
      rb: a TorchRL replay buffer over TensorDicts (any storage).
      capacity: the new buffer's capacity (default: ``rb``'s storage size).
      prioritized: keep priorities (default: whether ``rb``'s sampler is proportional).

    TorchRL's bookkeeping ``index`` key is dropped and trailing ``1`` dims of per-step scalars
    are squeezed (frl's layout).
    """
    size = len(rb)
    cap = capacity or rb.storage.max_size
    sampler = rb.sampler
    proportional = isinstance(sampler, (PrioritizedSampler, ProportionalSampler))
    prioritized = proportional if prioritized is None else prioritized
    if size == 0:
        raise ValueError("from_torchrl: the replay buffer is empty (an example transition is needed)")
    cursor = int(rb.writer.state_dict()["_cursor"])
    full = size == rb.storage.max_size
    order = (cursor + torch.arange(size)) % size if full else torch.arange(size)
    data = squeeze_trailing(rb.storage[order].exclude("index"))
    alpha = float(sampler.alpha) if proportional else 0.6
    eps = float(getattr(sampler, "_eps", 1e-8))
    state = init(data[0].clone(), cap, prioritized=prioritized, alpha=alpha, eps=eps)
    keep = data[-cap:] if size > cap else data
    state = add(state, keep)
    if prioritized and proportional:
        raw = _raw_priorities(sampler, rb.storage.max_size)[order][-keep.batch_size[0] :]
        slots = torch.arange(keep.batch_size[0])
        state = update_priorities(state, slots, raw.float())
        state["max_priority"] = torch.tensor(float(sampler.default_priority()), dtype=torch.float32)
    return state


def _raw_priorities(sampler: Sampler, n: int) -> Tensor:
    if isinstance(sampler, ProportionalSampler):
        return sampler.priorities(n)
    q = torch.as_tensor([sampler._sum_tree[i] for i in range(n)], dtype=torch.float64)
    return (q ** (1.0 / sampler.alpha) - sampler._eps).clamp_min(0) if sampler.alpha > 0 else torch.ones(n)


def torchrl_batch(sample: TensorDictBase) -> TensorDictBase:
    """A TorchRL replay-buffer sample in frl's layout: per-step scalars ``[B]`` (no trailing
    ``1``), importance weights (``priority_weight``) as ``_weight``."""
    out = squeeze_trailing(sample)
    weight = out.get("priority_weight", None)
    if weight is not None:
        out = out.exclude("priority_weight")
        out["_weight"] = weight.reshape(out.batch_size)
    return out
