"""Process groups: join one from the ``torchrun`` environment, or start one locally.

``torchrun --nproc_per_node N script.py`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` in each process; :func:`init_from_env` reads them and joins
the group with ``gloo`` on the CPU or ``nccl`` when the process has a GPU. :func:`spawn` is the
single-machine launcher frl's tests and ``frl train --nproc N`` use: ``N`` fresh processes
(``torch.multiprocessing`` spawn) on ``127.0.0.1`` and a free port, each running
``fn(rank, world_size, *args)`` inside an initialised group; rank 0's return value comes back.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

__all__ = ["World", "free_port", "init_from_env", "shutdown", "spawn", "world"]


class World(NamedTuple):
    """Where this process stands: ``rank`` of ``size`` processes (1 and 0 without a group)."""

    rank: int
    size: int
    local_rank: int
    backend: str | None


def world() -> World:
    """The current process group's rank and size (``World(0, 1, 0, None)`` when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World(0, 1, 0, None)
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return World(dist.get_rank(), dist.get_world_size(), local, dist.get_backend())


def init_from_env(backend: str | None = None) -> World:
    """Join the process group ``torchrun`` describes in the environment.

    ``backend`` defaults to ``nccl`` when CUDA is available, else ``gloo``. Without ``RANK`` and
    ``WORLD_SIZE`` in the environment this is a single process (nothing is initialised).
    """
    if dist.is_initialized():
        return world()
    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if len(missing) == 4:
        return World(0, 1, 0, None)
    if missing:
        raise RuntimeError(
            f"init_from_env: the environment sets only part of a torchrun group (missing {missing})"
        )
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    return world()


def shutdown() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, size: int, port: int, result: str, fn: Callable, args: tuple, threads: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank))
    torch.set_num_threads(threads)
    init_from_env("gloo")
    try:
        out = fn(rank, size, *args)
        if rank == 0:
            torch.save(out, result)
    finally:
        shutdown()


def spawn(fn: Callable[..., Any], nprocs: int, *args: Any, threads: int = 1) -> Any:
    """Run ``fn(rank, nprocs, *args)`` in ``nprocs`` new processes joined in a gloo group on
    127.0.0.1; returns rank 0's result. ``fn`` must be importable (a module-level function)."""
    import torch.multiprocessing as mp

    if not isinstance(nprocs, int) or nprocs < 1:
        raise ValueError(f"spawn: `nprocs` must be a positive int, got {nprocs!r}")
    import multiprocessing

    # torch's process start fixes this process's default start method to "fork" when it was
    # unset; a later fork-started worker (TorchRL's collectors take the default) would then
    # deadlock in its first matmul (OpenMP/MKL state does not survive a fork). Restore it.
    start_method = multiprocessing.get_start_method(allow_none=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = str(Path(tmp) / "rank0.pt")
            mp.spawn(_entry, args=(nprocs, free_port(), result, fn, args, threads), nprocs=nprocs, join=True)
            return torch.load(result, weights_only=False)
    finally:
        multiprocessing.set_start_method(start_method, force=True)
