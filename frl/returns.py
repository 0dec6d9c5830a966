"""Returns, advantages and TD targets: tensor in, tensor out, time as the LAST dim.

Every function takes sequences ``[..., T]`` (any leading batch dims, no trailing singleton) and
keeps termination and truncation apart:

* ``terminated[t]``: the episode ended at step ``t`` in a terminal state; nothing is
  bootstrapped after it (``gamma_t = gamma * (1 - terminated_t)``).
* ``done[t] = terminated[t] | truncated[t]``: the episode ended at step ``t`` for any reason;
  the recursion is cut there. A truncated (not terminated) step bootstraps from
  ``next_value[t]``, the value of its true next observation.
* The last step of the sequence is always a cut: it bootstraps from ``next_value[T - 1]``.

``next_value[t]`` is ``V(s_{t+1})`` for the observation that followed step ``t`` (the final
observation at episode ends, never the reset one), so no function needs the values to be
shifted by hand.

The backward recursions ``y_t = b_t + a_t y_{t+1}`` run as a parallel scan in
``ceil(log2 T)`` doubling steps of whole-sequence tensor ops (no per-step kernels, no in-place
writes), which ``torch.func.vmap`` batches and ``torch.compile`` compiles into a small graph.
``gamma``, ``lmbda`` and the clipping thresholds may be floats or tensors broadcastable to
``[..., T]`` (0-d tensors for a vmapped hyper-parameter sweep).

Time-first callers (``[T, N]``, as rlax, CleanRL and TorchRL's collectors before a transpose)
pass ``time_dim=0``: the sequences are read with time on that dim and the results come back in
the same layout (a view is moved, no data is copied before the math).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "discounted_returns",
    "gae",
    "lambda_returns",
    "n_step_targets",
    "reverse_linear_scan",
    "td_error",
    "vtrace",
]

Scalar = float | Tensor


def _check_sequences(fn: str, **tensors: Tensor | None) -> torch.Size:
    shape = None
    first = None
    for name, x in tensors.items():
        if x is None:
            continue
        if not isinstance(x, Tensor):
            raise TypeError(f"{fn}: `{name}` must be a tensor, got {type(x)!r}")
        if x.dim() == 0:
            raise ValueError(f"{fn}: `{name}` must have a time dim [..., T], got a 0-d tensor")
        if shape is None:
            shape, first = x.shape, name
        elif x.shape != shape:
            raise ValueError(
                f"{fn}: `{name}` has shape {list(x.shape)} but `{first}` has {list(shape)}; all "
                "sequences must share one shape [..., T] (time last, no trailing singleton)"
            )
    assert shape is not None
    return shape


def _as_float(flag: Tensor, like: Tensor) -> Tensor:
    """A bool (or 0/1) tensor as ``like``'s float dtype."""
    return flag.to(like.dtype)


def _time_last(time_dim: int, *tensors: Tensor | None) -> list[Tensor | None]:
    """``tensors`` with ``time_dim`` moved last (views); scalars and None pass through."""
    if isinstance(time_dim, bool) or not isinstance(time_dim, int):
        raise TypeError(f"`time_dim` must be an int, got {time_dim!r}")
    if time_dim == -1:
        return list(tensors)
    out: list[Tensor | None] = []
    for x in tensors:
        if isinstance(x, Tensor) and x.dim() > 0:
            if not -x.dim() <= time_dim < x.dim():
                raise ValueError(f"`time_dim` {time_dim} is not a dim of a {x.dim()}-d sequence")
            x = x.movedim(time_dim, -1)
        out.append(x)
    return out


def _time_back(time_dim: int, x: Tensor) -> Tensor:
    """The inverse of :func:`_time_last` for one result."""
    return x if time_dim == -1 else x.movedim(-1, time_dim)


def reverse_linear_scan(a: Tensor, b: Tensor) -> Tensor:
    """Solve ``y_t = b_t + a_t y_{t+1}`` backwards along the last dim, with ``y_T = 0``.

    A Hillis-Steele scan with the associative combine ``(a1, b1) o (a2, b2) = (a1 a2, b1 + a1 b2)``:
    after the steps with offsets 1, 2, 4, ... each position holds the whole suffix, so
    ``ceil(log2 T)`` steps of full-width ops replace ``T`` sequential ones.

    Args:
      a: coefficients ``[..., T]``.
      b: offsets ``[..., T]``.

    Returns:
      ``y`` with the shape of ``b``.
    """
    a, b = torch.broadcast_tensors(a, b)
    length = b.shape[-1]
    offset = 1
    while offset < length:
        b_next = F.pad(b[..., offset:], (0, offset), value=0.0)
        a_next = F.pad(a[..., offset:], (0, offset), value=1.0)
        b = b + a * b_next
        a = a * a_next
        offset *= 2
    return b


