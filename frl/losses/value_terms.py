"""Value loss terms and bootstrapped targets (rlax-style primitives).

Targets are one-step (or n-step) bootstrapped values of transitions: ``reward``, ``terminated``
and the next-state quantities share the batch shape ``[...]`` (per-action inputs have one more
trailing dim ``[..., A]``). Only ``terminated`` zeroes the bootstrap: a truncated transition
bootstraps from its true next observation. Every target is detached, so the regression that
consumes it trains the online estimate only. ``steps`` (TorchRL's ``steps_to_next_obs``, for
n-step transitions) discounts by ``gamma ** steps``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from frl.losses._batch import weighted_mean as _mean

__all__ = [
    "clipped_value_loss",
    "double_q_target",
    "regression_loss",
    "soft_target",
    "soft_value",
    "td_target",
    "value_loss",
]

Scalar = float | Tensor


def _discount(gamma: Scalar, steps: Tensor | None, like: Tensor) -> Scalar | Tensor:
    if steps is None:
        return gamma
    if steps.shape != like.shape:
        raise ValueError(
            f"td_target: `steps` must have the reward's shape {list(like.shape)}, got {list(steps.shape)}"
        )
    return torch.as_tensor(gamma, dtype=like.dtype, device=like.device) ** steps.to(like.dtype)


def td_target(
    reward: Tensor, terminated: Tensor, next_value: Tensor, *, gamma: Scalar, steps: Tensor | None = None
) -> Tensor:
    """The bootstrapped target ``y = r + gamma^n (1 - terminated) V(s')``, detached.

    (Sutton & Barto 2018, eq. 6.2; ``n = steps`` for n-step transitions, else 1.)

    Args:
      reward: ``r``, ``[...]``.
      terminated: bool or 0/1, ``[...]``.
      next_value: ``V(s')`` (any bootstrap: ``max_a Q'``, a soft value, ...), ``[...]``.
      gamma: discount (float or 0-d tensor).
      steps: optional ``n``, ``[...]``.

    Returns:
      ``y``, ``[...]``.
    """
    discount = _discount(gamma, steps, reward)
    return (reward + discount * (1.0 - terminated.to(reward.dtype)) * next_value).detach()


def double_q_target(
    reward: Tensor,
    terminated: Tensor,
    next_q_target: Tensor,
    next_q_online: Tensor,
    *,
    gamma: Scalar,
    steps: Tensor | None = None,
) -> Tensor:
    """Double Q-learning's target ``y = r + gamma^n (1 - terminated) Q'(s', argmax_a Q(s', a))``.

    The online network selects and the target network evaluates (van Hasselt et al. 2016,
    https://arxiv.org/abs/1509.06461; ``rlax.double_q_learning``), which removes most of
    Q-learning's maximisation bias. Detached.

    Args:
      reward, terminated: ``[...]``.
      next_q_target: ``Q'(s', .)``, ``[..., A]``.
      next_q_online: ``Q(s', .)``, ``[..., A]`` (selects only).
      gamma, steps: as :func:`td_target`.

    Returns:
      ``y``, ``[...]``.
    """
    best = torch.argmax(next_q_online.detach(), dim=-1, keepdim=True)
    next_value = torch.gather(next_q_target, -1, best).squeeze(-1)
    return td_target(reward, terminated, next_value, gamma=gamma, steps=steps)


def soft_value(q: Tensor, alpha: Scalar) -> Tensor:
    """The soft state value ``V(s) = alpha log sum_a exp(Q(s, a) / alpha)``: ``[..., A] -> [...]``.

    The soft maximum of soft Q-learning (Haarnoja et al. 2017, https://arxiv.org/abs/1702.08165,
    eq. 3): ``max_a Q`` as ``alpha -> 0``, ``mean_a Q + alpha log A`` as ``alpha -> inf``.
    """
    return alpha * torch.logsumexp(q / alpha, dim=-1)


def soft_target(
    reward: Tensor,
    terminated: Tensor,
    next_q: Tensor,
    next_log_prob: Tensor,
    *,
    alpha: Scalar,
    gamma: Scalar,
    next_probs: Tensor | None = None,
    steps: Tensor | None = None,
) -> Tensor:
    """SAC's soft Bellman target ``y = r + gamma^n (1 - terminated) (Q'(s', a') - alpha log pi(a'|s'))``.

    ``a' ~ pi(.|s')`` (Haarnoja et al. 2018, https://arxiv.org/abs/1812.05905, eq. 3). A discrete
    policy passes every action's ``next_q`` and ``next_log_prob`` (``[..., A]``) with
    ``next_probs``: the next value becomes ``sum_a' pi(a'|s') (Q'(s', a') - alpha log pi(a'|s'))``.
    Detached.

    Args:
      reward, terminated: ``[...]``.
      next_q: ``Q'(s', a')`` (e.g. the minimum over target critics), ``[...]`` or ``[..., A]``.
      next_log_prob: ``log pi(a'|s')``, same shape as ``next_q``.
      alpha: entropy temperature (float or 0-d tensor).
      gamma, steps: as :func:`td_target`.
      next_probs: ``pi(.|s')``, ``[..., A]``, for the discrete expectation.

    Returns:
      ``y``, ``[...]``.
    """
    next_value = next_q - alpha * next_log_prob
    if next_probs is not None:
        next_value = (next_probs * next_value).sum(-1)
    return td_target(reward, terminated, next_value, gamma=gamma, steps=steps)


def value_loss(value: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
    """``L = mean(w (V(s) - y)^2) / 2`` (the target detached).

    Args:
      value: predictions ``[...]``.
      target: ``y``, ``[...]``.
      weights: optional per-sample weights.

    Returns:
      A 0-d loss.
    """
    return 0.5 * _mean((value - target.detach()) ** 2, weights)


def clipped_value_loss(
    value: Tensor, old_value: Tensor, target: Tensor, clip_eps: Scalar, weights: Tensor | None = None
) -> Tensor:
    """PPO's pessimistic clipped value loss (as OpenAI baselines and CleanRL):

    ``L = mean(max((V - y)^2, (V_old + clip(V - V_old, -eps, eps) - y)^2)) / 2``.

    The value moves at most ``eps`` from the value the data was collected with before the
    clipped branch takes over (Schulman et al. 2017's implementation; Andrychowicz et al. 2021,
    https://arxiv.org/abs/2006.05990, found it rarely helps: keep it optional).

    Args:
      value: ``V(s)``, ``[...]``.
      old_value: ``V_old(s)`` at collection time, ``[...]``.
      target: ``y``, ``[...]``.
      clip_eps: ``eps`` (float or 0-d tensor).
      weights: optional per-sample weights.

    Returns:
      A 0-d loss.
    """
    target, old_value = target.detach(), old_value.detach()
    clipped = old_value + torch.clamp(value - old_value, -clip_eps, clip_eps)
    worst = torch.maximum((value - target) ** 2, (clipped - target) ** 2)
    return 0.5 * _mean(worst, weights)


def regression_loss(
    td_error: Tensor, kind: str = "mse", delta: Scalar = 1.0, weights: Tensor | None = None
) -> Tensor:
    """``L = mean(w rho(delta_td))``: ``"mse"``: ``rho(x) = x^2`` (``F.mse_loss``, DQN's);
    ``"huber"``: ``x^2 / 2`` for ``|x| <= delta``, else ``delta (|x| - delta / 2)``
    (``F.huber_loss``; Mnih et al. 2015 clip the error's gradient to 1 this way).

    Args:
      td_error: ``Q(s, a) - y``, ``[...]``.
      kind: ``"mse"`` or ``"huber"``.
      delta: Huber threshold.
      weights: optional per-sample weights (prioritized replay's importance weights).

    Returns:
      A 0-d loss.
    """
    if kind == "mse":
        per_sample = td_error * td_error
    elif kind == "huber":
        abs_td = torch.abs(td_error)
        quadratic = torch.minimum(
            abs_td, torch.as_tensor(delta, dtype=td_error.dtype, device=td_error.device)
        )
        per_sample = 0.5 * quadratic * quadratic + delta * (abs_td - quadratic)
    else:
        raise ValueError(f"regression_loss: `kind` must be 'mse' or 'huber', got {kind!r}")
    return _mean(per_sample, weights)
