"""Soft Q-learning (Haarnoja et al. 2017, https://arxiv.org/abs/1702.08165) for discrete
actions: Q-learning towards the entropy-regularised (soft) Bellman target."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl.losses import _batch as B
from frl.losses.dqn import bootstrapped_td, regression_loss

__all__ = ["soft_q_loss", "soft_value"]


def soft_value(q: Tensor, alpha: float | Tensor) -> Tensor:
    """``V(s) = alpha log sum_a exp(Q(s, a) / alpha)``: ``[..., A] -> [...]``.

    The soft maximum: ``max_a Q`` as ``alpha -> 0``, ``mean_a Q + alpha log A`` as ``alpha -> inf``.
    """
    return alpha * torch.logsumexp(q / alpha, dim=-1)


def soft_q_loss(
    params: TensorDictBase,
    batch: TensorDictBase,
    *,
    q_apply: Callable[[TensorDictBase, Tensor], Tensor],
    gamma: float | Tensor,
    alpha: float | Tensor,
    loss: str = "mse",
    huber_delta: float | Tensor = 1.0,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """``mean rho(Q(s, a) - y)`` with the soft target ``y = r + gamma^n (1 - terminated) V_soft(s')``.

    ``V_soft(s') = alpha logsumexp(Q_target(s', .) / alpha)`` (see :func:`soft_value`); its fixed
    point is the soft-optimal Q-function whose Boltzmann policy ``softmax(Q / alpha)`` maximises
    return plus ``alpha`` times entropy. Layout, ``rho`` and n-step handling as ``dqn_loss``.

    Args:
      params: ``{"online": ..., "target": ...}``.
      batch: as ``dqn_loss``.
      q_apply: ``(net_params, obs) -> [B, A]``.
      gamma: discount.
      alpha: temperature (> 0).
      loss, huber_delta: as ``dqn_loss``.
      key: unused; accepted for a uniform signature.

    Returns:
      ``(loss, metrics)``; metrics ``loss``, ``td_error``, ``q``, ``target``.
    """
    owner = "soft_q_loss"
    B.check_regression(owner, loss)
    if not isinstance(alpha, Tensor) and alpha <= 0:
        raise ValueError(f"{owner}: `alpha` must be positive, got {alpha}")
    target_params = params["target"].detach()
    td, q_sa, target = bootstrapped_td(
        params,
        batch,
        q_apply=q_apply,
        gamma=gamma,
        next_value=lambda next_obs: soft_value(q_apply(target_params, next_obs), alpha),
        owner=owner,
    )
    return regression_loss(td, q_sa, target, batch, loss, huber_delta)
