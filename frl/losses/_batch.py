"""Batch access and checks shared by the losses (TorchRL's transition layout)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from torch import Tensor

NestedKey = str | tuple[str, ...]

OBS = "observation"
ACTION = "action"
NEXT_OBS = ("next", "observation")
REWARD = ("next", "reward")
TERMINATED = ("next", "terminated")
DONE = ("next", "done")
STEPS = "steps_to_next_obs"
WEIGHT = "_weight"
LOG_PROB = "action_log_prob"
ADVANTAGE = "advantage"
VALUE_TARGET = "value_target"
STATE_VALUE = "state_value"


def _name(key: NestedKey) -> str:
    return key if isinstance(key, str) else ".".join(key)


def get(batch: TensorDictBase, key: NestedKey, owner: str) -> Tensor:
    """``batch[key]``, or a KeyError naming the loss, the key and what the batch holds."""
    if not isinstance(batch, TensorDictBase):
        raise TypeError(f"{owner}: `batch` must be a TensorDict, got {type(batch)!r}")
    value = batch.get(key, None)
    if value is None:
        have = sorted(_name(k) for k in batch.keys(include_nested=True, leaves_only=True))
        raise KeyError(f"{owner}: the batch has no `{_name(key)}`; it holds {have}")
    return value


def check_per_sample(owner: str, batch_shape: torch.Size, **tensors: Tensor) -> None:
    """Each tensor must have exactly the batch shape (no trailing singleton, TorchRL's ``[B, 1]``)."""
    for name, x in tensors.items():
        if x.shape != batch_shape:
            hint = (
                " (squeeze TorchRL's trailing dim with frl.losses.squeeze_trailing)"
                if x.shape[-1:] == (1,)
                else ""
            )
            raise ValueError(
                f"{owner}: `{name}` must have the batch shape {list(batch_shape)}, got {list(x.shape)}{hint}"
            )


def weights(batch: TensorDictBase, like: Tensor) -> Tensor | None:
    """Importance weights ``_weight`` (prioritized replay), if the batch has them."""
    w = batch.get(WEIGHT, None)
    return None if w is None else w.to(like.dtype)


def weighted_mean(x: Tensor, w: Tensor | None) -> Tensor:
    return x.mean() if w is None else (x * w).mean()


def squeeze_trailing(
    batch: TensorDictBase, keys: Sequence[NestedKey] = (REWARD, TERMINATED, DONE, ("next", "truncated"))
) -> TensorDictBase:
    """A shallow copy of a TorchRL batch with the trailing ``1`` of per-step scalars removed.

    TorchRL stores ``reward``, ``done``, ``terminated`` and ``truncated`` as ``[B, 1]``; frl's
    losses take ``[B]``. Keys that are absent or already squeezed are left alone.
    """
    out = batch.copy()
    for key in keys:
        value = batch.get(key, None)
        if value is not None and value.dim() > batch.batch_dims and value.shape[-1] == 1:
            out.set(key, value.squeeze(-1))
    return out


def regression(td: Tensor, kind: str, delta: float | Tensor) -> Tensor:
    """Per-sample regression loss of a TD error: ``"mse"``: ``td^2``; ``"huber"``:
    ``td^2 / 2`` for ``|td| <= delta``, else ``delta (|td| - delta / 2)``."""
    if kind == "mse":
        return td * td
    abs_td = torch.abs(td)
    quadratic = torch.minimum(abs_td, torch.as_tensor(delta, dtype=td.dtype, device=td.device))
    return 0.5 * quadratic * quadratic + delta * (abs_td - quadratic)


def check_regression(owner: str, kind: str) -> None:
    if kind not in ("mse", "huber"):
        raise ValueError(f"{owner}: `loss` must be 'mse' or 'huber', got {kind!r}")


def discount(batch: TensorDictBase, gamma: float | Tensor, like: Tensor) -> Tensor | float:
    """``gamma ** steps_to_next_obs`` for n-step batches (TorchRL's MultiStep key), else ``gamma``."""
    steps = batch.get(STEPS, None)
    if steps is None:
        return gamma
    steps = steps.reshape(like.shape).to(like.dtype)
    return torch.as_tensor(gamma, dtype=like.dtype, device=like.device) ** steps
