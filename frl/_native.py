"""frl's compiled C++ pieces (``frl/csrc``), one extension: the threefry kernel behind
:mod:`frl.random` (``threefry.cpp``) and the caching host allocator of :mod:`frl.host_memory`
(``host_cache.cpp``), both registered as dispatcher operators under ``torch.ops.frl_native``.

Loaded once per process, in order: the extension compiled into the release wheel (``frl._C``:
no compiler at run time); else the sources built once per machine with torch's JIT extension
builder (~30 s, cached under ``TORCH_EXTENSIONS_DIR``) when a C++ compiler is on the PATH; else
nothing, and each user falls back (NumPy threefry, glibc's allocator) and says why.

torch's builder waits, with no end, while its build folder holds a ``lock`` file, and a build
killed mid-way (Ctrl-C, a timeout) leaves that file behind: every later process hung at its first
random draw. A lock older than :data:`STALE_LOCK_S` (a build takes ~30 s) is removed, with a
warning, before the build (:func:`_clear_stale_lock`).
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["load"]

SOURCES = ("threefry.cpp", "host_cache.cpp")
STALE_LOCK_S = 600.0
"""Age in seconds past which a build folder's lock is a killed build's leftover."""
_LOADED: list[tuple[Any, str, str | None]] = []  # [(module or None, backend, why not)] once tried


def load() -> tuple[Any, str, str | None]:
    """``(module, backend, why)``: the loaded extension module, ``"extension"`` (from the wheel)
    or ``"jit"`` (built here), and ``why = None``; or ``(None, "none", why)`` when it cannot load."""
    if not _LOADED:
        module, backend, why = None, "none", None
        try:
            from frl import _C as module  # type: ignore[attr-defined]

            backend = "extension"
        except ImportError:
            compiler = os.environ.get("CXX", "c++")
            if shutil.which(compiler) is None:
                why = f"no compiled extension in this install and no C++ compiler ({compiler}) on the PATH"
            else:
                try:
                    from torch.utils.cpp_extension import load as build

                    csrc = Path(__file__).with_name("csrc")
                    sources = [str(csrc / name) for name in SOURCES]
                    _clear_stale_lock("frl_native")
                    module = build("frl_native", sources, extra_cflags=["-O2"], verbose=False)
                    backend = "jit"
                except Exception as err:  # a compiler that fails: the callers fall back
                    module, why = None, f"building it failed ({err})"
        _LOADED.append((module, backend, why))
    return _LOADED[0]


def _clear_stale_lock(name: str, build_directory: str | None = None) -> None:
    """Remove the ``lock`` file of extension ``name``'s build folder (torch's, unless
    ``build_directory``) when it is older than :data:`STALE_LOCK_S`; a fresher one is another
    process building, and is left for torch to wait on."""
    try:
        if build_directory is None:
            from torch.utils.cpp_extension import _get_build_directory

            build_directory = _get_build_directory(name, verbose=False)
        lock = Path(build_directory) / "lock"
        age = time.time() - lock.stat().st_mtime
    except (ImportError, OSError):  # no lock (the usual case), or no such torch helper
        return
    if age > STALE_LOCK_S:
        warnings.warn(
            f"frl: removing {lock}, left {age / 60:.0f} minutes ago by a build that did not finish",
            stacklevel=2,
        )
        lock.unlink(missing_ok=True)
