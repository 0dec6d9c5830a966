"""Cooperative multi-agent losses on TorchRL's multi-agent layout.

A batch ``[B]`` keeps the agents' entries under a group key (``"agents"``) with an agent dim
after the batch dims, as TorchRL's multi-agent environments (VMAS, PettingZoo) write them::

    ("agents", "observation")   [B, n, O]     ("agents", "action")          int [B, n]
    ("agents", "action_mask")   bool [B, n, A] (optional: legal actions)
    "state"                     [B, S]        (the global state, where the environment has one)
    ("next", ...)               the same after the step; ("next", "reward") [B] a team reward

* :func:`mappo_loss`: PPO's clipped objective per agent with a centralised critic (MAPPO, Yu et al.
  2022, https://arxiv.org/abs/2103.01955) or decentralised ones (IPPO, de Witt et al. 2020,
  https://arxiv.org/abs/2011.09533): what the critic reads is :func:`critic_observation`'s
  ``critic_input``.
* :func:`value_decomposition_loss`: Q-learning on a team value mixed from the agents' values, VDN
  (a sum) or QMIX (a monotonic mixer on the global state, :class:`frl.nn.QMixer`).

Whether the agents share parameters is the apply functions' business: a network applied to
``[..., n, O]`` shares its parameters across the agent dim; :class:`frl.nn.PerAgent` gives each
agent its own (params stacked on a leading agent dim, applied with ``vmap``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl.distributions import Distribution, MaskedCategorical, greedy, select_actions
from frl.losses import _batch as B
from frl.losses.ppo import clipped_objective
from frl.losses.value_terms import regression_loss, td_target
from frl.tree import assemble

__all__ = [
    "CRITIC_INPUTS",
    "GROUP",
    "critic_observation",
    "critic_values",
    "mappo_loss",
    "value_decomposition_loss",
]

GROUP = "agents"
"""The default group key (TorchRL's name for a group of homogeneous agents)."""
CRITIC_INPUTS = ("local", "joint", "state", "team")
"""What a critic reads: ``"local"`` its agent's observation (IPPO); ``"joint"`` every agent's
observation and its identity; ``"state"`` the environment's global state and its identity;
``"team"`` every agent's observation, one value for the team (the last three: MAPPO)."""


def critic_observation(kind: str, observation: Tensor, state: Tensor | None = None) -> Tensor:
    """Each agent's critic input ``[..., n, D]`` from the observations ``[..., n, O]``.

    * ``"local"``: ``o_i`` (``D = O``), a decentralised critic;
    * ``"joint"``: ``[o_1, ..., o_n, onehot(i)]`` (``D = n O + n``);
    * ``"state"``: ``[s, onehot(i)]`` (``D = S + n``, ``state [..., S]``), MAPPO's agent-specific
      global state with the agent's identity;
    * ``"team"``: ``[o_1, ..., o_n]`` as one row ``[..., 1, n O]``: a single value of the joint
      observation that every agent shares (TorchRL's centralised ``MultiAgentMLP`` with shared
      params), ``n`` times fewer critic rows than ``"joint"``; :func:`critic_values` gives it to
      the agents.

    The one-hot identity lets a critic shared across the agent dim give each agent its own value
    of the same joint input.
    """
    if kind not in CRITIC_INPUTS:
        raise ValueError(f"critic_observation: `kind` must be one of {CRITIC_INPUTS}, got {kind!r}")
    if observation.dim() < 2:
        raise ValueError(
            "critic_observation: `observation` must be [..., n_agents, obs_dim], got "
            f"{list(observation.shape)}"
        )
    if kind == "local":
        return observation
    if kind == "team":
        return observation.flatten(-2).unsqueeze(-2)
    n = observation.shape[-2]
    batch = observation.shape[:-2]
    if kind == "joint":
        shared = observation.flatten(-2)
    else:
        if state is None:
            raise ValueError(
                "critic_observation: a `state` critic needs the environment's global state (`state` "
                "[..., state_dim]); this environment has none: use critic_input='joint'"
            )
        if state.shape[:-1] != batch:
            raise ValueError(
                f"critic_observation: `state` must be [{', '.join(map(str, batch))}, state_dim] to match "
                f"observations {list(observation.shape)}, got {list(state.shape)}"
            )
        shared = state
    identity = torch.eye(n, dtype=shared.dtype, device=shared.device).expand(*batch, n, n)
    return torch.cat([shared.unsqueeze(-2).expand(*batch, n, shared.shape[-1]), identity], dim=-1)


def critic_values(
    kind: str,
    value_apply: Callable[[TensorDictBase, Tensor], Tensor],
    critic_params: TensorDictBase,
    observation: Tensor,
    state: Tensor | None = None,
) -> Tensor:
    """Each agent's value ``V_i = value_apply(critic_params, c)[..., i]`` of its critic input ``c =``
    :func:`critic_observation` ``(kind, observation, state)``: ``[..., n]``.

    A ``"team"`` critic reads one row, ``[..., 1, n O] -> [..., 1]``, and its value is every
    agent's (``V_i = V(o_1, ..., o_n)``, an expanded view: its gradient is the sum over the agents).

    Args:
      kind: one of :data:`CRITIC_INPUTS`.
      value_apply: ``(critic_params, c [..., m, D]) -> [..., m]`` (``m = 1`` for a team critic,
        ``n`` otherwise).
      critic_params: the critic's params.
      observation: ``[..., n, O]``; state: ``[..., S]`` for a ``"state"`` critic.

    Returns:
      ``[..., n]``.
    """
    value = value_apply(critic_params, critic_observation(kind, observation, state))
    if kind != "team":
        return value
    agents = observation.shape[:-1]
    if value.shape != (*agents[:-1], 1):
        raise ValueError(
            f"critic_values: a team critic's `value_apply` must give one value per sample, shape "
            f"{[*agents[:-1], 1]}, got {list(value.shape)}"
        )
    return value.expand(agents)


def _policy_params(owner: str, dist: Distribution, logits: Any, mask: Tensor | None) -> Any:
    if mask is None:
        if isinstance(dist, MaskedCategorical):
            raise KeyError(f"{owner}: `dist` is MaskedCategorical but the batch has no action mask")
        return logits
    if not isinstance(dist, MaskedCategorical):
        raise TypeError(
            f"{owner}: the batch has action masks; pass dist=frl.distributions.MaskedCategorical() so no "
            f"masked action gets probability (got {type(dist).__name__})"
        )
    return logits, mask


def mappo_loss(
    actor_params: TensorDictBase,
    critic_params: TensorDictBase,
    batch: TensorDictBase,
    *,
    policy_apply: Callable[[TensorDictBase, Tensor], Any],
    value_apply: Callable[[TensorDictBase, Tensor], Tensor],
    dist: Distribution,
    critic_input: str = "state",
    clip_eps: float | Tensor = 0.2,
    value_clip_eps: float | Tensor | None = None,
    entropy_coef: float | Tensor = 0.0,
    value_coef: float | Tensor = 0.5,
    normalize_advantage: bool = True,
    group: str = GROUP,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """Multi-agent PPO: ``L = L_pi + value_coef L_V + entropy_coef L_H`` over every (sample, agent).

    With ``r_i = exp(log pi(a_i|o_i) - log pi_old(a_i|o_i))`` and per-agent advantages ``A_i``
    (normalised over the minibatch and the agents when ``normalize_advantage``):
    ``L_pi = -mean_{b,i} min(r_i A_i, clip(r_i, 1 - eps, 1 + eps) A_i)``,
    ``L_V = mean_{b,i} (V_i(c_i) - y_i)^2 / 2`` (or PPO's clipped value loss with
    ``value_clip_eps``), ``L_H = -mean_{b,i} H(pi(.|o_i))``, where the critic's input ``c_i`` is
    :func:`critic_observation` ``(critic_input, o, state)``: MAPPO with ``"state"``, ``"joint"`` or
    ``"team"`` (one value ``V(c)`` for every agent, :func:`critic_values`), IPPO with ``"local"``.
    The actor always reads only its own observation.

    Args:
      actor_params, critic_params: the policy's and the critic's params.
      batch: ``[B]``; ``(group, k)`` for ``k`` in ``observation [B, n, O]``, ``action [B, n]``,
        ``action_log_prob``, ``advantage``, ``value_target`` (and ``state_value`` with value
        clipping), each ``[B, n]``; ``(group, "action_mask") bool [B, n, A]`` where actions are
        masked; ``state [B, S]`` for a ``"state"`` critic.
      policy_apply: ``(actor_params, obs [B, n, O]) -> logits [B, n, A]`` (or a continuous
        family's parameters).
      value_apply: ``(critic_params, c [B, n, D]) -> [B, n]`` (``[B, 1, D] -> [B, 1]`` for a
        ``"team"`` critic).
      dist: the policy's family; :class:`~frl.distributions.MaskedCategorical` when the batch has
        action masks (its parameters become ``(logits, mask)``).
      critic_input: one of :data:`CRITIC_INPUTS`.
      clip_eps, value_clip_eps, entropy_coef, value_coef: coefficients (floats or 0-d tensors).
      normalize_advantage: standardise advantages over the minibatch and the agents.
      group: the agents' group key.
      key: unused; accepted for a uniform signature.

    Returns:
      ``(loss, metrics)``: ``loss``, ``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl``,
      ``clip_fraction``, ``explained_variance``.
    """
    owner = "mappo_loss"
    obs = B.get(batch, (group, "observation"), owner)
    action = B.get(batch, (group, "action"), owner)
    old_log_prob = B.get(batch, (group, B.LOG_PROB), owner)
    advantage = B.get(batch, (group, B.ADVANTAGE), owner)
    value_target = B.get(batch, (group, B.VALUE_TARGET), owner)
    state = B.get(batch, "state", owner) if critic_input == "state" else None
    mask = batch.get((group, "action_mask"), None)

    dist_params = _policy_params(owner, dist, policy_apply(actor_params, obs), mask)
    log_prob = dist.log_prob(dist_params, action)
    if log_prob.shape != obs.shape[:-1]:
        raise ValueError(
            f"{owner}: `policy_apply` and `dist` must give one log-probability per agent, shape "
            f"{list(obs.shape[:-1])}, got {list(log_prob.shape)}"
        )
    B.check_per_sample(
        owner, log_prob.shape, action_log_prob=old_log_prob, advantage=advantage, value_target=value_target
    )
    value = critic_values(critic_input, value_apply, critic_params, obs, state)
    B.check_output(owner, "value_apply", log_prob.shape, value)
    old_value = None
    if value_clip_eps is not None:
        old_value = B.get(batch, (group, B.STATE_VALUE), owner)
        B.check_per_sample(owner, log_prob.shape, state_value=old_value)
    return clipped_objective(
        log_prob,
        old_log_prob,
        advantage,
        value,
        value_target,
        dist.entropy(dist_params),
        old_value=old_value,
        clip_eps=clip_eps,
        value_clip_eps=value_clip_eps,
        entropy_coef=entropy_coef,
        value_coef=value_coef,
        normalize_advantage=normalize_advantage,
    )


def value_decomposition_loss(
    online_params: TensorDictBase,
    target_params: TensorDictBase,
    batch: TensorDictBase,
    *,
    q_apply: Callable[[TensorDictBase, Tensor], Tensor],
    gamma: float | Tensor,
    mixer_apply: Callable[[TensorDictBase, Tensor, Tensor], Tensor] | None = None,
    double: bool = True,
    loss: str = "mse",
    huber_delta: float | Tensor = 1.0,
    group: str = GROUP,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """Q-learning on a mixed team value: VDN (``mixer_apply=None``) or QMIX.

    ``Q_tot(s, a) = mix(Q_1(o_1, a_1), ..., Q_n(o_n, a_n); s)`` (a sum for VDN) regresses on
    ``y = r + gamma (1 - terminated) mix'(Q'_1(o'_1, a*_1), ...; s')``, each ``a*_i`` the legal
    action maximising ``Q_i(o'_i, .)`` (online network, ``double``; Rashid et al. 2018 use it) or
    ``Q'_i(o'_i, .)``; primes are the target network. A monotonic mixer makes the agents'
    separate argmaxes the team's argmax, so ``y`` is the team's greedy value. ``y`` and the
    target params carry no gradient. ``rho`` is the squared error or Huber loss
    (:func:`~frl.losses.regression_loss`).

    Args:
      online_params, target_params: the agents' and the mixer's params (the same sub-tree is
        handed to ``q_apply`` and ``mixer_apply``, which pick their parts).
      batch: ``[B]``: ``(group, "observation") [B, n, O]``, ``(group, "action") int [B, n]``,
        ``("next", group, "observation")``, ``("next", group, "action_mask")`` where actions are
        masked, ``("next", "reward") [B]`` (the team's), ``("next", "terminated") [B]``, and
        ``state``, ``("next", "state") [B, S]`` with a mixer.
      q_apply: ``(params, obs [B, n, O]) -> [B, n, A]``.
      gamma: discount (float or 0-d tensor).
      mixer_apply: ``(params, agent_q [B, n], state [B, S]) -> [B]``; ``None``: VDN's sum.
      double: select the next actions with the online network.
      loss: ``"mse"`` or ``"huber"``; huber_delta: its threshold.
      group: the agents' group key.
      key: unused; accepted for a uniform signature.

    Returns:
      ``(loss, metrics)``: ``loss``, ``td_error`` (mean absolute), ``q_tot``, ``target``.
    """
    owner = "value_decomposition_loss"
    if loss not in ("mse", "huber"):
        raise ValueError(f"{owner}: `loss` must be 'mse' or 'huber', got {loss!r}")
    obs = B.get(batch, (group, "observation"), owner)
    action = B.get(batch, (group, "action"), owner)
    next_obs = B.get(batch, ("next", group, "observation"), owner)
    if batch.get(B.REWARD, None) is None and batch.get(("next", group, "reward"), None) is not None:
        raise KeyError(
            f"{owner}: value decomposition learns from a team reward `next.reward` [B]; the batch has "
            f"per-agent rewards `next.{group}.reward`: sum or average them into `next.reward`"
        )
    reward, terminated = B.get(batch, B.REWARD, owner), B.get(batch, B.TERMINATED, owner)
    next_mask = batch.get(("next", group, "action_mask"), None)
    if mixer_apply is None:
        state = next_state = None

        def mix(params: TensorDictBase, q: Tensor, s: Tensor | None) -> Tensor:
            return q.sum(-1)

    else:
        state = B.get(batch, "state", owner)
        next_state = B.get(batch, ("next", "state"), owner)
        mix = mixer_apply

    q_sa = select_actions(q_apply(online_params, obs), action, owner)  # [B, n]
    q_tot = mix(online_params, q_sa, state)
    B.check_output(owner, "mixer_apply", q_sa.shape[:-1], q_tot)
    B.check_per_sample(owner, q_tot.shape, reward=reward, terminated=terminated)
    target_params = target_params.detach()
    next_q = q_apply(target_params, next_obs)
    chooser = q_apply(online_params.detach(), next_obs) if double else next_q
    best = greedy(chooser.detach(), next_mask)
    next_tot = mix(target_params, select_actions(next_q, best, owner), next_state)
    target = td_target(reward, terminated, next_tot, gamma=gamma)
    td = q_tot - target
    value = regression_loss(td, loss, huber_delta)
    metrics = assemble(
        {
            "loss": value.detach(),
            "td_error": td.detach().abs().mean(),
            "q_tot": q_tot.detach().mean(),
            "target": target.mean(),
        },
    )
    return value, metrics
