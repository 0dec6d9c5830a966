"""Policy loss terms (rlax-style primitives): tensor in, scalar loss out, minimised by descent.

Every term is a mean over the samples of a batch ``[...]`` (any shape; all arguments share it
or broadcast to it); ``weights`` (importance or mask weights, same shape) turn the mean into
``mean(w * x)``. Advantages, targets and log-probabilities that must not carry a gradient are
detached inside the term, so each one routes its gradient by construction. Coefficients are
floats or 0-d tensors (a hyper-parameter read from the training state).
"""

from __future__ import annotations

import torch
from torch import Tensor

from frl.losses._batch import weighted_mean as _mean

__all__ = [
    "clipped_surrogate",
    "entropy_bonus",
    "policy_gradient_term",
    "soft_policy_loss",
    "temperature_loss",
]

Scalar = float | Tensor


def policy_gradient_term(log_prob: Tensor, advantage: Tensor, weights: Tensor | None = None) -> Tensor:
    """The score-function (REINFORCE) term ``L = -mean(w log pi(a|s) sg(A))``.

    Its gradient is the policy-gradient estimate ``-mean(w grad log pi(a|s) A)`` (Williams
    1992, https://doi.org/10.1007/BF00992696; ``rlax.policy_gradient_loss``). ``A`` is a return,
    a return minus a baseline, or an advantage estimate; it is detached here.

    Args:
      log_prob: ``log pi(a|s)`` of the taken actions, ``[...]``.
      advantage: ``A``, ``[...]``.
      weights: optional per-sample weights, ``[...]``.

    Returns:
      A 0-d loss.
    """
    return -_mean(log_prob * advantage.detach(), weights)


def clipped_surrogate(
    ratio: Tensor, advantage: Tensor, clip_eps: Scalar, weights: Tensor | None = None
) -> Tensor:
    """PPO's clipped surrogate ``L = -mean(min(r A, clip(r, 1 - eps, 1 + eps) A))``.

    ``r = pi(a|s) / pi_old(a|s)`` (Schulman et al. 2017, https://arxiv.org/abs/1707.06347, eq.
    7; ``rlax.clipped_surrogate_pg_loss``). The minimum makes the objective a pessimistic bound:
    once ``r`` leaves ``[1 - eps, 1 + eps]`` in the direction ``A`` favours, the term stops
    growing and its gradient is zero. ``A`` is detached.

    Args:
      ratio: probability ratios ``r``, ``[...]`` (``exp(log pi - log pi_old)``).
      advantage: ``A``, ``[...]``.
      clip_eps: ``eps`` (float or 0-d tensor).
      weights: optional per-sample weights, ``[...]``.

    Returns:
      A 0-d loss.
    """
    advantage = advantage.detach()
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return -_mean(torch.minimum(ratio * advantage, clipped * advantage), weights)


def entropy_bonus(entropy: Tensor, weights: Tensor | None = None) -> Tensor:
    """``L = -mean(w H(pi(.|s)))``: added with a positive coefficient, it rewards entropy.

    (Williams & Peng 1991; Mnih et al. 2016, https://arxiv.org/abs/1602.01783; ``rlax.entropy_loss``.)

    Args:
      entropy: per-state policy entropies ``H``, ``[...]``.
      weights: optional per-sample weights, ``[...]``.

    Returns:
      A 0-d loss.
    """
    return -_mean(entropy, weights)


def soft_policy_loss(
    log_prob: Tensor,
    q: Tensor,
    alpha: Scalar,
    probs: Tensor | None = None,
    weights: Tensor | None = None,
) -> Tensor:
    """SAC's policy loss ``L = mean(w (alpha log pi(a~|s) - Q(s, a~)))``, ``a~ ~ pi(.|s)``.

    The KL projection of the policy onto ``exp(Q / alpha)`` (Haarnoja et al. 2018,
    https://arxiv.org/abs/1812.05905, eq. 7), with the action reparameterised so the gradient
    reaches the policy through ``a~``. ``alpha`` is detached. A discrete policy passes every
    action's ``log_prob`` and ``q`` (``[..., A]``) and its ``probs``: the expectation
    ``sum_a pi(a|s) (alpha log pi(a|s) - Q(s, a))`` replaces the sample (Christodoulou 2019,
    https://arxiv.org/abs/1910.07207).

    Args:
      log_prob: ``log pi(a~|s)``, ``[...]`` (``[..., A]`` with ``probs``).
      q: ``Q(s, a~)`` from critics that carry no gradient here, same shape.
      alpha: entropy temperature (float or 0-d tensor).
      probs: ``pi(.|s)``, ``[..., A]``, for the discrete expectation.
      weights: optional per-sample weights, ``[...]``.

    Returns:
      A 0-d loss.
    """
    alpha = alpha.detach() if isinstance(alpha, Tensor) else alpha
    per_sample = alpha * log_prob - q
    if probs is not None:
        per_sample = (probs * per_sample).sum(-1)
    return _mean(per_sample, weights)


def temperature_loss(
    log_alpha: Tensor, log_prob: Tensor, target_entropy: Scalar, weights: Tensor | None = None
) -> Tensor:
    """SAC's automatic temperature ``L = -mean(w log_alpha sg(log pi(a|s) + H_target))``.

    Descending it raises ``alpha`` when the policy's entropy ``-log pi`` falls below the target
    and lowers it above (Haarnoja et al. 2018, https://arxiv.org/abs/1812.05905, eq. 18, in
    ``log_alpha`` as CleanRL and TorchRL optimise it). ``log_prob`` is detached.

    Args:
      log_alpha: ``log alpha``, 0-d.
      log_prob: ``log pi(a|s)`` of sampled actions, ``[...]`` (or the negative entropy
        ``sum_a pi log pi`` of a discrete policy).
      target_entropy: ``H_target`` (float or 0-d tensor; usually ``-action_dim``).
      weights: optional per-sample weights, ``[...]``.

    Returns:
      A 0-d loss.
    """
    return -_mean(log_alpha * (log_prob.detach() + target_entropy), weights)
