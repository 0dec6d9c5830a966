"""Potential-based reward shaping (Ng, Harada & Russell 1999, "Policy invariance under reward
transformations: theory and application to reward shaping").

A shaping reward ``F(s, a, s') = gamma Phi(s') - Phi(s)`` for any potential ``Phi`` over states
leaves every policy's ranking unchanged: ``Q'_pi(s, a) = Q_pi(s, a) - Phi(s)`` for every policy
``pi`` (and so ``Q'* = Q* - Phi``, the same optimal policy), while a dense ``Phi`` (minus the
distance to a goal, say) can make a sparse reward far easier to learn from. Any other bonus can
change what is optimal. Episodic tasks need ``Phi = 0`` on terminal states: an episode that
terminates at ``s'`` is shaped with ``-Phi(s)`` alone (``terminated`` zeroes ``gamma Phi(s')``);
a step cut by a time limit is not terminal and bootstraps from ``Phi`` of its true last state.

* :func:`potential_shaping`: the shaped reward of a batch of steps (a pure tensor function);
* :func:`shape_transitions`: the same over a TorchRL-layout transition TensorDict, keeping the
  raw reward as ``("next", "raw_reward")``, for any loop that stores transitions;
* :func:`shape_mdp`: a tabular MDP's rewards shaped by a potential over its states, for
  :mod:`frl.planning` (where the invariance can be checked exactly).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDictBase
from torch import Tensor

__all__ = ["potential_shaping", "shape_mdp", "shape_transitions"]


def potential_shaping(
    reward: Tensor,
    potential: Tensor,
    next_potential: Tensor,
    terminated: Tensor,
    gamma: float | Tensor,
) -> Tensor:
    """``r + gamma (1 - terminated) Phi(s') - Phi(s)``, elementwise.

    Args:
      reward: ``r [...]``.
      potential: ``Phi(s) [...]`` of the state the step started from.
      next_potential: ``Phi(s') [...]`` of the state it led to (the true last state of an episode
        cut by a time limit, not the reset one).
      terminated: bool ``[...]``: ``s'`` is terminal, whose potential counts as 0.
      gamma: the discount the agent learns with (a float or a tensor broadcastable to ``[...]``).

    Returns:
      The shaped reward ``[...]``, in ``reward``'s dtype.
    """
    for name, x in (("potential", potential), ("next_potential", next_potential), ("terminated", terminated)):
        if not isinstance(x, Tensor) or x.shape != reward.shape:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"potential_shaping: `{name}` must have the reward's shape {list(reward.shape)}, got {got}"
            )
    if terminated.dtype != torch.bool:
        raise ValueError(f"potential_shaping: `terminated` must be bool, got {terminated.dtype}")
    live = (~terminated).to(reward.dtype)
    return reward + gamma * live * next_potential.to(reward.dtype) - potential.to(reward.dtype)


def shape_transitions(
    batch: TensorDictBase,
    potential: Callable[[Tensor], Tensor],
    gamma: float | Tensor,
    *,
    observation_key: str = "observation",
) -> TensorDictBase:
    """A transition batch with ``("next", "reward")`` shaped by ``potential`` (the raw reward kept
    as ``("next", "raw_reward")``).

    Args:
      batch: TorchRL's layout, any batch dims ``[...]``: ``observation``, ``("next",
        "observation")``, ``("next", "reward") [...]`` and ``("next", "terminated") [...]``.
      potential: ``Phi(obs [..., *obs_shape]) -> [...]``, a pure function of the observation.
      gamma: the discount the agent learns with.
      observation_key: where the observation lives (and, under ``"next"``, the next one).

    Returns:
      A shallow copy of ``batch`` with the shaped reward.
    """
    reward = batch.get(("next", "reward"))
    terminated = batch.get(("next", "terminated"))
    if terminated.shape != reward.shape:
        terminated = terminated.reshape(reward.shape)
    shaped = potential_shaping(
        reward,
        potential(batch.get(observation_key)),
        potential(batch.get(("next", observation_key))),
        terminated,
        gamma,
    )
    out = batch.copy()
    nxt = out["next"].copy()
    nxt.set("raw_reward", reward)
    nxt.set("reward", shaped)
    out.set("next", nxt)
    return out


def shape_mdp(mdp: TensorDictBase, potential: Tensor) -> TensorDictBase:
    """``mdp`` with ``R'(s, a, s') = R(s, a, s') + gamma Phi(s') (1 - terminal(s')) - Phi(s)``.

    Args:
      mdp: an MDP TensorDict (:mod:`frl.planning.mdp`), batch dims ``[...]``.
      potential: ``Phi [..., S]``, one value per state (its values on terminal states are unused).

    Returns:
      A copy of ``mdp`` with shaped ``rewards``: its optimal policy is ``mdp``'s and
      ``Q'* = Q* - Phi`` on every non-terminal state.
    """
    rewards, terminal, gamma = mdp["rewards"], mdp["terminal"], mdp["gamma"]
    if potential.shape != terminal.shape:
        raise ValueError(
            f"shape_mdp: `potential` must be [..., S] = {list(terminal.shape)}, got {list(potential.shape)}"
        )
    phi = potential.to(rewards.dtype)
    after = (phi * (~terminal).to(rewards.dtype))[..., None, None, :]  # Phi(s'), 0 where terminal
    g = gamma.to(rewards.dtype)[..., None, None, None]
    out = mdp.copy()
    out["rewards"] = rewards + g * after - phi[..., :, None, None]
    return out
