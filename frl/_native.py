"""frl's compiled C++ pieces (``frl/csrc``), one extension: the threefry kernels and the radix sort
behind :mod:`frl.random` (``threefry.cpp``, ``stable_order.cpp``), the caching host allocator of
:mod:`frl.host_memory` (``host_cache.cpp``) and the products :mod:`frl._inductor` calls (the oneDNN
one, ``onednn_matmul.cpp``; the AVX-512 ones for few rows, ``small_rows_bmm.cpp``, and for small
2-D products, ``small_mm.cpp``), all registered as dispatcher operators under
``torch.ops.frl_native``.

Loaded once per process, in order: the extension compiled into the release wheel (``frl._C``:
no compiler at run time); else the sources built once per machine with torch's JIT extension
builder (~30 s, cached under ``TORCH_EXTENSIONS_DIR``) when a C++ compiler is on the PATH; else
nothing, and each user falls back (NumPy threefry, glibc's allocator) and says why.

torch's builder waits, with no end, while its build folder holds a ``lock`` file, and a build
killed mid-way (Ctrl-C, a timeout) leaves that file behind: every later process hung at its first
random draw. A lock older than :data:`STALE_LOCK_S` (a build takes ~30 s) is removed, with a
warning, before the build (:func:`_clear_stale_lock`). And the lock is taken only to build:
torch's builder takes it in every process, to run ``ninja`` even when nothing changed (~0.1 s
holding it), so a process killed at start-up (a test's SIGTERM to a benchmark's workers) left it
behind. Once built, the folder holds a stamp of what was built (:func:`_stamp`: torch's version,
the sources, the flags) and a process whose stamp matches imports the built module directly
(:func:`_built`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["load"]

# setup.py reads these two literals (the wheel's ``frl._C``): keep them literals
SOURCES = (
    "threefry.cpp",
    "host_cache.cpp",
    "onednn_matmul.cpp",
    "stable_order.cpp",
    "small_rows_bmm.cpp",
    "small_mm.cpp",
)
CFLAGS = ["-O2", "-ffp-contract=off"]  # no implicit fused multiply-adds: each rounding is written out
STALE_LOCK_S = 600.0
"""Age in seconds past which a build folder's lock is a killed build's leftover."""
_LOADED: list[tuple[Any, str, str | None]] = []  # [(module or None, backend, why not)] once tried


def load() -> tuple[Any, str, str | None]:
    """``(module, backend, why)``: the loaded extension module, ``"extension"`` (from the wheel)
    or ``"jit"`` (built here), and ``why = None``; or ``(None, "none", why)`` when it cannot load."""
    if not _LOADED:
        try:
            from frl import _C as module  # type: ignore[attr-defined]

            _LOADED.append((module, "extension", None))
        except ImportError:
            module = _built()
            _LOADED.append((module, "jit", None) if module is not None else _build())
    return _LOADED[0]


def _build() -> tuple[Any, str, str | None]:
    """:func:`load`'s answer after building the sources with torch's JIT builder."""
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        why = f"no compiled extension in this install and no C++ compiler ({compiler}) on the PATH"
        return None, "none", why
    try:
        from torch.utils.cpp_extension import load as build

        _clear_stale_lock("frl_native")
        module = build("frl_native", [str(p) for p in _sources()], extra_cflags=CFLAGS, verbose=False)
    except Exception as err:  # a compiler that fails: the callers fall back
        return None, "none", f"building it failed ({err})"
    _write_stamp()
    return module, "jit", None


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


def _sources() -> list[Path]:
    csrc = Path(__file__).with_name("csrc")
    return [csrc / name for name in SOURCES]


def _stamp() -> str:
    """What a build depends on: torch's and Python's versions, the sources and the flags."""
    import torch

    digest = hashlib.sha256(f"{torch.__version__}|{sys.version}|{CFLAGS}".encode())
    for path in _sources():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _stamp_path() -> Path:
    from torch.utils.cpp_extension import _get_build_directory

    return Path(_get_build_directory("frl_native", verbose=False)) / "frl_native.stamp"


def _built() -> Any:
    """The module built earlier for these sources (its stamp matches), imported without torch's
    builder and its lock; None when there is none or anything about it differs."""
    try:
        stamp = _stamp_path()
        if not stamp.exists() or stamp.read_text() != _stamp():
            return None
        from torch.utils.cpp_extension import _import_module_from_library

        return _import_module_from_library("frl_native", str(stamp.parent), True)
    except Exception:  # no such torch helper, an unreadable or foreign build: build as usual
        return None


def _write_stamp() -> None:
    with contextlib.suppress(Exception):
        stamp = _stamp_path()
        partial = stamp.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(_stamp())
        os.replace(partial, stamp)
