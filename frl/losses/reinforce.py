"""REINFORCE (Williams 1992, https://doi.org/10.1007/BF00992696), with an optional learned baseline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl.distributions import Distribution
from frl.losses import _batch as B
from frl.losses.policy_terms import entropy_bonus, policy_gradient_term
from frl.losses.ppo import normalize
from frl.losses.value_terms import value_loss
from frl.tree import assemble

__all__ = ["reinforce_loss"]


def reinforce_loss(
    actor_params: TensorDictBase,
    critic_params: TensorDictBase | None,
    batch: TensorDictBase,
    *,
    policy_apply: Callable[[TensorDictBase, Tensor], Any],
    dist: Distribution,
    value_apply: Callable[[TensorDictBase, Tensor], Tensor] | None = None,
    value_coef: float | Tensor = 0.5,
    normalize_returns: bool = False,
    max_importance_weight: float | Tensor | None = None,
    entropy_coef: float | Tensor = 0.0,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """The score-function policy-gradient loss with an optional state-value baseline.

    ``L = policy_gradient_term(log pi(a|s), G - b(s)) + value_coef value_loss(b(s), G)``, i.e.
    ``-mean(log pi(a|s) sg(G - b(s))) + value_coef mean((b(s) - G)^2) / 2``, where ``G`` are the
    returns (``value_target``, e.g. from ``frl.returns.discounted_returns``) and ``b`` the critic
    (``b = 0`` without one). Its gradient is the Monte-Carlo policy-gradient estimate
    ``-mean(grad log pi(a|s) (G - b(s)))``.

    Off-policy (``max_importance_weight = c``), for data a behaviour policy ``mu`` logged with
    its propensities (``action_log_prob``): each sample's term is weighted by the clipped
    importance ratio ``w = min(pi(a|s) / mu(a|s), c)`` (detached), so the gradient is
    ``-mean(w grad log pi(a|s) (G - b(s)))``, the per-step corrected estimator of Chen et al.
    2019 ("Top-K off-policy correction for a REINFORCE recommender system",
    https://arxiv.org/abs/1812.02353); clipping trades its bias for bounded variance.

    Args:
      actor_params: the policy's params.
      critic_params: the baseline's params, or None for no baseline.
      batch: ``observation``, ``action``, ``value_target [B]`` (returns).
      policy_apply: ``(actor_params, obs) -> distribution params`` for ``dist``.
      dist: the policy's family.
      value_apply: ``(critic_params, obs) -> [B]`` (with ``critic_params``).
      value_coef: weight of the baseline's regression loss.
      normalize_returns: standardise ``G`` within the batch first.
      entropy_coef: weight of the entropy bonus ``entropy_bonus(H(pi(.|s)))`` added to the loss
        (keeps the policy from collapsing, e.g. while learning from logs).
      max_importance_weight: ``c``: learn off-policy from ``action_log_prob`` (the behaviour
        policy's log-probabilities, ``[B]``); None: on-policy.
      key: unused; accepted for a uniform signature.

    Returns:
      ``(loss, metrics)``; metrics ``loss``, ``policy_loss``, ``value_loss``, ``entropy``,
      ``return`` (and ``importance_weight``, the mean clipped ratio, off-policy).
    """
    owner = "reinforce_loss"
    if (critic_params is None) != (value_apply is None):
        raise ValueError(f"{owner}: pass both `critic_params` and `value_apply` for a baseline, or neither")
    obs, action = B.get(batch, B.OBS, owner), B.get(batch, B.ACTION, owner)
    returns = B.get(batch, B.VALUE_TARGET, owner)
    dist_params = policy_apply(actor_params, obs)
    log_prob = dist.log_prob(dist_params, action)
    B.check_per_sample(owner, log_prob.shape, value_target=returns)
    if normalize_returns:
        returns = normalize(returns)
    if value_apply is None:
        advantage = returns
        v_loss = torch.zeros((), dtype=log_prob.dtype, device=log_prob.device)
    else:
        baseline = value_apply(critic_params, obs)
        B.check_output(owner, "value_apply", log_prob.shape, baseline)
        advantage = returns - baseline
        v_loss = value_loss(baseline, returns)
    weight = None
    if max_importance_weight is not None:
        behaviour = B.get(batch, B.LOG_PROB, owner)
        B.check_per_sample(owner, log_prob.shape, action_log_prob=behaviour)
        weight = torch.clamp(torch.exp(log_prob.detach() - behaviour), max=max_importance_weight)
    policy_loss = policy_gradient_term(log_prob, advantage, weight)
    entropy = dist.entropy(dist_params)
    loss = policy_loss + value_coef * v_loss + entropy_coef * entropy_bonus(entropy)
    metrics = assemble(
        {
            "loss": loss.detach(),
            "policy_loss": policy_loss.detach(),
            "value_loss": v_loss.detach(),
            "entropy": entropy.detach().mean(),
            "return": returns.detach().mean(),
            **({} if weight is None else {"importance_weight": weight.mean()}),
        },
    )
    return loss, metrics
