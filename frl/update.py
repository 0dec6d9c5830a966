"""One pure training step from a loss and an optimizer.

Two levels:

* :func:`gradient_step` and :func:`update_targets`: the pieces, over explicit ``params`` and
  ``opt_state`` (what frl's agents use: their hyper-parameters live in the training state and
  are passed in, so a grid of them is vmapped);
* :func:`make_update`: the pieces bound into one ``Update(init, step)`` over a single state
  TensorDict, for a loss whose hyper-parameters are fixed::

    update = make_update(bind(dqn_loss, "online", "target", q_apply=net.apply, gamma=0.99),
                         adam(2.5e-4), targets={"target": "online"}, target_period=500)
    state = update.init(params)                   # {"params", "opt_state", "step", "hyperparams"}
    state, metrics = update.step(state, batch, key)

Either way the state is TensorDicts, so ``torch.func.vmap`` trains many seeds or members,
``frl.compile`` compiles the step, and ``torch.save`` checkpoints it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl._autodiff import grad_with_aux
from frl.optim import GradientTransformation, apply_updates, polyak
from frl.tree import assemble, global_norm

__all__ = ["Update", "gradient_step", "make_update", "update_targets"]

LossFn = Callable[..., tuple[Tensor, TensorDictBase]]


def _keys(params: TensorDictBase) -> list[str]:
    return list(params.keys())  # (iterating a TensorDict walks its batch dim, not its keys)


def gradient_step(
    loss_fn: LossFn,
    optimizer: GradientTransformation,
    params: TensorDictBase,
    opt_state: TensorDictBase,
    batch: Any,
    key: Tensor | None = None,
    *,
    trainable: Sequence[str] | None = None,
    hyperparams: Mapping[str, Any] | None = None,
) -> tuple[TensorDict, TensorDictBase, TensorDict]:
    """``g = grad loss(params)`` w.r.t. the ``trainable`` top-level keys, then one optimizer step.

    Args:
      loss_fn: ``loss_fn(params, batch, key=key) -> (loss, metrics)``.
      optimizer: a ``frl.optim`` transformation over ``params.select(*trainable)``.
      params: every network's params (the untrained ones, e.g. targets, are passed through).
      opt_state: the optimizer's state.
      batch: the loss's data.
      key: the loss's randomness (or None).
      trainable: top-level keys to optimise (default: all).
      hyperparams: values for the optimizer's hyper-parameters kept outside its state (see
        :mod:`frl.optim.base`).

    Returns:
      ``(params, opt_state, metrics)``; metrics are the loss's plus ``grad_norm`` (before any
      clipping).
    """
    keys = _keys(params)
    chosen = keys if trainable is None else list(trainable)
    learnable = params.select(*chosen)

    def objective(learn: TensorDictBase) -> tuple[Tensor, TensorDictBase]:
        merged = assemble({k: learn[k] if k in chosen else params[k] for k in keys})
        return loss_fn(merged, batch, key=key)

    grads, metrics = grad_with_aux(objective, learnable)
    updates, opt_state = optimizer.update(grads, opt_state, learnable, hyperparams)
    learned = apply_updates(learnable, updates)
    new_params = assemble({k: learned[k] if k in chosen else params[k] for k in keys})
    metrics = metrics.copy()
    metrics["grad_norm"] = global_norm(grads).detach()
    return new_params, opt_state, metrics


def update_targets(params: TensorDictBase, targets: Mapping[str, str], rate: float | Tensor) -> TensorDict:
    """Each target network moves towards its source: ``target <- target + rate (source - target)``.

    ``rate`` is Polyak's ``tau`` (every step), or ``tau`` where a periodic update is due and 0
    elsewhere (CleanRL's DQN: ``where(step % period == 0, tau, 0)``); ``rate = 1`` copies exactly.
    Sources are detached (:func:`frl.optim.polyak`).

    Args:
      params: every network's params.
      targets: ``{target_key: source_key}``, e.g. ``{"target": "online"}``.
      rate: float or 0-d tensor in ``[0, 1]``.

    Returns:
      ``params`` with the targets moved.
    """
    new = {k: params[k] for k in _keys(params)}
    for target, source in targets.items():
        new[target] = polyak(params[target], params[source], rate)
    return assemble(new)


class Update(NamedTuple):
    """``init(params) -> state``; ``step(state, batch, key) -> (state, metrics)``; both pure."""

    init: Callable[[TensorDictBase], TensorDict]
    step: Callable[[TensorDictBase, Any, Tensor | None], tuple[TensorDict, TensorDict]]


def make_update(
    loss_fn: LossFn,
    optimizer: GradientTransformation,
    *,
    trainable: Sequence[str] | None = None,
    targets: Mapping[str, str] | None = None,
    tau: float | Tensor | None = None,
    target_period: int | None = None,
) -> Update:
    """Build a pure update step from ``loss_fn(params, batch, key=key) -> (loss, metrics)``.

    One step: :func:`gradient_step` on the trainable params, then :func:`update_targets`
    (Polyak at rate ``tau`` every step, or a copy every ``target_period`` steps); ``step += 1``.

    Args:
      loss_fn: a loss with its apply functions and hyper-parameters bound
        (``frl.losses.bind`` or ``functools.partial``).
      optimizer: a ``frl.optim`` transformation over the trainable params.
      trainable: top-level keys of ``params`` to optimise (default: all but the targets).
      targets: ``{target_key: source_key}``, e.g. ``{"target": "online"}`` for DQN or
        ``{"target_critic": "critic"}`` for SAC.
      tau: Polyak rate (a hyper-parameter in the state: change it without recompiling).
      target_period: hard-copy period in steps (instead of ``tau``).

    Returns:
      :class:`Update`; metrics are the loss's plus ``grad_norm``.
    """
    targets = dict(targets or {})
    if targets and (tau is None) == (target_period is None):
        raise ValueError("make_update: with `targets`, pass exactly one of `tau` or `target_period`")
    if not targets and (tau is not None or target_period is not None):
        raise ValueError("make_update: `tau`/`target_period` need `targets` ({target_key: source_key})")
    if target_period is not None and (not isinstance(target_period, int) or target_period <= 0):
        raise ValueError(f"make_update: `target_period` must be a positive int, got {target_period!r}")
    if tau is not None and not isinstance(tau, Tensor) and not 0.0 <= tau <= 1.0:
        raise ValueError(f"make_update: `tau` must lie in [0, 1], got {tau}")

    def split_keys(params: TensorDictBase) -> list[str]:
        keys = _keys(params)
        for target, source in targets.items():
            if target not in keys or source not in keys:
                raise KeyError(
                    f"make_update: `targets` maps {target!r} <- {source!r}, but params hold {keys}"
                )
        chosen = [k for k in keys if k not in targets] if trainable is None else list(trainable)
        missing = [k for k in chosen if k not in keys]
        if missing or any(k in targets for k in chosen):
            raise KeyError(f"make_update: `trainable` {chosen} must be keys of params {keys} and not targets")
        return chosen

    def init(params: TensorDictBase) -> TensorDict:
        chosen = split_keys(params)
        hyper = {} if tau is None else {"tau": torch.as_tensor(tau, dtype=torch.float64)}
        return TensorDict(
            {
                "params": params,
                "opt_state": optimizer.init(params.select(*chosen)),
                "step": torch.zeros((), dtype=torch.int64),
                "hyperparams": TensorDict(hyper, batch_size=[]),
            },
            batch_size=[],
        )

    def step(state: TensorDictBase, batch: Any, key: Tensor | None = None):
        chosen = split_keys(state["params"])
        params, opt_state, metrics = gradient_step(
            loss_fn, optimizer, state["params"], state["opt_state"], batch, key, trainable=chosen
        )
        new_step = state["step"] + 1
        if targets:
            if target_period is None:
                rate = state["hyperparams", "tau"]
            else:
                rate = (new_step % target_period == 0).to(torch.float64)
            params = update_targets(params, targets, rate)
        new_state = assemble(
            {"params": params, "opt_state": opt_state, "step": new_step, "hyperparams": state["hyperparams"]}
        )
        return new_state, metrics

    return Update(init, step)
