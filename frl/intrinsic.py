"""Intrinsic rewards and the running statistics they need: RND's, ICM's and count-based bonuses.

Pure functions over tensors and TensorDicts (vmap over seeds, compile, grad). The losses that
train the models behind them are :func:`frl.losses.rnd_loss` and :func:`frl.losses.icm_loss`.

* **Running moments** (:func:`init_moments`, :func:`update_moments`, :func:`normalize_with`):
  the mean and variance of everything seen so far, merged batch by batch (Chan et al. 1979), as
  RND normalises observations and intrinsic returns;
* **RND** (Burda et al. 2019, "Exploration by random network distillation"):
  ``r_i(s') = ||f_hat(s') - f(s')||^2 / 2`` for a fixed random target ``f`` and a predictor
  ``f_hat`` trained to match it (:func:`rnd_reward`), on observations normalised by running
  moments and clipped to ``[-5, 5]``; the rewards are divided by the running standard deviation
  of their discounted sum (:func:`discounted_filter`, RND's ``RewardForwardFilter``), which is
  non-episodic;
* **ICM** (Pathak et al. 2017, "Curiosity-driven exploration by self-supervised prediction"):
  ``r_i = eta ||g_fwd(phi(s), a) - phi(s')||^2 / 2`` (:func:`icm_reward`);
* **counts** (a tabular bonus, Strehl & Littman 2008): ``r_i(s) = beta / sqrt(N(s))``
  (:func:`count_bonus`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl.returns import reverse_linear_scan

__all__ = [
    "count_bonus",
    "discounted_filter",
    "icm_reward",
    "init_moments",
    "normalize_with",
    "rnd_reward",
    "update_moments",
]


def init_moments(shape: tuple[int, ...] = (), dtype: torch.dtype = torch.float32) -> TensorDict:
    """Moments of nothing yet: ``{"count": [], "mean": shape, "var": shape}``, all zeros."""
    zeros = torch.zeros(shape, dtype=dtype)
    return TensorDict(
        {"count": torch.zeros((), dtype=dtype), "mean": zeros, "var": zeros.clone()}, batch_size=[]
    )


def update_moments(moments: TensorDictBase, x: Tensor) -> TensorDict:
    """``moments`` merged with the samples ``x [..., *shape]`` (every leading dim is a sample dim).

    With ``n`` samples of mean ``m_b`` and (biased) variance ``v_b``, ``delta = m_b - mean``,
    ``N = count + n``: ``mean' = mean + delta n / N``, ``var' = (var count + v_b n + delta^2
    count n / N) / N``: after any sequence of updates, the moments of all samples seen together.
    """
    mean, var, count = moments["mean"], moments["var"], moments["count"]
    if tuple(x.shape[x.dim() - mean.dim() :]) != tuple(mean.shape) or x.dim() == mean.dim():
        raise ValueError(
            f"update_moments: `x` must be [..., *{list(mean.shape)}] with at least one sample dim, "
            f"got {list(x.shape)}"
        )
    flat = x.reshape(-1, *mean.shape).to(mean.dtype)
    n = torch.tensor(flat.shape[0], dtype=mean.dtype)
    batch_mean = flat.mean(0)
    batch_var = flat.var(0, correction=0)
    total = count + n
    delta = batch_mean - mean
    new_mean = mean + delta * n / total
    new_var = (var * count + batch_var * n + delta * delta * count * n / total) / total
    return TensorDict({"count": total, "mean": new_mean, "var": new_var}, batch_size=[])


def normalize_with(moments: TensorDictBase, x: Tensor, clip: float | None = 5.0, eps: float = 1e-8) -> Tensor:
    """``(x - mean) / sqrt(var + eps)``, clipped to ``[-clip, clip]`` (RND clips observations at 5)."""
    out = (x - moments["mean"].to(x.dtype)) / torch.sqrt(moments["var"].to(x.dtype) + eps)
    return out if clip is None else out.clamp(-clip, clip)


def discounted_filter(carry: Tensor, rewards: Tensor, gamma: float | Tensor) -> tuple[Tensor, Tensor]:
    """RND's forward filter over time (the last dim): ``f_t = gamma f_{t-1} + r_t`` from
    ``f_{-1} = carry``, never reset at episode ends.

    Args:
      carry: ``[...]``, the filter's value before this segment.
      rewards: ``[..., T]``.
      gamma: the intrinsic discount.

    Returns:
      ``(f [..., T], f_{T-1} [...])``: the running discounted sums, whose standard deviation
      (:func:`update_moments` on ``f``) scales the intrinsic rewards, and the next carry.
    """
    if carry.shape != rewards.shape[:-1]:
        raise ValueError(
            f"discounted_filter: `carry` must be rewards.shape[:-1] = {list(rewards.shape[:-1])}, "
            f"got {list(carry.shape)}"
        )
    steps = rewards.shape[-1]
    g = torch.as_tensor(gamma, dtype=rewards.dtype, device=rewards.device)
    # f_t = sum_{k <= t} gamma^(t - k) r_k + gamma^(t + 1) carry: a log-depth scan (frl.returns)
    # over the reversed sequence, not T sequential steps (cheap to compile)
    within = reverse_linear_scan(g.expand(rewards.shape), rewards.flip(-1)).flip(-1)
    powers = g ** torch.arange(1, steps + 1, dtype=rewards.dtype, device=rewards.device)
    f = within + carry.unsqueeze(-1).to(rewards.dtype) * powers
    return f, f[..., -1]


def rnd_reward(
    predictor_params: TensorDictBase,
    target_params: TensorDictBase,
    observation: Tensor,
    *,
    predictor_apply: Callable[[TensorDictBase, Tensor], Tensor],
    target_apply: Callable[[TensorDictBase, Tensor], Tensor],
) -> Tensor:
    """``||f_hat(o) - f(o)||^2 / 2`` per sample, no gradient.

    Args:
      predictor_params, target_params: the predictor's and the fixed target's params.
      observation: ``[B, *obs]`` (normalised by the caller: :func:`normalize_with`).
      predictor_apply, target_apply: ``(params, obs) -> features [B, K]``.

    Returns:
      ``[B]``.
    """
    with torch.no_grad():
        error = predictor_apply(predictor_params, observation) - target_apply(target_params, observation)
    return (error * error).sum(-1) / 2


def icm_reward(
    params: TensorDictBase,
    observation: Tensor,
    action: Tensor,
    next_observation: Tensor,
    *,
    feature_apply: Callable[[TensorDictBase, Tensor], Tensor],
    forward_apply: Callable[[TensorDictBase, Tensor, Tensor], Tensor],
    eta: float | Tensor = 1.0,
) -> Tensor:
    """``eta ||g_fwd(phi(s), a) - phi(s')||^2 / 2`` per sample, no gradient.

    Args:
      params: ``{"feature", "forward", ...}``: the ICM params (:func:`frl.losses.icm_loss`).
      observation, next_observation: ``[B, *obs]``; action: ``[B]`` int (discrete).
      feature_apply: ``(params["feature"], obs) -> phi [B, K]``.
      forward_apply: ``(params["forward"], phi [B, K], action [B]) -> phi_hat [B, K]``.
      eta: the reward scale.

    Returns:
      ``[B]``.
    """
    with torch.no_grad():
        phi, phi_next = (
            feature_apply(params["feature"], observation),
            feature_apply(params["feature"], next_observation),
        )
        error = forward_apply(params["forward"], phi, action) - phi_next
    return eta * (error * error).sum(-1) / 2


def count_bonus(counts: Tensor, states: Tensor, beta: float | Tensor = 1.0) -> tuple[Tensor, Tensor]:
    """``beta / sqrt(N(s))`` for visits ``states [B]`` (int indices into ``counts [S]``), with the
    visits counted first (so ``N(s) >= 1`` and the bonus is at most ``beta``).

    Returns:
      ``(bonus [B], counts')``.
    """
    if states.dtype.is_floating_point or states.dim() != 1:
        raise ValueError(
            f"count_bonus: `states` must be int indices [B], got {states.dtype} {list(states.shape)}"
        )
    new = counts.index_add(0, states, torch.ones_like(states, dtype=counts.dtype))
    return beta / torch.sqrt(new[states].to(torch.get_default_dtype())), new
