"""Soft Q-learning (Haarnoja et al. 2017, https://arxiv.org/abs/1702.08165) for discrete
actions: Q-learning towards the entropy-regularised (soft) Bellman target."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl.losses import _batch as B
from frl.losses.dqn import _q_of_actions

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
    obs, action = B.get(batch, B.OBS, owner), B.get(batch, B.ACTION, owner)
    next_obs = B.get(batch, B.NEXT_OBS, owner)
    reward, terminated = B.get(batch, B.REWARD, owner), B.get(batch, B.TERMINATED, owner)
    q_sa = _q_of_actions(q_apply(params["online"], obs), action, owner)
    B.check_per_sample(owner, q_sa.shape, reward=reward, terminated=terminated)
    next_value = soft_value(q_apply(params["target"].detach(), next_obs), alpha)
    discount = B.discount(batch, gamma, reward)
    target = (reward + discount * (1.0 - terminated.to(reward.dtype)) * next_value).detach()
    td = q_sa - target
    value = B.weighted_mean(B.regression(td, loss, huber_delta), B.weights(batch, td))
    metrics = TensorDict(
        {
            "loss": value.detach(),
            "td_error": td.detach().abs().mean(),
            "q": q_sa.detach().mean(),
            "target": target.mean(),
        },
        batch_size=[],
    )
    return value, metrics
