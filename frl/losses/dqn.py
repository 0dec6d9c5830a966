"""Deep Q-learning (Mnih et al. 2015, https://www.nature.com/articles/nature14236) and double
DQN (van Hasselt et al. 2016, https://arxiv.org/abs/1509.06461)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl.distributions import select_actions
from frl.losses import _batch as B

__all__ = ["dqn_loss", "dqn_td_error"]

QApply = Callable[[TensorDictBase, Tensor], Tensor]


def bootstrapped_td(
    params: TensorDictBase,
    batch: TensorDictBase,
    *,
    q_apply: QApply,
    gamma: float | Tensor,
    next_value: Callable[[Tensor], Tensor],
    owner: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(Q(s, a) - y, Q(s, a), y)`` with ``y = r + gamma^n (1 - terminated) next_value(s')``.

    ``next_value(next_obs) -> [B]`` evaluates the (detached) bootstrap; ``y`` has no gradient.
    """
    obs, action = B.get(batch, B.OBS, owner), B.get(batch, B.ACTION, owner)
    next_obs = B.get(batch, B.NEXT_OBS, owner)
    reward, terminated = B.get(batch, B.REWARD, owner), B.get(batch, B.TERMINATED, owner)
    q_sa = select_actions(q_apply(params["online"], obs), action, owner)
    B.check_per_sample(owner, q_sa.shape, reward=reward, terminated=terminated)
    discount = B.discount(batch, gamma, reward)
    target = (reward + discount * (1.0 - terminated.to(reward.dtype)) * next_value(next_obs)).detach()
    return q_sa - target, q_sa, target


def regression_loss(
    td: Tensor, q_sa: Tensor, target: Tensor, batch: TensorDictBase, loss: str, huber_delta: float | Tensor
) -> tuple[Tensor, TensorDict]:
    """``mean_i w_i rho(td_i)`` and the Q-learning metrics ``loss``, ``td_error``, ``q``, ``target``."""
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


def dqn_td_error(
    params: TensorDictBase,
    batch: TensorDictBase,
    *,
    q_apply: QApply,
    gamma: float | Tensor,
    double: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample TD errors of Q-learning, ``Q(s, a) - y``.

    ``y = r + gamma^n (1 - terminated) Q_target(s', a*)`` with ``a* = argmax_a Q_target(s', a)``,
    or ``argmax_a Q_online(s', a)`` for double DQN; ``n = steps_to_next_obs`` when the batch
    has it (n-step transitions, TorchRL's ``MultiStep``), else 1. A truncated transition
    bootstraps; only ``terminated`` stops it. ``y`` carries no gradient.

    Args:
      params: ``{"online": ..., "target": ...}`` Q-network params.
      batch: ``observation``, ``action [B]`` (int), ``next.{observation, reward [B], terminated [B]}``.
      q_apply: ``q_apply(net_params, obs) -> [B, A]``.
      gamma: discount.
      double: use double DQN's action selection.

    Returns:
      ``(td_error [B], q [B], target [B])``.
    """
    target_params = params["target"].detach()

    def next_value(next_obs: Tensor) -> Tensor:
        target_q = q_apply(target_params, next_obs)
        if not double:
            return target_q.max(dim=-1).values
        next_action = torch.argmax(q_apply(params["online"].detach(), next_obs), dim=-1)
        return torch.gather(target_q, -1, next_action.unsqueeze(-1)).squeeze(-1)

    return bootstrapped_td(
        params, batch, q_apply=q_apply, gamma=gamma, next_value=next_value, owner="dqn_loss"
    )


def dqn_loss(
    params: TensorDictBase,
    batch: TensorDictBase,
    *,
    q_apply: QApply,
    gamma: float | Tensor,
    double: bool = False,
    loss: str = "mse",
    huber_delta: float | Tensor = 1.0,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """The DQN loss ``mean_i w_i rho(Q(s_i, a_i) - y_i)`` (see :func:`dqn_td_error` for ``y``).

    ``rho`` is the squared error (``loss="mse"``, as ``F.mse_loss``) or the Huber loss with
    threshold ``huber_delta`` (``loss="huber"``; with ``delta = 1`` it is ``F.smooth_l1_loss``).
    ``w`` are prioritized-replay importance weights (``_weight``) when the batch has them.
    Gradients reach ``params["online"]`` only: the target network's params are detached here.

    Args:
      params, batch, q_apply, gamma, double: as :func:`dqn_td_error`.
      loss: ``"mse"`` or ``"huber"``.
      huber_delta: Huber threshold.
      key: unused (DQN's loss needs no noise); accepted for a uniform signature.

    Returns:
      ``(loss, metrics)``; metrics ``loss``, ``td_error`` (mean absolute), ``q``, ``target``.
    """
    B.check_regression("dqn_loss", loss)
    td, q_sa, target = dqn_td_error(params, batch, q_apply=q_apply, gamma=gamma, double=double)
    return regression_loss(td, q_sa, target, batch, loss, huber_delta)
