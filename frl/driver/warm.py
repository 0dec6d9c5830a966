"""Warm starts: a configuration's compiled units saved once, loaded by every later run.

With a warm Inductor cache a rerun still traces every unit with TorchDynamo, and that tracing is
most of its start-up (PPO CartPole, 1 seed: 25 of 30 s). ``frl.run(..., warm_start=True)`` (on in
``frl train``) compiles the units under torch's precompile cache and saves
``torch.compiler.save_cache_artifacts()`` after the first iteration and the first evaluation, to
``<TORCHINDUCTOR_CACHE_DIR>/frl-warm/<key>.bin`` (with a compile helper's artifacts beside the
run's, :func:`pack`); a later run with the same key loads it and skips tracing and code
generation altogether. From the file alone, in an empty Inductor cache, it still skips tracing
(:func:`load_artifacts`) but the C++ compiler runs again (the small PPO program of
``tests/test_warm.py``: 15.6 s instead of 41 s cold and ~2-3 s with the cache).

The key is everything that shapes the program: torch's version, frl's source (and whether its
Inductor pass sends products to oneDNN on this machine), the agent and its
settings (hyper-parameters are data in the state and are left out, so a rerun with other values
hits), the environment, whether members are vmapped, the state's tree and every leaf's shape,
dtype, strides and device. The saved graphs keep only torch's portable guards
(``keep_portable_guards_unsafe``): the key stands in for the guards they drop, so warm starts
are only offered for agents built by frl's own ``make_train`` from a config (a hand-built agent
may capture values the key cannot see).

Recording the precompile entries costs one thing torch 2.13 repeats needlessly: for every
function dynamo inlines it reads that function's source again (``inspect.getsourcelines``, a
tokenizer pass over the file), once per inlining, not once per function: 48,799 reads for the
8-seed PPO CartPole program, 20.7 of its 165 s cold compile (measured, AMD EPYC). frl memoizes
that record per code object (:func:`_memoize_inlined_sources`); torch already caches each
module's whole source the same way, so the memo assumes nothing torch does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch

from frl import _inductor
from frl._compile import INDUCTOR_OPTIONS

__all__ = [
    "WarmStart",
    "compile_options",
    "load_artifacts",
    "pack",
    "read_artifacts",
    "run_key",
    "unpack",
    "wrapper_name",
]

_TAG: ContextVar[str | None] = ContextVar("frl_warm_tag", default=None)
_SOURCE: list[str] = []


_WRAPPERS: dict[str, set[str]] = {}


def wrapper_name(name: str) -> str:
    """The name of a compiled unit's wrapper: ``name`` plus the key of the warm start in progress
    (torch's precompile cache finds a function by its name), recorded so that pruning a saved
    compilation also removes the precompile entries it made."""
    tag = _TAG.get()
    if tag is None:
        return name
    _WRAPPERS.setdefault(tag, set()).add(f"{name}_{tag}")
    return f"{name}_{tag}"


def compile_options() -> dict[str, Any]:
    """``frl.compile`` options for a unit compiled under a warm start (portable guards only)."""
    if _TAG.get() is None:
        return {}
    return {"guard_filter_fn": torch.compiler.keep_portable_guards_unsafe}


def source_digest() -> str:
    """A hash of frl's installed source (Python, C++, presets), computed once per process."""
    if not _SOURCE:
        import frl

        root = Path(frl.__file__).resolve().parent
        digest = hashlib.sha256()
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".cpp", ".json") and path.is_file():
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
        _SOURCE.append(digest.hexdigest())
    return _SOURCE[0]