def td_error(
    reward: Tensor, value: Tensor, next_value: Tensor, terminated: Tensor, *, gamma: Scalar
) -> Tensor:
    """One-step temporal-difference error ``delta = r + gamma (1 - terminated) V(s') - V(s)``.

    Shapes: any, all equal (``[..., T]`` or a flat batch).
    """
    _check_sequences("td_error", reward=reward, value=value, next_value=next_value, terminated=terminated)
    return reward + gamma * (1.0 - _as_float(terminated, reward)) * next_value - value


def lambda_returns(
    reward: Tensor,
    next_value: Tensor,
    terminated: Tensor,
    done: Tensor,
    *,
    gamma: Scalar,
    lmbda: Scalar,
    time_dim: int = -1,
) -> Tensor:
    """TD(lambda) returns (Sutton & Barto 2018, section 12.1).

    ``G_t = r_t + gamma_t [(1 - lambda_t) V(s_{t+1}) + lambda_t G_{t+1}]`` with
    ``gamma_t = gamma (1 - terminated_t)`` and ``lambda_t = lmbda (1 - done_t)``, 0 at ``T - 1``:
    ``lmbda = 1`` gives Monte-Carlo returns bootstrapped at cuts, ``lmbda = 0`` one-step TD
    targets.

    Args:
      reward, next_value, terminated, done: ``[..., T]``.
      gamma, lmbda: discount and trace decay.
      time_dim: the time dim of the inputs and the result (``0`` for ``[T, ...]``).

    Returns:
      ``[..., T]`` returns.
    """
    reward, next_value, terminated, done = _time_last(time_dim, reward, next_value, terminated, done)
    shape = _check_sequences(
        "lambda_returns", reward=reward, next_value=next_value, terminated=terminated, done=done
    )
    discount = gamma * (1.0 - _as_float(terminated, reward))
    lam = lmbda * (1.0 - _as_float(done, reward))
    lam = lam * _not_last(shape, reward)
    returns = reverse_linear_scan(discount * lam, reward + discount * (1.0 - lam) * next_value)
    return _time_back(time_dim, returns)


def discounted_returns(
    reward: Tensor,
    terminated: Tensor,
    done: Tensor,
    *,
    gamma: Scalar,
    next_value: Tensor | None = None,
    time_dim: int = -1,
) -> Tensor:
    """Discounted returns ``G_t = r_t + gamma_t G_{t+1}``, restarting at every episode end.

    At a cut (``done`` or the last step) ``G_{t+1}`` is replaced by ``next_value[t]`` (zero
    when ``next_value`` is None: plain Monte-Carlo returns of the rewards in the sequence);
    a terminated step never bootstraps. Equal to :func:`lambda_returns` with ``lmbda = 1``.

    Args:
      reward, terminated, done: ``[..., T]``.
      gamma: discount.
      next_value: optional ``[..., T]`` bootstrap values.
      time_dim: the time dim of the inputs and the result (``0`` for ``[T, ...]``).

    Returns:
      ``[..., T]`` returns.
    """
    if next_value is None:
        next_value = torch.zeros_like(reward)
    return lambda_returns(reward, next_value, terminated, done, gamma=gamma, lmbda=1.0, time_dim=time_dim)


def n_step_targets(
    reward: Tensor,
    next_value: Tensor,
    terminated: Tensor,
    done: Tensor,
    *,
    gamma: Scalar,
    n: int,
    time_dim: int = -1,
) -> Tensor:
    """n-step bootstrapped targets ``G_t = sum_{k<n} gamma^k r_{t+k} + gamma^n V(s_{t+n})``.

    The sum stops early at an episode end (a terminated step adds no bootstrap, a truncated
    one bootstraps from its ``next_value``) and at the end of the sequence. Computed with ``n``
    whole-sequence steps (``n`` is static), as ``rlax.n_step_bootstrapped_returns``.

    Args:
      reward, next_value, terminated, done: ``[..., T]``.
      gamma: discount.
      n: number of steps, ``>= 1``.
      time_dim: the time dim of the inputs and the result (``0`` for ``[T, ...]``).

    Returns:
      ``[..., T]`` targets.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n_step_targets: `n` must be an int >= 1, got {n!r}")
    reward, next_value, terminated, done = _time_last(time_dim, reward, next_value, terminated, done)
    shape = _check_sequences(
        "n_step_targets", reward=reward, next_value=next_value, terminated=terminated, done=done
    )
    discount = (gamma * (1.0 - _as_float(terminated, reward))).expand(shape)
    cont = (1.0 - _as_float(done, reward)) * _not_last(shape, reward)
    # G^(1)_t = r_t + gamma_t V(s_{t+1});
    # G^(k)_t = r_t + gamma_t [cont_t G^(k-1)_{t+1} + (1 - cont_t) V(s_{t+1})].
    target = reward + discount * next_value
    for _ in range(n - 1):
        shifted = F.pad(target[..., 1:], (0, 1), value=0.0)
        target = reward + discount * (cont * shifted + (1.0 - cont) * next_value)
    return _time_back(time_dim, target)


def gae(
    reward: Tensor,
    value: Tensor,
    next_value: Tensor,
    terminated: Tensor,
    done: Tensor,
    *,
    gamma: Scalar,
    lmbda: Scalar,
    time_dim: int = -1,
) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, https://arxiv.org/abs/1506.02438).

    ``delta_t = r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t)``;
    ``A_t = delta_t + gamma lmbda (1 - done_t) A_{t+1}``, ``A_T = 0``; target ``A_t + V(s_t)``.

    Args:
      reward, value, next_value, terminated, done: ``[..., T]``.
      gamma, lmbda: discount and GAE lambda.
      time_dim: the time dim of the inputs and the results (``0`` for ``[T, ...]``).

    Returns:
      ``(advantage, value_target)``, each ``[..., T]``.
    """
    reward, value, next_value, terminated, done = _time_last(
        time_dim, reward, value, next_value, terminated, done
    )
    _check_sequences(
        "gae", reward=reward, value=value, next_value=next_value, terminated=terminated, done=done
    )
    delta = reward + gamma * (1.0 - _as_float(terminated, reward)) * next_value - value
    advantage = reverse_linear_scan(gamma * lmbda * (1.0 - _as_float(done, reward)), delta)
    return _time_back(time_dim, advantage), _time_back(time_dim, advantage + value)


