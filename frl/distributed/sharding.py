"""Seed sharding: each rank trains its slice of the seeds (vmapped), rank 0 gathers the results.

Seeds are independent, so sharding them is exact: seed ``s`` trained on any rank, in any slice,
follows the same key stream as it does alone (``random.key(s)``), and its results equal a
single-process run's to float rounding of the batched kernels (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from frl.algos.train import Train
from frl.distributed.collectives import gather_objects
from frl.distributed.launch import world
from frl.driver import checkpoint

__all__ = ["run_sharded", "shard_seeds"]


def shard_seeds(seeds: Sequence[int], rank: int, size: int) -> list[int]:
    """Rank ``rank``'s contiguous slice of ``seeds`` when ``size`` ranks share them (sizes differ
    by at most one; the first ranks take the larger slices)."""
    if not 0 <= rank < size:
        raise ValueError(f"shard_seeds: `rank` must lie in [0, {size}), got {rank}")
    per, extra = divmod(len(seeds), size)
    start = rank * per + min(rank, extra)
    return list(seeds[start : start + per + (rank < extra)])


def run_sharded(
    train: Train, seeds: int | Sequence[int], *, out_dir: str | Path | None = None, **run_kwargs: Any
) -> dict[str, Any] | None:
    """:func:`frl.run` of this rank's slice of ``seeds``; on rank 0, every seed's results in seed order.

    Returns (rank 0; None elsewhere) ``{"seeds", "eval_returns", "params" (stacked [S, ...]),
    "env_steps_per_s" (summed over ranks), "ranks" (which rank trained each seed)}``. With
    ``out_dir`` each rank logs and checkpoints under ``out_dir/rank<r>`` and rank 0 writes
    ``out_dir/results.pt`` (atomically).
    """
    from frl.run import run

    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"run_sharded: `seeds` must be distinct and non-empty, got {seeds}")
    me = world()
    mine = shard_seeds(seeds, me.rank, me.size)
    payload: dict[str, Any] = {"seeds": mine, "eval_returns": [], "params": None, "rate": 0.0}
    if mine:
        rank_dir = None if out_dir is None else Path(out_dir) / f"rank{me.rank}"
        result = run(train, seeds=mine, out_dir=rank_dir, **run_kwargs)
        payload.update(
            eval_returns=result.eval_returns,
            params=result.state["params"].cpu(),
            rate=result.env_steps_per_s,
        )
    gathered = gather_objects(payload)
    if gathered is None:
        return None
    parts = [p for p in gathered if p["seeds"]]
    merged = {
        "seeds": [s for p in parts for s in p["seeds"]],
        "eval_returns": [r for p in parts for r in p["eval_returns"]],
        "params": torch.cat([p["params"] for p in parts]),
        "env_steps_per_s": sum(p["rate"] for p in parts),
        "ranks": [r for r, p in enumerate(gathered) for _ in p["seeds"]],
    }
    if out_dir is not None:
        checkpoint.save(Path(out_dir) / "results.pt", merged)
    return merged
