"""A run's members: every seed times every point of a hyper-parameter grid, and their states."""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tensordict import TensorDict
from torch.func import vmap

from frl import random
from frl.algos.train import Train

__all__ = ["grid", "init_states", "members_of"]


def grid(space: Mapping[str, Sequence[Any]], owner: str = "grid") -> list[dict[str, Any]]:
    """Every combination of ``space``'s values, the first name varying slowest:
    ``{"a": [1, 2], "b": [3]} -> [{"a": 1, "b": 3}, {"a": 2, "b": 3}]``."""
    for name, values in space.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ValueError(f"{owner}: {name!r} needs a non-empty list of values, got {values!r}")
    names = list(space)
    return [dict(zip(names, combo)) for combo in itertools.product(*(space[n] for n in names))]


def members_of(
    train: Train, seeds: int | Sequence[int], hparams: Mapping[str, Sequence[float]] | None
) -> list[dict[str, Any]]:
    """``[{**point, "seed": s}]``: the grid's points (the first name varying slowest), each with
    every seed. Seeds are a count (``0..N-1``) or distinct ints; ``hparams`` maps hyper-parameter
    names to non-empty lists of values, each point validated by the agent's Config (a setting, an
    unknown name or a bad value is an error naming the field)."""
    if isinstance(seeds, bool) or (isinstance(seeds, int) and seeds <= 0):
        raise ValueError(f"run: `seeds` must be a positive count or a list of seeds, got {seeds!r}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("run: `seeds` must name at least one seed")
    if len(set(seed_list)) != len(seed_list):
        raise ValueError(f"run: `seeds` must be distinct, got {seed_list}")
    points = grid(hparams or {}, "run: hparams")
    for point in points:
        for name, value in point.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"run: hparams {name!r} must hold numbers, got {value!r}")
        train.config.with_hyperparams(**point)  # validates every value by its field
    return [{**point, "seed": seed} for point in points for seed in seed_list]


def init_states(train: Train, members: Sequence[Mapping[str, Any]], batched: bool) -> TensorDict:
    """Every member's initial state from ``random.key(seed)`` and its hyper-parameters, stacked
    ``[M, ...]`` (one member: unbatched). Member ``i`` equals that configuration's state alone."""
    keys = torch.stack([random.key(m["seed"]) for m in members])
    points = [{k: v for k, v in m.items() if k != "seed"} for m in members]
    hyperparams = torch.stack([train.hyperparams(**point) for point in points])
    if batched:
        return vmap(train.init)(keys, hyperparams)
    return train.init(keys[0], hyperparams[0])
