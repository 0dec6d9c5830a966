"""Deep Q-learning (Mnih et al. 2015, https://www.nature.com/articles/nature14236) and double
DQN (van Hasselt et al. 2016, https://arxiv.org/abs/1509.06461)."""

from __future__ import annotations

from collections.abc import Callable

from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl.distributions import select_actions
from frl.losses import _batch as B
from frl.losses.value_terms import double_q_target, regression_loss, td_target
from frl.tree import assemble

__all__ = ["dqn_loss", "dqn_td_error", "q_regression"]

QApply = Callable[[TensorDictBase, Tensor], Tensor]


def q_regression(
    q_sa: Tensor, target: Tensor, batch: TensorDictBase, kind: str, huber_delta: float | Tensor
) -> tuple[Tensor, TensorDict]:
    """``regression_loss(Q(s, a) - y)`` (prioritized-replay weights from the batch) and the
    Q-learning metrics ``loss``, ``td_error`` (mean absolute), ``q``, ``target``."""
    td = q_sa - target
    value = regression_loss(td, kind, huber_delta, B.weights(batch))
    metrics = assemble(
        {
            "loss": value.detach(),
            "td_error": td.detach().abs().mean(),
            "q": q_sa.detach().mean(),
            "target": target.mean(),
        },
    )
    return value, metrics


def dqn_td_error(
    online_params: TensorDictBase,
    target_params: TensorDictBase,
    batch: TensorDictBase,
    *,
    q_apply: QApply,
    gamma: float | Tensor,
    double: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample TD errors of Q-learning, ``Q(s, a) - y``.

    ``y = td_target(r, terminated, max_a Q'(s', a))``, or for double DQN
    ``double_q_target(r, terminated, Q'(s', .), Q(s', .))``; ``gamma^n`` with ``n =
    steps_to_next_obs`` when the batch has it (n-step transitions, TorchRL's ``MultiStep``). A
    truncated transition bootstraps; only ``terminated`` stops it. ``y`` carries no gradient, and
    the target network's params are detached: gradients reach ``online_params`` only.

    Args:
      online_params: the online Q-network's params.
      target_params: the target Q-network's params.
      batch: ``observation``, ``action [B]`` (int), ``next.{observation, reward [B], terminated [B]}``.
      q_apply: ``q_apply(net_params, obs) -> [B, A]``.
      gamma: discount (float or 0-d tensor).
      double: use double DQN's action selection.

    Returns:
      ``(td_error [B], q [B], target [B])``.
    """
    owner = "dqn_loss"
    obs, action, next_obs, reward, terminated, steps = B.transition(batch, owner)
    q_sa = select_actions(q_apply(online_params, obs), action, owner)
    B.check_transition(owner, q_sa.shape, batch, reward, terminated, steps)
    next_q = q_apply(target_params.detach(), next_obs)
    if double:
        next_online = q_apply(online_params.detach(), next_obs)
        target = double_q_target(reward, terminated, next_q, next_online, gamma=gamma, steps=steps)
    else:
        target = td_target(reward, terminated, next_q.max(dim=-1).values, gamma=gamma, steps=steps)
    return q_sa - target, q_sa, target


def dqn_loss(
    online_params: TensorDictBase,
    target_params: TensorDictBase,
    batch: TensorDictBase,
    *,
    gamma: float | Tensor,
    q_apply: QApply,
    loss: str = "mse",
    double: bool = False,
    huber_delta: float | Tensor = 1.0,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """The DQN loss ``mean_i w_i rho(Q(s_i, a_i) - y_i)`` (see :func:`dqn_td_error` for ``y``).

    ``rho`` is the squared error (``loss="mse"``, as ``F.mse_loss``) or the Huber loss with
    threshold ``huber_delta`` (``loss="huber"``; with ``delta = 1`` it is ``F.smooth_l1_loss``):
    :func:`~frl.losses.regression_loss`. ``w`` are prioritized-replay importance weights
    (``_weight``) when the batch has them.

    Args:
      online_params, target_params, batch, q_apply, gamma, double: as :func:`dqn_td_error`.
      loss: ``"mse"`` or ``"huber"``.
      huber_delta: Huber threshold.
      key: unused (DQN's loss needs no noise); accepted for a uniform signature.

    Returns:
      ``(loss, metrics)``; metrics ``loss``, ``td_error`` (mean absolute), ``q``, ``target``.
    """
    if loss not in ("mse", "huber"):
        raise ValueError(f"dqn_loss: `loss` must be 'mse' or 'huber', got {loss!r}")
    _, q_sa, target = dqn_td_error(
        online_params, target_params, batch, q_apply=q_apply, gamma=gamma, double=double
    )
    return q_regression(q_sa, target, batch, loss, huber_delta)