def run_key(train: Any, batched: bool, state: Any, variant: str = "") -> str | None:
    """The warm-start key of a run (``state``: the stacked training state; ``variant``: the
    driver's own choices that shape the units, e.g. whether bad members are frozen), or None
    where the agent cannot have one (not built by frl's ``make_train``, or an environment
    without a stable description)."""
    factory = getattr(train, "factory", None)
    if factory is None or not getattr(factory, "__module__", "").startswith("frl.algos."):
        return None
    env = repr(train.env)
    if " at 0x" in env:
        return None
    config = train.config
    settings = sorted((name, repr(getattr(config, name))) for name in config.setting_names())
    digest = hashlib.sha256()
    parts = (
        torch.__version__,
        source_digest(),
        _inductor.fingerprint(),
        factory.__module__,
        repr(settings),
        env,
        str(batched),
        variant,
    )
    for part in (*parts, repr(sorted(INDUCTOR_OPTIONS.items()))):
        digest.update(part.encode())
        digest.update(b"\0")
    leaves = sorted(state.items(include_nested=True, leaves_only=True), key=lambda kv: str(kv[0]))
    for name, x in leaves:
        digest.update(f"{name}|{tuple(x.shape)}|{x.dtype}|{x.stride()}|{x.device}".encode())
    return digest.hexdigest()[:16]


def _directory() -> Path:
    root = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not root:
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        root = cache_dir()
    return Path(root) / "frl-warm"


KEEP = 32
"""Saved compilations kept per cache folder (the newest; each is a few to tens of MB)."""


def _dynamo_entry(wrapper: str) -> str:
    """The folder torch's precompile cache keeps a function's entry in (its name and first line)."""
    return hashlib.sha256(wrapper.encode() + b"1").hexdigest()


