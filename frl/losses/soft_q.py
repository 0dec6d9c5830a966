"""Soft Q-learning (Haarnoja et al. 2017, https://arxiv.org/abs/1702.08165) for discrete
actions: Q-learning towards the entropy-regularised (soft) Bellman target."""

from __future__ import annotations

from collections.abc import Callable

from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl.distributions import select_actions
from frl.losses import _batch as B
from frl.losses.dqn import q_regression
from frl.losses.value_terms import soft_value, td_target

__all__ = ["soft_q_loss"]


def soft_q_loss(
    online_params: TensorDictBase,
    target_params: TensorDictBase,
    batch: TensorDictBase,
    *,
    q_apply: Callable[[TensorDictBase, Tensor], Tensor],
    gamma: float | Tensor,
    alpha: float | Tensor,
    loss: str = "mse",
    huber_delta: float | Tensor = 1.0,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """``mean rho(Q(s, a) - y)`` with the soft target ``y = td_target(r, terminated, V_soft(s'))``.

    ``V_soft(s') = soft_value(Q'(s', .), alpha) = alpha logsumexp(Q'(s', .) / alpha)``; its fixed
    point is the soft-optimal Q-function whose Boltzmann policy ``softmax(Q / alpha)`` maximises
    return plus ``alpha`` times entropy. Layout, ``rho`` and n-step handling as ``dqn_loss``.

    Args:
      online_params, target_params: the online and target Q-networks' params.
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
    if loss not in ("mse", "huber"):
        raise ValueError(f"{owner}: `loss` must be 'mse' or 'huber', got {loss!r}")
    if not isinstance(alpha, Tensor) and alpha <= 0:
        raise ValueError(f"{owner}: `alpha` must be positive, got {alpha}")
    obs, action, next_obs, reward, terminated, steps = B.transition(batch, owner)
    q_sa = select_actions(q_apply(online_params, obs), action, owner)
    B.check_transition(owner, q_sa.shape, batch, reward, terminated, steps)
    next_value = soft_value(q_apply(target_params.detach(), next_obs), alpha)
    target = td_target(reward, terminated, next_value, gamma=gamma, steps=steps)
    return q_regression(q_sa, target, batch, loss, huber_delta)