def vtrace(
    value: Tensor,
    next_value: Tensor,
    reward: Tensor,
    log_rho: Tensor,
    terminated: Tensor,
    done: Tensor,
    *,
    gamma: Scalar,
    lmbda: Scalar = 1.0,
    clip_rho: Scalar = 1.0,
    clip_c: Scalar = 1.0,
    clip_pg_rho: Scalar = 1.0,
    time_dim: int = -1,
) -> tuple[Tensor, Tensor]:
    """V-trace off-policy targets and policy-gradient advantages (Espeholt et al. 2018,
    https://arxiv.org/abs/1802.01561).

    With ``rho_t = exp(log_rho_t) = pi(a_t|s_t) / mu(a_t|s_t)`` and ``gamma_t = gamma (1 - terminated_t)``:
    ``delta_t = min(clip_rho, rho_t) (r_t + gamma_t V(s_{t+1}) - V(s_t))``;
    ``vs_t - V(s_t) = delta_t + gamma_t lmbda min(clip_c, rho_t) (1 - done_t) (vs_{t+1} - V(s_{t+1}))``;
    ``A_t = min(clip_pg_rho, rho_t) (r_t + gamma_t q_{t+1} - V(s_t))`` with
    ``q_{t+1} = lmbda vs_{t+1} + (1 - lmbda) V(s_{t+1})`` inside an episode and
    ``V(s_{t+1})`` at a cut (as ``rlax.vtrace_td_error_and_advantage``).

    Args:
      value, next_value, reward, log_rho, terminated, done: ``[..., T]``.
      gamma, lmbda: discount and trace decay.
      clip_rho, clip_c, clip_pg_rho: importance-weight clipping thresholds.
      time_dim: the time dim of the inputs and the results (``0`` for ``[T, ...]``).

    Returns:
      ``(value_target, pg_advantage)``, each ``[..., T]``.
    """
    value, next_value, reward, log_rho, terminated, done = _time_last(
        time_dim, value, next_value, reward, log_rho, terminated, done
    )
    shape = _check_sequences(
        "vtrace",
        value=value,
        next_value=next_value,
        reward=reward,
        log_rho=log_rho,
        terminated=terminated,
        done=done,
    )
    rho = torch.exp(log_rho)
    discount = gamma * (1.0 - _as_float(terminated, reward))
    cont = (1.0 - _as_float(done, reward)) * _not_last(shape, reward)
    delta = torch.clamp(rho, max=clip_rho) * (reward + discount * next_value - value)
    c = lmbda * torch.clamp(rho, max=clip_c)
    vs = value + reverse_linear_scan(discount * c * cont, delta)
    vs_next = F.pad(vs[..., 1:], (0, 1), value=0.0)
    q_next = cont * (lmbda * vs_next + (1.0 - lmbda) * next_value) + (1.0 - cont) * next_value
    pg_advantage = torch.clamp(rho, max=clip_pg_rho) * (reward + discount * q_next - value)
    return _time_back(time_dim, vs), _time_back(time_dim, pg_advantage)


def _not_last(shape: torch.Size, like: Tensor) -> Tensor:
    """``[1, ..., 1, 0]`` over the time dim: every sequence is cut after its last step."""
    mask = torch.ones(shape[-1], dtype=like.dtype, device=like.device)
    return F.pad(mask[:-1], (0, 1), value=0.0)