def _prune(directory: Path, keep: int) -> None:
    """Keep the ``keep`` newest saved compilations; remove the others with the precompile
    entries their runs made (listed beside each in ``<key>.json``), and nothing else."""
    saved = sorted(directory.glob("*.bin"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in saved[keep:]:
        listing = path.with_suffix(".json")
        if listing.exists():
            try:
                wrappers = json.loads(listing.read_text())["wrappers"]
            except (OSError, ValueError, KeyError):
                wrappers = []
            for wrapper in wrappers:
                shutil.rmtree(directory.parent / "dynamo" / _dynamo_entry(wrapper), ignore_errors=True)
            listing.unlink(missing_ok=True)
        path.unlink(missing_ok=True)


def _memoize_inlined_sources() -> None:
    """Make torch's ``SourceInfo.add_code`` (the source record of an inlined function in a
    precompile entry) compute each code object's record once per process: the record is the
    function's source lines and its module's source, which torch reads again on every inlining.
    The first call for a code object runs torch's own ``add_code`` on an empty record and keeps
    what it added; later calls add the kept entries. A no-op where torch has no such method."""
    try:
        from torch._dynamo.package import SourceInfo
    except ImportError:  # pragma: no cover - a torch without precompile packages
        return
    original = getattr(SourceInfo, "add_code", None)
    if original is None or getattr(original, "_frl_memo", False):
        return
    records: dict[Any, frozenset[Any]] = {}  # code object -> its entries, for the process

    def add_code(self: Any, code: Any) -> None:
        entries = records.get(code)
        if entries is None:
            probe = SourceInfo(inlined_sources=set())
            original(probe, code)
            entries = records[code] = frozenset(probe.inlined_sources)
        self.inlined_sources.update(entries)

    add_code._frl_memo = True  # type: ignore[attr-defined]
    add_code.__wrapped__ = original  # type: ignore[attr-defined]
    SourceInfo.add_code = add_code


MAGIC = b"frl-warm-1\n"
"""The first bytes of a saved compilation: then, per part, its length (8 bytes, little-endian)
and the bytes ``torch.compiler.save_cache_artifacts`` gave (the run's, a compile helper's)."""


def pack(parts: list[bytes]) -> bytes:
    """Saved compilations ``parts`` as one file's bytes (:data:`MAGIC`)."""
    return MAGIC + b"".join(len(part).to_bytes(8, "little") + part for part in parts)


def unpack(data: bytes) -> list[bytes]:
    """The parts of :func:`pack`'s bytes; ValueError for anything else, or a truncated file."""
    if not data.startswith(MAGIC):
        raise ValueError("not a saved frl compilation")
    parts, i = [], len(MAGIC)
    while i < len(data):
        size = int.from_bytes(data[i : i + 8], "little")
        if i + 8 + size > len(data):
            raise ValueError("truncated")
        parts.append(data[i + 8 : i + 8 + size])
        i += 8 + size
    return parts


def read_artifacts(data: bytes) -> dict[str, list[Any]]:
    """The artifacts of ``torch.compiler.save_cache_artifacts``'s bytes by kind (``"inductor"``,
    ``"aot_autograd"``, ``"precompile"``, ...), from every segment. A process that saves more than
    once appends a segment per save, and torch 2.13's loader reads the segments into a dict by
    kind, keeping only the last save's: a run saved after its first iteration and again after its
    first evaluation loaded the evaluation's graph alone. ImportError on a torch without these
    internals."""
    from torch.compiler._cache import CacheArtifactManager, _deserialize_single_cache
    from torch.utils._appending_byte_serializer import AppendingByteSerializer

    CacheArtifactManager._ensure_cache_artifacts_registered()
    merged: dict[str, list[Any]] = {}
    for kind, artifacts in AppendingByteSerializer.to_list(data, deserialize_fn=_deserialize_single_cache):
        merged.setdefault(kind, []).extend(artifacts)
    return merged


def load_artifacts(data: bytes) -> None:
    """``torch.compiler.load_cache_artifacts`` of every segment of ``data``
    (:func:`read_artifacts`; torch's own loader where its internals differ)."""
    try:
        artifacts = read_artifacts(data)
    except ImportError:  # pragma: no cover - another torch
        torch.compiler.load_cache_artifacts(data)
        return
    from torch.compiler._cache import CacheArtifactManager

    CacheArtifactManager.populate_caches(artifacts)


class WarmStart:
    """The saved compilation of one run key: :meth:`load` before the units compile, :meth:`save`
    after new compilations (an atomic write; a file that fails to load is removed, and the run
    compiles as usual). :meth:`add` keeps another process's compilation (a compile helper's,
    :mod:`frl.driver.helper`) to be saved with the run's."""

    def __init__(self, key: str, directory: Path | None = None) -> None:
        self.key = key
        self.path = (directory or _directory()) / f"{key}.bin"
        self.loaded = False
        self._saved: set[str] = set()
        self._added: list[bytes] = []

    def load(self) -> bool:
        if self.path.exists():
            try:
                for part in unpack(self.path.read_bytes()):
                    load_artifacts(part)
                self.loaded = True
            except Exception as err:  # a stale or damaged file: compile as usual
                warnings.warn(f"frl: warm start {self.path} not loaded ({err}); compiling", stacklevel=2)
                self.path.unlink(missing_ok=True)
        return self.loaded

    def add(self, artifacts: bytes) -> None:
        """Save ``artifacts`` (another process's ``save_cache_artifacts`` bytes) with the run's."""
        self._added.append(artifacts)

    def save(self) -> None:
        artifacts = torch.compiler.save_cache_artifacts()
        if artifacts is None and not self._added:
            return
        parts = ([] if artifacts is None else [artifacts[0]]) + self._added
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(pack(parts))
        os.replace(partial, self.path)
        listing = {"wrappers": sorted(_WRAPPERS.get(self.key, ()))}
        self.path.with_suffix(".json").write_text(json.dumps(listing) + "\n")
        _prune(self.path.parent, KEEP)

    def save_once(self, event: str) -> None:
        """Save after ``event`` ("iteration", "evaluation") the first time it happens, unless
        this run loaded its compilation."""
        if not self.loaded and event not in self._saved:
            self._saved.add(event)
            self.save()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Units compiled inside carry this key in their names and record precompile entries."""
        _memoize_inlined_sources()
        token = _TAG.set(self.key)
        try:
            with torch._dynamo.config.patch(caching_precompile=True):
                yield
        finally:
            _TAG.reset(token)
