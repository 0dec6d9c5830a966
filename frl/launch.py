"""The environment frl's processes start in: glibc's cache of small freed blocks, raised.

Every intermediate a compiled step makes is a torch tensor, and each tensor's C++ objects
(``TensorImpl``, ``StorageImpl``, the AOTI handle) are small blocks from glibc's ``malloc``. glibc
keeps up to 7 freed blocks of each size per thread (its *tcache*); a compiled loop body frees
hundreds of same-sized blocks at once, and the rest take ``malloc``'s slow paths (``_int_malloc``,
``_int_free``, ``malloc_consolidate``). The count is a glibc tunable, read once when a process
starts (``GLIBC_TUNABLES=glibc.malloc.tcache_count=N``), so no library call can raise it later.
Measured with :data:`TCACHE_COUNT` (one AMD EPYC core, PPO CartPole, runs alternated): one seed
127-132k env-steps/s instead of 111-117k (the collection 1.05-1.08 ms instead of 1.34-1.36 per
iteration); 32 seeds 304-311k instead of 284-296k. (frl's caching host allocator,
:mod:`frl.host_memory`, already serves the tensors' data.)

The ``frl`` command starts itself again with the tunable set (:func:`restart_tuned`, ~0.1 s before
anything heavy is imported); your own script can start the same way::

    GLIBC_TUNABLES=glibc.malloc.tcache_count=1000 python train.py

or pass :func:`environ` to the processes it starts. ``FRL_GLIBC_TUNABLES=0`` leaves the
environment alone; a ``tcache_count`` you set is kept. Elsewhere than Linux with glibc nothing
changes. This module imports nothing heavy: the command calls it before torch loads.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

__all__ = ["TCACHE_COUNT", "environ", "restart_tuned", "tuned"]

TCACHE_COUNT = 1000
"""Freed blocks glibc keeps per size and thread (its default: 7). 64 gave about half the gain, 256
to 4000 the same within noise (measured as in the module docstring); at most ~64 MiB per thread
could sit in it (64 sizes up to 1 KiB), where a training step holds a few hundred blocks."""

_VARIABLE = "GLIBC_TUNABLES"
_SETTING = "glibc.malloc.tcache_count"


def _glibc() -> bool:
    """Whether this process runs on glibc (whose tunables the variable sets)."""
    try:
        return sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # no such name on this system
        return False


def tuned(env: Mapping[str, str] | None = None) -> str | None:
    """The tcache count ``env`` (default ``os.environ``) sets for glibc, or None (glibc's default)."""
    env = os.environ if env is None else env
    for part in env.get(_VARIABLE, "").split(":"):
        name, _, value = part.partition("=")
        if name == _SETTING:
            return value
    return None


def environ(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default ``os.environ``) for a process that runs frl: with
    ``glibc.malloc.tcache_count=`` :data:`TCACHE_COUNT` added to ``GLIBC_TUNABLES`` (after any
    tunables already there), unless the count is set already, ``FRL_GLIBC_TUNABLES`` is ``0`` or
    the system is not glibc's."""
    out = dict(os.environ if env is None else env)
    if out.get("FRL_GLIBC_TUNABLES", "1").strip() == "0" or tuned(out) is not None or not _glibc():
        return out
    setting = f"{_SETTING}={TCACHE_COUNT}"
    out[_VARIABLE] = f"{out[_VARIABLE]}:{setting}" if out.get(_VARIABLE) else setting
    return out


def restart_tuned() -> None:
    """Replace this process by the same command under :func:`environ` when that differs from its
    own environment (so at most once: the new process has it). Returns only when nothing needs to
    change (or the restart is refused by the system, in which case this process goes on as is)."""
    env = environ()
    if env == dict(os.environ):
        return
    argv = list(getattr(sys, "orig_argv", []))
    if not argv or not sys.executable:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, argv, env)
    except OSError:
        return
