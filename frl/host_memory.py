"""A caching allocator for tensors in host (CPU) memory, switched on around training loops.

A compiled step of a small network allocates and frees the same few dozen buffers on every call:
Inductor's C++ wrapper asks torch's CPU allocator for every intermediate, and torch hands each
request to glibc's ``malloc``. In a profile of one-seed PPO on CartPole that was ~14% of the
steady state (``_int_malloc``, ``_int_free``, ``malloc_consolidate``). While :func:`caching` is
active, freed blocks stay in free lists keyed by their size (rounded up to 64 bytes) and serve the
next request of that size: a PPO CartPole iteration took 10.1-10.2 ms instead of 11.7-12.5 ms
(one seed, AMD EPYC, one core, runs alternated; glibc's ``tcache_count=1000`` tunable gave 11.0).

``frl.run`` switches it on for its iterations (``FRL_HOST_CACHE`` sets the limit in MiB, ``0``
switches it off); your own loop can do the same::

    with frl.host_memory.caching():
        for _ in range(iterations):
            state = step(state)

The thread that switches the cache on keeps free lists of its own, without a lock (a compiled
loop body allocates ~50 buffers a step: the shared lists' mutex and hash lookup were ~13% of
one-seed PPO's collection; without them a one-seed PPO CartPole run was 6-9% faster, four pairs
of runs side by side); other threads share locked lists, under the same limit. That thread
switches it off again (:func:`caching` does, on exit).

The cache only reuses memory: values, shapes and aliasing are those of torch's own allocator.
It holds at most ``limit_mib`` of free blocks (beyond it, freed blocks go back to the system),
and switching it off frees them all. Blocks it serves bypass torch's CPU memory reporting, so
``torch.profiler``'s ``profile_memory`` does not see them: profile memory with
``FRL_HOST_CACHE=0``. It needs frl's C++ extension (:mod:`frl._native`); without
one, :func:`caching` does nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

__all__ = ["DEFAULT_LIMIT_MIB", "CacheStats", "available", "caching", "limit_from_env", "stats"]

DEFAULT_LIMIT_MIB = 256
"""The most free memory the cache keeps, in MiB (PPO CartPole at one seed keeps ~1 MiB)."""


@dataclass(frozen=True)
class CacheStats:
    """The cache's counters: whether it is on, the bytes it holds free now and may hold, and how
    many allocations it served from its free lists (``hits``) or from the system (``misses``) since
    the process started."""

    enabled: bool
    cached_bytes: int
    limit_bytes: int
    hits: int
    misses: int


def _ops() -> object | None:
    from frl import _native

    module, _, _ = _native.load()
    return torch.ops.frl_native if module is not None else None


def available() -> bool:
    """Whether this install can cache (frl's C++ extension loads)."""
    return _ops() is not None


def stats() -> CacheStats:
    """The cache's counters (all zero without the extension)."""
    ops = _ops()
    if ops is None:
        return CacheStats(False, 0, 0, 0, 0)
    enabled, cached, limit, hits, misses = ops.host_cache_stats()
    return CacheStats(bool(enabled), cached, limit, hits, misses)


def limit_from_env(default: int = DEFAULT_LIMIT_MIB) -> int:
    """``FRL_HOST_CACHE`` as a limit in MiB (``0``: off), else ``default``.

    Raises:
      ValueError: the variable is not a whole number >= 0.
    """
    value = os.environ.get("FRL_HOST_CACHE", "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise ValueError(
            f"FRL_HOST_CACHE: expected a limit in MiB (a whole number >= 0; 0 = off), got {value!r}"
        )
    return int(value)


@contextlib.contextmanager
def caching(limit_mib: int = DEFAULT_LIMIT_MIB) -> Iterator[bool]:
    """Serve CPU tensor allocations from a cache of freed blocks inside the ``with`` block.

    Yields whether this block switched the cache on: ``False`` when ``limit_mib`` is 0, without
    frl's extension, or inside another :func:`caching` block (the outer one owns it). On exit the
    previous allocator is back and the cached blocks are freed; tensors allocated inside live on
    and are freed to the system when they die.

    Args:
      limit_mib: the most free memory kept, in MiB (``>= 0``; 0 switches caching off).
    """
    if not isinstance(limit_mib, int) or isinstance(limit_mib, bool) or limit_mib < 0:
        raise ValueError(f"caching: limit_mib must be a whole number >= 0, got {limit_mib!r}")
    ops = _ops() if limit_mib > 0 else None
    owner = bool(ops.host_cache_enable(limit_mib << 20)) if ops is not None else False
    try:
        yield owner
    finally:
        if owner:
            ops.host_cache_disable()
