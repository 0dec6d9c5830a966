"""Losses of the models behind intrinsic rewards (:mod:`frl.intrinsic`): RND's predictor and ICM."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import random
from frl.losses import _batch as B
from frl.tree import assemble

__all__ = ["icm_loss", "rnd_loss"]


def rnd_loss(
    predictor_params: TensorDictBase,
    batch: TensorDictBase,
    *,
    predictor_apply: Callable[[TensorDictBase, Tensor], Tensor],
    target_apply: Callable[[TensorDictBase, Tensor], Tensor],
    target_params: TensorDictBase,
    update_proportion: float | Tensor = 1.0,
    observation_key: B.NestedKey = ("next", "observation"),
    mask_key: B.NestedKey | None = None,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """RND's predictor loss (Burda et al. 2019): ``mean_{b in M} mean_k (f_hat(o_b)_k - f(o_b)_k)^2``.

    The target ``f`` is fixed (detached here: it gets no gradient). As in RND, each sample
    enters with probability ``update_proportion`` (a mask ``M`` drawn from ``key``), so the
    predictor learns slower than the number of environments would make it.

    Args:
      predictor_params: the predictor's params (differentiated).
      batch: ``[B]``; ``observation_key`` holds the normalised observations ``[B, *obs]``
        (:func:`frl.intrinsic.normalize_with`).
      predictor_apply, target_apply: ``(params, obs) -> features [B, K]``.
      target_params: the fixed random target's params.
      update_proportion: the share of samples in the loss, in ``(0, 1]``.
      observation_key: where the observations are (RND uses the next observations).
      mask_key: a per-sample 0/1 mask ``[B]`` in the batch, drawn by the caller, used instead of
        ``update_proportion`` and ``key`` (an agent draws it once per iteration).
      key: draws the mask (needed when ``update_proportion < 1`` and no ``mask_key``).

    Returns:
      ``(loss, metrics)``: ``loss``, ``intrinsic_reward`` (the batch's mean ``||error||^2 / 2``).
    """
    owner = "rnd_loss"
    obs = B.get(batch, observation_key, owner)
    target = target_apply(target_params, obs).detach()
    error = predictor_apply(predictor_params, obs) - target
    if error.shape != target.shape or error.dim() != 2:
        raise ValueError(
            f"{owner}: the predictor and target must give features [B, K], got {list(error.shape)}"
        )
    per_sample = (error * error).mean(-1)
    if mask_key is not None:
        mask = B.get(batch, mask_key, owner).to(per_sample.dtype)
        if mask.shape != per_sample.shape:
            raise ValueError(
                f"{owner}: `{B._name(mask_key)}` must be [B] = {list(per_sample.shape)}, "
                f"got {list(mask.shape)}"
            )
        loss = (per_sample * mask).sum() / mask.sum().clamp_min(1.0)
    elif isinstance(update_proportion, float) and update_proportion >= 1.0:
        loss = per_sample.mean()
    else:
        if key is None:
            raise ValueError(f"{owner}: `update_proportion` < 1 draws a mask: pass `key`")
        mask = (random.uniform(key, per_sample.shape) < update_proportion).to(per_sample.dtype)
        loss = (per_sample * mask).sum() / mask.sum().clamp_min(1.0)
    reward = (error.detach() * error.detach()).sum(-1) / 2
    return loss, assemble({"loss": loss.detach(), "intrinsic_reward": reward.mean()})


def icm_loss(
    params: TensorDictBase,
    batch: TensorDictBase,
    *,
    feature_apply: Callable[[TensorDictBase, Tensor], Tensor],
    inverse_apply: Callable[[TensorDictBase, Tensor, Tensor], Tensor],
    forward_apply: Callable[[TensorDictBase, Tensor, Tensor], Tensor],
    beta: float | Tensor = 0.2,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """ICM's loss (Pathak et al. 2017): ``(1 - beta) L_I + beta L_F``.

    With features ``phi = phi(s)``, ``phi' = phi(s')``: the inverse model predicts the action,
    ``L_I = mean_b CE(g_inv(phi, phi'), a)``; the forward model predicts the next features,
    ``L_F = mean_b ||g_fwd(phi, a) - sg(phi')||^2 / 2``. The features learn from the inverse
    loss (and through ``phi`` from the forward one); the forward target ``phi'`` is stopped, so
    the features cannot collapse to make the forward error, the curiosity reward, vanish.

    Args:
      params: ``{"feature", "inverse", "forward"}`` sub-trees.
      batch: ``[B]``: ``observation``, ``("next", "observation")`` ``[B, *obs]``, ``action [B]`` int.
      feature_apply: ``(params["feature"], obs) -> phi [B, K]``.
      inverse_apply: ``(params["inverse"], phi, phi') -> logits [B, A]``.
      forward_apply: ``(params["forward"], phi, action) -> phi_hat [B, K]``.
      beta: the forward loss's weight in ``[0, 1]``.
      key: unused; accepted for a uniform signature.

    Returns:
      ``(loss, metrics)``: ``loss``, ``inverse_loss``, ``forward_loss``, ``inverse_accuracy``.
    """
    owner = "icm_loss"
    obs = B.get(batch, B.OBS, owner)
    next_obs = B.get(batch, B.NEXT_OBS, owner)
    action = B.get(batch, B.ACTION, owner)
    if action.dtype.is_floating_point or action.shape != obs.shape[:1]:
        raise ValueError(
            f"{owner}: `action` must be int indices [B] = {list(obs.shape[:1])}, got {list(action.shape)}"
        )
    for name in ("feature", "inverse", "forward"):
        B.get(params, name, owner)
    phi, phi_next = feature_apply(params["feature"], obs), feature_apply(params["feature"], next_obs)
    logits = inverse_apply(params["inverse"], phi, phi_next)
    inverse = torch.nn.functional.cross_entropy(logits, action)
    error = forward_apply(params["forward"], phi, action) - phi_next.detach()
    forward = ((error * error).sum(-1) / 2).mean()
    loss = (1 - beta) * inverse + beta * forward
    accuracy = (logits.argmax(-1) == action).to(loss.dtype).mean()
    metrics = {"loss": loss, "inverse_loss": inverse, "forward_loss": forward, "inverse_accuracy": accuracy}
    return loss, assemble({k: v.detach() for k, v in metrics.items()})
