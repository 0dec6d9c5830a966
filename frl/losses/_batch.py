"""Batch access and checks shared by the losses (TorchRL's transition layout)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import Tensor

NestedKey = str | tuple[str, ...]

OBS = "observation"
ACTION = "action"
NEXT_OBS = ("next", "observation")
REWARD = ("next", "reward")
TERMINATED = ("next", "terminated")
TRUNCATED = ("next", "truncated")
DONE = ("next", "done")
STEPS = "steps_to_next_obs"
WEIGHT = "_weight"
LOG_PROB = "action_log_prob"
ADVANTAGE = "advantage"
VALUE_TARGET = "value_target"
STATE_VALUE = "state_value"

PER_SAMPLE: tuple[NestedKey, ...] = (
    REWARD,
    TERMINATED,
    TRUNCATED,
    DONE,
    LOG_PROB,
    ADVANTAGE,
    VALUE_TARGET,
    STATE_VALUE,
    ("next", STATE_VALUE),
    STEPS,
    WEIGHT,
)
"""Every per-sample scalar a frl loss reads: one value per transition, ``[B]`` (TorchRL keeps
them as ``[B, 1]``; :func:`squeeze_trailing` removes that dim)."""


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


_IN_BATCH = {"reward": REWARD, "terminated": TERMINATED, "done": DONE, "truncated": TRUNCATED}
"""Argument names whose batch key differs (errors name the key the user set)."""


def check_per_sample(owner: str, batch_shape: torch.Size, **tensors: Tensor | None) -> None:
    """Each batch entry must have exactly the batch shape (no trailing singleton, TorchRL's
    ``[B, 1]``, and nothing that would broadcast); ``None`` (an optional entry the batch does
    not have) passes."""
    for name, x in tensors.items():
        if x is None or x.shape == batch_shape:
            continue
        hint = (
            " (TorchRL keeps per-step scalars as [B, 1]: pass the batch through "
            "frl.losses.squeeze_trailing, which squeezes every per-sample key a loss reads)"
            if x.shape == (*batch_shape, 1)
            else ""
        )
        raise ValueError(
            f"{owner}: `{_name(_IN_BATCH.get(name, name))}` must have the batch shape "
            f"{list(batch_shape)}, got {list(x.shape)}{hint}"
        )


def check_transition(
    owner: str,
    batch_shape: torch.Size,
    batch: TensorDictBase,
    reward: Tensor,
    terminated: Tensor,
    steps: Tensor | None,
) -> None:
    """:func:`check_per_sample` on a transition batch's per-sample entries: ``next.reward``,
    ``next.terminated``, and ``steps_to_next_obs`` and ``_weight`` where the batch has them."""
    check_per_sample(
        owner,
        batch_shape,
        reward=reward,
        terminated=terminated,
        steps_to_next_obs=steps,
        _weight=weights(batch),
    )


def check_output(owner: str, fn: str, batch_shape: torch.Size, x: Tensor) -> None:
    """A network output that must be one value per sample: ``fn`` returned ``x``."""
    if x.shape != batch_shape:
        hint = (
            f"; squeeze the last dim inside `{fn}` (e.g. `net(obs).squeeze(-1)`)"
            if x.shape == (*batch_shape, 1)
            else ""
        )
        raise ValueError(
            f"{owner}: `{fn}` must return one value per sample, shape {list(batch_shape)}, "
            f"got {list(x.shape)}{hint}"
        )


def transition(batch: TensorDictBase, owner: str) -> tuple[Tensor, ...]:
    """``(obs, action, next_obs, reward, terminated, steps)`` of a transition batch (``steps``:
    ``steps_to_next_obs`` of n-step batches, else None)."""
    return (
        get(batch, OBS, owner),
        get(batch, ACTION, owner),
        get(batch, NEXT_OBS, owner),
        get(batch, REWARD, owner),
        get(batch, TERMINATED, owner),
        batch.get(STEPS, None),
    )


def weights(batch: TensorDictBase) -> Tensor | None:
    """Importance weights ``_weight`` (prioritized replay), if the batch has them."""
    return batch.get(WEIGHT, None)


def weighted_mean(x: Tensor, w: Tensor | None) -> Tensor:
    """``mean(x)``, or ``mean(w x)`` with per-sample weights."""
    return x.mean() if w is None else (x * w.to(x.dtype)).mean()


def squeeze_trailing(batch: TensorDictBase, keys: Sequence[NestedKey] = PER_SAMPLE) -> TensorDictBase:
    """A shallow copy of a TorchRL batch with the trailing ``1`` of per-sample scalars removed.

    TorchRL stores rewards, flags, log-probabilities, advantages, value targets and state values
    as ``[B, 1]`` (its GAE writes ``advantage``, ``value_target`` and ``state_value`` that way);
    frl's losses take ``[B]``. ``keys`` defaults to every per-sample key a frl loss reads
    (:data:`PER_SAMPLE`); keys that are absent or already squeezed are left alone.
    """
    out = batch.copy()
    for key in keys:
        value = batch.get(key, None)
        if value is not None and value.dim() > batch.batch_dims and value.shape[-1] == 1:
            out.set(key, value.squeeze(-1))
    return out


def bind(loss_fn: Callable[..., Any], /, *keys: str, **kwargs: Any) -> Callable[..., Any]:
    """``f(params, batch, **more) = loss_fn(params[k1], params[k2], ..., batch, **kwargs, **more)``.

    Adapts a loss that takes parameter sub-trees (``ppo_loss(actor_params, critic_params,
    batch, ...)``) to the one-TensorDict form ``frl.update.make_update`` differentiates, with
    the sub-trees named by ``keys``: ``bind(ppo_loss, "actor", "critic", policy_apply=...)``.
    """
    if not keys:
        raise ValueError("bind: name the params keys the loss reads, e.g. bind(ppo_loss, 'actor', 'critic')")

    def bound(params: TensorDictBase, batch: TensorDictBase, **more: Any) -> Any:
        return loss_fn(*(params[k] for k in keys), batch, **{**kwargs, **more})

    return bound
