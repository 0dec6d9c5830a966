"""``make_update``: a loss and an optimizer become one pure training step.

::

    update = make_update(partial(dqn_loss, q_apply=net.apply, gamma=0.99), adam(2.5e-4),
                         targets={"target": "online"}, target_period=500)
    state = update.init(params)                   # {"params", "opt_state", "step", "hyperparams"}
    state, metrics = update.step(state, batch, key)

The state is one TensorDict, so ``torch.func.vmap(update.step)`` trains many seeds or members,
``frl.compile`` compiles it, and ``torch.save(state)`` checkpoints it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl._autodiff import grad_with_aux
from frl.optim import GradientTransformation, apply_updates, periodic_update, polyak
from frl.tree import global_norm

__all__ = ["Update", "make_update"]

LossFn = Callable[..., tuple[Tensor, TensorDictBase]]


class Update(NamedTuple):
    """``init(params) -> state``; ``step(state, batch, key) -> (state, metrics)``; both pure."""

    init: Callable[[TensorDictBase], TensorDict]
    step: Callable[[TensorDictBase, TensorDictBase, Tensor | None], tuple[TensorDict, TensorDict]]


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

    One step: ``g = grad loss`` w.r.t. the trainable params; ``optimizer`` updates them; then
    each target network follows its source, ``target <- target + tau (source - target)``
    (Polyak) or ``target <- source`` every ``target_period`` steps; ``step += 1``.

    Args:
      loss_fn: a loss with its apply functions and hyper-parameters bound (``functools.partial``).
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
        keys = list(params.keys())
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

    def step(state: TensorDictBase, batch: TensorDictBase, key: Tensor | None = None):
        params = state["params"]
        chosen = split_keys(params)
        keys = list(params.keys())  # (iterating a TensorDict walks its batch dim, not its keys)
        learnable = params.select(*chosen)

        def objective(learn: TensorDictBase) -> tuple[Tensor, TensorDictBase]:
            merged = TensorDict({k: learn[k] if k in chosen else params[k] for k in keys}, batch_size=[])
            return loss_fn(merged, batch, key=key)

        grads, metrics = grad_with_aux(objective, learnable)
        updates, opt_state = optimizer.update(grads, state["opt_state"], learnable)
        learnable = apply_updates(learnable, updates)
        new_step = state["step"] + 1
        new_params = {k: learnable[k] if k in chosen else params[k] for k in keys}
        for target, source in targets.items():
            if target_period is None:
                new_params[target] = polyak(params[target], learnable[source], state["hyperparams", "tau"])
            else:
                new_params[target] = periodic_update(
                    learnable[source], params[target], new_step, target_period
                )
        new_state = TensorDict(
            {
                "params": TensorDict(new_params, batch_size=[]),
                "opt_state": opt_state,
                "step": new_step,
                "hyperparams": state["hyperparams"],
            },
            batch_size=[],
        )
        metrics = metrics.copy()
        metrics["grad_norm"] = global_norm(grads).detach()
        return new_state, metrics

    return Update(init, step)
