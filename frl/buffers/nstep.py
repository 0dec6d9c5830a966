"""n-step transitions from a segment of consecutive one-step transitions (TorchRL's ``MultiStep``)."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torch import Tensor

__all__ = ["nstep"]

_NEXT_FLAGS = ("terminated", "truncated", "done")


def nstep(transitions: TensorDictBase, n: int, gamma: float | Tensor) -> TensorDictBase:
    """Fold ``n`` consecutive steps into one transition, time on the LAST batch dim.

    For a segment ``[..., T]`` of one-step transitions (``observation``, ``action``,
    ``next.{observation, reward, terminated, truncated, done}``) the transition starting at ``t``
    becomes::

        m_t = min(n, steps to the end of the episode (inclusive), T - t)
        next.reward      = sum_{k < m_t} gamma^k r_{t+k}
        next.observation, next.terminated, next.truncated, next.done   taken at t + m_t - 1
        steps_to_next_obs = m_t

    so the target ``r^(n) + gamma^m (1 - terminated) V(s')`` that ``frl.losses`` build (they read
    ``steps_to_next_obs``) never crosses an episode boundary; transitions near the end of the
    segment fold fewer steps (as TorchRL's ``MultiStep``). ``n = 1`` returns the input plus
    ``steps_to_next_obs = 1``.

    Args:
      transitions: ``[..., T]`` one-step transitions.
      n: steps to fold (static).
      gamma: discount (float or 0-d tensor).

    Returns:
      ``[..., T]`` n-step transitions with ``steps_to_next_obs`` (int64).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"buffers.nstep: `n` must be a positive int, got {n!r}")
    if transitions.batch_dims < 1:
        raise ValueError("buffers.nstep: `transitions` needs a time dim (its last batch dim)")
    nxt = transitions.get("next", None)
    missing = [k for k in ("reward", *_NEXT_FLAGS, "observation") if nxt is None or k not in nxt]
    if missing:
        raise ValueError(f"buffers.nstep: `transitions` has no {['next.' + k for k in missing]}")
    reward, done = nxt["reward"], nxt["done"]
    if reward.shape != transitions.batch_size or done.shape != transitions.batch_size:
        raise ValueError(
            f"buffers.nstep: `next.reward` and `next.done` must have the batch shape "
            f"{list(transitions.batch_size)} (no trailing 1), got {list(reward.shape)} and {list(done.shape)}"
        )
    T = reward.shape[-1]
    t = torch.arange(T, device=reward.device)
    total = torch.zeros_like(reward)
    alive = torch.ones_like(done)
    last = t.expand(reward.shape)
    steps = torch.zeros(reward.shape, dtype=torch.int64, device=reward.device)
    gamma = torch.as_tensor(gamma, dtype=reward.dtype, device=reward.device)
    for k in range(n):
        j = torch.clamp(t + k, max=T - 1).expand(reward.shape)
        valid = alive & (t + k < T)
        total = total + torch.where(valid, gamma**k * torch.gather(reward, -1, j), torch.zeros_like(reward))
        steps = steps + valid.to(torch.int64)
        last = torch.where(valid, j, last)
        alive = valid & ~torch.gather(done, -1, j)

    def at_last(x: Tensor) -> Tensor:
        index = last.reshape(*last.shape, *([1] * (x.dim() - last.dim()))).expand(x.shape)
        return torch.gather(x, last.dim() - 1, index)

    out = transitions.copy()
    new_next = nxt.apply(at_last)
    new_next["reward"] = total
    out["next"] = new_next
    out["steps_to_next_obs"] = steps
    return out
