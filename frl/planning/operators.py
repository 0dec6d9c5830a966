"""Bellman operators, policy evaluation, value and policy iteration, soft value iteration.

Notation (Sutton & Barto 2018, ch. 3-4; Haarnoja et al. 2017 for the soft operators), with
``c(s, a, s') = gamma P(s'|s, a) (1 - terminal(s'))`` and ``r(s, a) = sum_s' P(s'|s, a) R(s, a, s')``:

* ``Q_v(s, a) = r(s, a) + sum_s' c(s, a, s') v(s')``                         (:func:`q_from_v`)
* ``(T^pi v)(s) = sum_a pi(a|s) Q_v(s, a)``                                 (:func:`bellman_expectation`)
* ``(T v)(s) = max_a Q_v(s, a)``                                            (:func:`bellman_optimality`)
* ``(T_alpha v)(s) = alpha log sum_a exp(Q_v(s, a) / alpha)``                (:func:`soft_bellman`)

Terminal states are absorbing with value 0 (every operator returns 0 there). Every function
takes an MDP TensorDict from :mod:`frl.planning.mdp` with any leading batch dims (a batch of
MDPs is solved in one call) and is a pure tensor function: ``torch.func.vmap`` over MDPs and
``torch.compile`` work. The iterative solvers freeze an MDP's values once its residual
``max_s |v_{k+1}(s) - v_k(s)|`` is at most ``tol``, so a batch converges member by member and
the result does not depend on what else is in the batch; eagerly they stop as soon as every
member has converged (checked every ``check_every`` sweeps), under ``vmap`` or ``compile``
they run ``max_iterations`` sweeps (the frozen members do not change).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from tensordict import TensorDictBase
from torch import Tensor

__all__ = [
    "Solution",
    "bellman_expectation",
    "bellman_optimality",
    "boltzmann_policy",
    "greedy_policy",
    "policy_evaluation",
    "policy_iteration",
    "q_from_v",
    "soft_bellman",
    "soft_value_iteration",
    "value_iteration",
]


class Solution(NamedTuple):
    """What a solver returns (each with the MDP batch dims ``...`` in front).

    Attributes:
      values: ``v [..., S]``.
      q_values: ``Q [..., S, A]`` of ``values``.
      policy: ``pi [..., S, A]``: greedy (one-hot, lowest index on ties) or Boltzmann (soft).
      iterations: ``int64 [...]`` sweeps (value iteration) or improvements (policy iteration).
      residual: ``[...]`` the last ``max_s |v_{k+1} - v_k|`` (value iteration) or the Bellman
        optimality residual of ``values`` (policy iteration).
    """

    values: Tensor
    q_values: Tensor
    policy: Tensor
    iterations: Tensor
    residual: Tensor


def _parts(mdp: TensorDictBase) -> tuple[Tensor, Tensor, Tensor]:
    """``(r [..., S, A], c [..., S, A, S], live [..., S])`` of an MDP."""
    P, R = mdp["transitions"], mdp["rewards"]
    live = (~mdp["terminal"]).to(P.dtype)
    r = (P * R).sum(-1)
    c = mdp["gamma"][..., None, None, None] * P * live[..., None, None, :]
    return r, c, live


def _q(r: Tensor, c: Tensor, v: Tensor) -> Tensor:
    """``r + sum_s' c(s, a, s') v(s')`` as one batched product ``v [.., 1, S] @ c^T [.., S, S*A]``
    (a row vector times the transposed view: 4x faster on the CPU than the matrix-vector form)."""
    S, A = r.shape[-2:]
    flat = c.reshape(*c.shape[:-3], S * A, S)
    return r + (v.unsqueeze(-2) @ flat.transpose(-1, -2)).reshape(*flat.shape[:-2], S, A)


def _check_values(mdp: TensorDictBase, v: Tensor, fn: str) -> None:
    S = mdp["transitions"].shape[-1]
    if not isinstance(v, Tensor) or v.shape[-1:] != (S,):
        shape = list(v.shape) if isinstance(v, Tensor) else type(v).__name__
        raise ValueError(f"{fn}: `v` must be [..., S={S}], got {shape}")


def q_from_v(mdp: TensorDictBase, v: Tensor) -> Tensor:
    """``Q_v(s, a) = r(s, a) + sum_s' gamma P(s'|s, a) (1 - terminal(s')) v(s')``: ``[..., S, A]``."""
    _check_values(mdp, v, "q_from_v")
    r, c, _ = _parts(mdp)
    return _q(r, c, v)


def bellman_expectation(mdp: TensorDictBase, v: Tensor, policy: Tensor) -> Tensor:
    """``(T^pi v)(s) = sum_a pi(a|s) Q_v(s, a)`` (0 at terminal states): ``[..., S]``.

    Args:
      mdp: the MDP.
      v: values ``[..., S]``.
      policy: ``pi [..., S, A]``, rows summing to 1.
    """
    q = q_from_v(mdp, v)
    if policy.shape[-2:] != q.shape[-2:]:
        raise ValueError(
            f"bellman_expectation: `policy` must be [..., S, A] = {list(q.shape[-2:])}, "
            f"got {list(policy.shape)}"
        )
    live = (~mdp["terminal"]).to(q.dtype)
    return (policy * q).sum(-1) * live


def bellman_optimality(mdp: TensorDictBase, v: Tensor) -> Tensor:
    """``(T v)(s) = max_a Q_v(s, a)`` (0 at terminal states): ``[..., S]``."""
    q = q_from_v(mdp, v)
    return q.amax(-1) * (~mdp["terminal"]).to(q.dtype)


def soft_bellman(mdp: TensorDictBase, v: Tensor, alpha: float | Tensor) -> Tensor:
    """``(T_alpha v)(s) = alpha log sum_a exp(Q_v(s, a) / alpha)`` (0 at terminal states).

    The soft (maximum-entropy) backup: the value of the Boltzmann policy ``pi ~ exp(Q / alpha)``
    including its entropy bonus ``alpha H(pi(.|s))``; it tends to :func:`bellman_optimality` as
    ``alpha -> 0`` (``max <= softmax <= max + alpha log A``).
    """
    q = q_from_v(mdp, v)
    alpha = torch.as_tensor(alpha, dtype=q.dtype, device=q.device)
    a = alpha[..., None, None] if alpha.dim() else alpha
    return (a * torch.logsumexp(q / a, dim=-1)) * (~mdp["terminal"]).to(q.dtype)


def greedy_policy(q: Tensor) -> Tensor:
    """One-hot ``argmax_a Q(s, a)`` (the lowest index on ties): ``[..., S, A]``."""
    return torch.nn.functional.one_hot(q.argmax(-1), q.shape[-1]).to(q.dtype)


def boltzmann_policy(q: Tensor, alpha: float | Tensor) -> Tensor:
    """``pi(a|s) = softmax_a(Q(s, a) / alpha)``: ``[..., S, A]``."""
    alpha = torch.as_tensor(alpha, dtype=q.dtype, device=q.device)
    a = alpha[..., None, None] if alpha.dim() else alpha
    return torch.softmax(q / a, dim=-1)


def _tracing() -> bool:
    return torch.compiler.is_compiling()


def _is_batched(*tensors: Tensor) -> bool:
    return any(torch._C._functorch.is_batchedtensor(t) for t in tensors)


def _iterate(
    sweep: Callable[[Tensor], Tensor],
    v0: Tensor,
    tol: float,
    max_iterations: int,
    check_every: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """``v_{k+1} = sweep(v_k)`` with per-member freezing at ``residual <= tol``."""
    if max_iterations < 1 or check_every < 1:
        raise ValueError(
            f"need max_iterations >= 1 and check_every >= 1, got {max_iterations}, {check_every}"
        )
    batch = v0.shape[:-1]
    v = v0
    iterations = torch.zeros(batch, dtype=torch.int64, device=v0.device)
    residual = torch.full(batch, float("inf"), dtype=v0.dtype, device=v0.device)
    done = torch.zeros(batch, dtype=torch.bool, device=v0.device)
    early_exit = not (_tracing() or _is_batched(v0))
    for k in range(max_iterations):
        new = sweep(v)
        change = (new - v).abs().amax(-1)
        v = torch.where(done[..., None], v, new)
        iterations = iterations + (~done).to(torch.int64)
        residual = torch.where(done, residual, change)
        done = done | (change <= tol)
        if early_exit and (k + 1) % check_every == 0 and bool(done.all()):
            break
    return v, iterations, residual


def policy_evaluation(
    mdp: TensorDictBase,
    policy: Tensor,
    *,
    method: str = "exact",
    tol: float = 1e-10,
    max_iterations: int = 10_000,
    check_every: int = 16,
) -> Tensor:
    """``v^pi [..., S]``, the fixed point of :func:`bellman_expectation`.

    ``method="exact"`` solves the linear system ``(I - C_pi) v = r_pi`` with
    ``C_pi(s, s') = sum_a pi(a|s) c(s, a, s')`` (terminal rows fixed to ``v = 0``);
    ``"iterative"`` sweeps ``v <- T^pi v`` from 0 until the change is at most ``tol``.
    """
    r, c, live = _parts(mdp)
    if policy.shape[-2:] != r.shape[-2:]:
        raise ValueError(
            f"policy_evaluation: `policy` must be [..., S, A] = {list(r.shape[-2:])}, "
            f"got {list(policy.shape)}"
        )
    if method == "exact":
        r_pi = (policy * r).sum(-1) * live
        c_pi = (policy[..., None] * c).sum(-2) * live[..., :, None]
        eye = torch.eye(r_pi.shape[-1], dtype=r_pi.dtype, device=r_pi.device)
        return torch.linalg.solve(eye - c_pi, r_pi.unsqueeze(-1)).squeeze(-1)
    if method == "iterative":

        def sweep(v: Tensor) -> Tensor:
            return (policy * _q(r, c, v)).sum(-1) * live

        return _iterate(sweep, torch.zeros_like(live), tol, max_iterations, check_every)[0]
    raise ValueError(f"policy_evaluation: `method` must be 'exact' or 'iterative', got {method!r}")


def value_iteration(
    mdp: TensorDictBase,
    *,
    tol: float = 1e-10,
    max_iterations: int = 10_000,
    check_every: int = 16,
    v0: Tensor | None = None,
) -> Solution:
    """Optimal values by ``v <- T v`` from ``v0`` (default 0) until ``max_s |T v - v| <= tol``.

    With ``gamma < 1`` the error after stopping is at most ``tol gamma / (1 - gamma)``. Returns
    the values, their Q-values, the greedy policy, the sweeps each MDP took and its residual.
    """
    r, c, live = _parts(mdp)  # once: each sweep is one matrix product
    v0 = torch.zeros_like(live) if v0 is None else v0
    _check_values(mdp, v0, "value_iteration")
    v, iterations, residual = _iterate(
        lambda v: _q(r, c, v).amax(-1) * live, v0, tol, max_iterations, check_every
    )
    q = _q(r, c, v)
    return Solution(v, q, greedy_policy(q), iterations, residual)


def soft_value_iteration(
    mdp: TensorDictBase,
    alpha: float | Tensor,
    *,
    tol: float = 1e-10,
    max_iterations: int = 10_000,
    check_every: int = 16,
) -> Solution:
    """Soft-optimal values by ``v <- T_alpha v`` (:func:`soft_bellman`); the policy is
    ``softmax(Q / alpha)`` (Ziebart 2010; Haarnoja et al. 2017, "soft Q-learning")."""
    r, c, live = _parts(mdp)
    alpha = torch.as_tensor(alpha, dtype=r.dtype, device=r.device)
    a = alpha[..., None, None] if alpha.dim() else alpha  # against Q [..., S, A]
    a_v = alpha[..., None] if alpha.dim() else alpha  # against v [..., S]

    def sweep(v: Tensor) -> Tensor:
        return a_v * torch.logsumexp(_q(r, c, v) / a, dim=-1) * live

    v, iterations, residual = _iterate(sweep, torch.zeros_like(live), tol, max_iterations, check_every)
    q = _q(r, c, v)
    return Solution(v, q, boltzmann_policy(q, alpha), iterations, residual)


def policy_iteration(mdp: TensorDictBase, *, max_iterations: int = 1_000) -> Solution:
    """Howard's policy iteration: exact evaluation, greedy improvement, until the policy is stable.

    Each member stops improving once its greedy policy no longer changes (frozen, as in
    :func:`value_iteration`); ``iterations`` counts its improvement steps.
    """
    r = _parts(mdp)[0]
    policy = greedy_policy(torch.zeros_like(r))
    batch = r.shape[:-2]
    iterations = torch.zeros(batch, dtype=torch.int64, device=r.device)
    done = torch.zeros(batch, dtype=torch.bool, device=r.device)
    early_exit = not (_tracing() or _is_batched(r))
    for _ in range(max_iterations):
        v = policy_evaluation(mdp, policy)
        improved = greedy_policy(q_from_v(mdp, v))
        stable = (improved == policy).all(-1).all(-1)
        policy = torch.where(done[..., None, None], policy, improved)
        iterations = iterations + (~done).to(torch.int64)
        done = done | stable
        if early_exit and bool(done.all()):
            break
    v = policy_evaluation(mdp, policy)
    q = q_from_v(mdp, v)
    residual = (bellman_optimality(mdp, v) - v).abs().amax(-1)
    return Solution(v, q, policy, iterations, residual)
