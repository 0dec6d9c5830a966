"""Ready-made optimizers: chains of :mod:`frl.optim.transforms`, matching ``torch.optim``.

Defaults follow ``torch.optim`` (the parity tests check each against it), so code ported from
torch keeps its behaviour. Every scalar may be a float or a 0-d tensor; the learning rate may
also be a :class:`~frl.optim.schedules.Schedule`.
"""

from __future__ import annotations

from torch import Tensor

from frl.optim.base import GradientTransformation, chain
from frl.optim.schedules import Schedule
from frl.optim.transforms import (
    add_decayed_weights,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    trace,
)

__all__ = ["adam", "adamw", "rmsprop", "sgd"]

LearningRate = float | Tensor | Schedule


def _named(tx: GradientTransformation, name: str) -> GradientTransformation:
    return GradientTransformation(tx.init, tx.update, name)


def sgd(
    learning_rate: LearningRate,
    momentum: float | Tensor | None = None,
    nesterov: bool = False,
    weight_decay: float | Tensor | None = None,
) -> GradientTransformation:
    """Stochastic gradient descent, as ``torch.optim.SGD`` (dampening 0).

    ``g' = g + wd * p``; ``b = momentum * b + g'``; ``p -= lr * (g' + momentum * b if nesterov else b)``.
    Pass ``momentum`` (even ``0.0``) to keep a momentum buffer that a sweep can vary.
    """
    if nesterov and momentum is None:
        raise ValueError("sgd: `nesterov=True` needs a `momentum`")
    parts = []
    if weight_decay is not None:
        parts.append(add_decayed_weights(weight_decay))
    if momentum is not None:
        parts.append(trace(momentum, nesterov))
    parts.append(scale_by_learning_rate(learning_rate))
    return _named(chain(*parts), "sgd")


def adam(
    learning_rate: LearningRate,
    b1: float | Tensor = 0.9,
    b2: float | Tensor = 0.999,
    eps: float | Tensor = 1e-8,
    eps_root: float | Tensor = 0.0,
) -> GradientTransformation:
    """Adam (Kingma & Ba 2015), as ``torch.optim.Adam`` and ``optax.adam``.

    ``p -= lr * m_hat / (sqrt(v_hat + eps_root) + eps)``; see :func:`scale_by_adam`.
    """
    return _named(chain(scale_by_adam(b1, b2, eps, eps_root), scale_by_learning_rate(learning_rate)), "adam")


def adamw(
    learning_rate: LearningRate,
    b1: float | Tensor = 0.9,
    b2: float | Tensor = 0.999,
    eps: float | Tensor = 1e-8,
    weight_decay: float | Tensor = 1e-2,
) -> GradientTransformation:
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019, https://arxiv.org/abs/1711.05101).

    ``p -= lr * (adam_direction + weight_decay * p)``, as ``torch.optim.AdamW`` (whose default
    ``weight_decay=1e-2`` this keeps; optax's default is 1e-4).
    """
    return _named(
        chain(
            scale_by_adam(b1, b2, eps),
            add_decayed_weights(weight_decay),
            scale_by_learning_rate(learning_rate),
        ),
        "adamw",
    )


def rmsprop(
    learning_rate: LearningRate,
    decay: float | Tensor = 0.99,
    eps: float | Tensor = 1e-8,
    centered: bool = False,
    momentum: float | Tensor | None = None,
    nesterov: bool = False,
) -> GradientTransformation:
    """RMSProp, as ``torch.optim.RMSprop`` (``decay`` is torch's ``alpha``).

    ``p -= lr * g / (sqrt(v) + eps)``, with momentum ``b = momentum * b + g / (sqrt(v) + eps)``.
    """
    parts = [scale_by_rms(decay, eps, centered)]
    if momentum is not None:
        parts.append(trace(momentum, nesterov))
    parts.append(scale_by_learning_rate(learning_rate))
    return _named(chain(*parts), "rmsprop")
