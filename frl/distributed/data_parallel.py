"""Data-parallel training: N ranks train one agent on N times the data.

Two pieces make any frl agent data-parallel, with no change to its losses:

* :func:`all_reduce_gradients` wraps the agent's optimizer: the gradients are averaged over the
  ranks (one flat all-reduce per dtype) before the optimizer sees them. Every rank then applies
  the same update to the same parameters, so parameters stay bit-identical (checked by
  :func:`frl.distributed.assert_in_sync`). The optimizer state keeps its layout, so checkpoints
  are interchangeable with single-process runs.
* :func:`data_parallel` makes each rank draw its own data: every unit of the agent's iteration
  sees the run key folded with the rank (``fold_in(key, rank)``), so environments, exploration
  and minibatches differ across ranks while the learner stays in step.

:func:`train_data_parallel` drives it through :func:`frl.run`: every rank runs, rank 0 alone
writes logs and (atomic) checkpoints, parameters are compared across ranks at every log point,
and a checkpoint resumes on any world size (each rank re-derives its own randomness from the
saved key and its rank).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tensordict import TensorDictBase

from frl import random
from frl.algos.train import Train, Unit
from frl.distributed.collectives import all_reduce_mean, assert_in_sync
from frl.distributed.launch import world
from frl.optim import GradientTransformation

__all__ = ["all_reduce_gradients", "data_parallel", "train_data_parallel"]


def all_reduce_gradients(optimizer: GradientTransformation) -> GradientTransformation:
    """``optimizer`` applied to the gradients averaged over all ranks: ``g <- mean_r g_r``."""

    def update(
        grads: TensorDictBase, state: TensorDictBase, params: TensorDictBase | None = None, hyperparams=None
    ):
        return optimizer.update(all_reduce_mean(grads), state, params, hyperparams)

    return GradientTransformation(optimizer.init, update, optimizer.name)


def data_parallel(train: Train, rank: int | None = None) -> Train:
    """``train`` whose every unit runs with the state's ``key`` folded with ``rank`` (default:
    this process's rank), so each rank collects its own data. Build ``train`` with
    ``make_train(config, wrap_optimizer=all_reduce_gradients)`` so the learner averages gradients."""
    rank = world().rank if rank is None else rank

    def per_rank(fn: Callable) -> Callable:
        def unit(state: TensorDictBase):
            state = state.clone(recurse=False)
            state["key"] = random.fold_in(state["key"], rank)
            return fn(state)

        return unit

    def wrap(units: tuple[Unit, ...]) -> tuple[Unit, ...]:
        # not scanned: a collective inside a compiled loop is untested
        return tuple(Unit(u.name, per_rank(u.fn), u.repeats) for u in units)

    return dataclasses.replace(train, collect=wrap(train.collect), learn=wrap(train.learn))


def train_data_parallel(
    make_train: Callable[..., Train],
    config: Any,
    *,
    seed: int = 0,
    total_steps: int | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    check_every: int | None = None,
    **run_kwargs: Any,
):
    """Train one agent data-parallel over the current process group; returns :class:`frl.run.RunResult`.

    ``total_steps`` counts environment steps *per rank*. ``check_every`` (default: every log
    point) compares the parameters across ranks by digest and raises if they differ.
    """
    from frl.run import run

    me = world()
    # gradients are all-reduced between the units' calls: one iteration per call
    run_kwargs.setdefault("iterations_per_call", 1)
    train = data_parallel(make_train(config, wrap_optimizer=all_reduce_gradients), me.rank)
    return run(
        train,
        seeds=[seed],
        total_steps=total_steps,
        out_dir=out_dir,
        resume=resume,
        write=me.rank == 0,
        log_every=check_every,
        state_check=lambda state: assert_in_sync(state["params"]),
        progress=run_kwargs.pop("progress", me.rank == 0),
        **run_kwargs,
    )
