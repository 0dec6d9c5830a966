"""Target-network updates: Polyak averaging and periodic copies."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torch import Tensor

from frl.tree import lerp, map_leaves

__all__ = ["periodic_update", "polyak"]


def polyak(target: TensorDictBase, online: TensorDictBase, tau: float | Tensor) -> TensorDictBase:
    """Incremental target update ``target + tau * (online - target)``.

    ``tau = 1`` copies ``online``; DQN-style soft updates use ``tau ~ 0.005``. ``online`` is
    detached: the target never passes gradient back to the online network.

    Args:
      target, online: TensorDicts with the same keys and shapes.
      tau: a float or a 0-d tensor in ``[0, 1]``.

    Returns:
      The new target params.
    """
    if not isinstance(tau, Tensor) and not 0.0 <= tau <= 1.0:
        raise ValueError(f"polyak: `tau` must lie in [0, 1], got {tau}")
    return lerp(target, online.detach(), tau)


def periodic_update(
    online: TensorDictBase, target: TensorDictBase, step: Tensor, period: int | Tensor
) -> TensorDictBase:
    """``online`` (detached) when ``step % period == 0``, else ``target`` (a hard target update).

    Args:
      online, target: TensorDicts with the same keys and shapes.
      step: a 0-d integer tensor (per member under vmap).
      period: the update period.

    Returns:
      The new target params.
    """
    if not isinstance(period, Tensor) and period <= 0:
        raise ValueError(f"periodic_update: `period` must be positive, got {period}")
    copy = (step % period) == 0
    return map_leaves(lambda t, o: torch.where(copy, o.detach(), t), target, online)
