"""Random trajectories with terminations and truncations mid-sequence, for the returns tests."""

from __future__ import annotations

import torch


def trajectories(
    batch: int, length: int, dtype: torch.dtype = torch.float32, seed: int = 0
) -> dict[str, torch.Tensor]:
    """``[batch, T]`` sequences laid out as a collector returns them.

    ``next_value[t] = value[t + 1]`` inside an episode; at an episode end (and at ``T - 1``)
    it is the value of the true final observation, unrelated to ``value[t + 1]`` (a reset).
    """
    g = torch.Generator().manual_seed(seed)
    value = torch.randn(batch, length, generator=g, dtype=dtype)
    terminated = torch.rand(batch, length, generator=g) < 0.08
    truncated = (torch.rand(batch, length, generator=g) < 0.08) & ~terminated
    done = terminated | truncated
    final_value = torch.randn(batch, length, generator=g, dtype=dtype)
    next_value = torch.cat([value[:, 1:], final_value[:, -1:]], dim=1)
    next_value = torch.where(done, final_value, next_value)
    return {
        "reward": torch.randn(batch, length, generator=g, dtype=dtype),
        "value": value,
        "next_value": next_value,
        "terminated": terminated,
        "truncated": truncated,
        "done": done,
        "log_rho": 0.5 * torch.randn(batch, length, generator=g, dtype=dtype),
    }


def segments(done_row: torch.Tensor) -> list[tuple[int, int]]:
    """``[start, stop)`` of each episode piece in one row: cut after every done and at the end."""
    length = done_row.shape[-1]
    cuts = [int(i) for i in torch.nonzero(done_row).flatten()]
    if not cuts or cuts[-1] != length - 1:
        cuts.append(length - 1)
    bounds, start = [], 0
    for end in cuts:
        bounds.append((start, end + 1))
        start = end + 1
    return bounds
