"""Checkpoints written atomically and verified on load.

A checkpoint is one ``torch.save`` file holding the payload and what proves it whole: a format
name and version, a content hash of every tensor (BLAKE2b over its dtype, shape and bytes, in
the payload's order) and one of everything else (containers, keys, batch sizes and non-tensor
values). :func:`load` recomputes both and refuses a file that does not match, so a
flipped byte in a weight, a truncated or empty file, or a file that is not a checkpoint is one
:class:`CheckpointError` naming the file and what to do, never a raw pickle traceback or a
silently wrong model. A crash mid-write never leaves a torn file behind (write to a temporary
file, then ``os.replace``). Files written before the format existed load unverified.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import Tensor

__all__ = ["FORMAT", "VERSION", "CheckpointError", "load", "save"]

FORMAT = "frl-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted: unreadable, corrupted, or of another format version."""


def _tensor_digest(x: Tensor) -> str:
    data = x.detach().cpu().contiguous().reshape(-1)
    digest = hashlib.blake2b(f"{x.dtype}|{tuple(x.shape)}".encode(), digest_size=16)
    if data.numel():
        digest.update(data.view(torch.uint8).numpy())
    return digest.hexdigest()


def _walk(x: Any, tensors: list[Tensor]) -> Any:
    """A process-independent description of ``x`` (containers, keys, batch sizes and non-tensor
    values), appending its tensors to ``tensors`` in order."""
    if isinstance(x, Tensor):
        tensors.append(x)
        return "tensor"
    if isinstance(x, TensorDictBase):
        return ("TensorDict", tuple(x.batch_size), [(k, _walk(v, tensors)) for k, v in x.items()])
    if isinstance(x, dict):
        return ("dict", [(repr(k), _walk(v, tensors)) for k, v in x.items()])
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [_walk(v, tensors) for v in x])
    return repr(x)


def _tensors_of(payload: Any) -> list[Tensor]:
    tensors: list[Tensor] = []
    _walk(payload, tensors)
    return tensors


def _digests(payload: Any) -> dict[str, Any]:
    tensors: list[Tensor] = []
    skeleton = repr(_walk(payload, tensors))
    structure = hashlib.blake2b(skeleton.encode(), digest_size=16).hexdigest()
    return {"tensors": [_tensor_digest(x) for x in tensors], "structure": structure}


def save(path: str | Path, payload: Any) -> Path:
    """``payload`` with its format, version and content hashes, written atomically.

    ``os.replace`` is atomic on POSIX and Windows: readers see the old checkpoint or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"format": FORMAT, "version": VERSION, "digests": _digests(payload), "payload": payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_stale(folder: str | Path, name: str) -> None:
    """Remove the temporary files a killed :func:`save` of ``folder/name`` left behind."""
    for stale in Path(folder).glob(f".{name}.*.tmp"):
        stale.unlink(missing_ok=True)


def load(path: str | Path) -> Any:
    """The payload of a checkpoint written by :func:`save`, verified against its hashes.

    Raises:
      CheckpointError: the file is empty, truncated or not a checkpoint, was written by a newer
        checkpoint format, or its content does not match its hashes (which tensor is named).
    """
    path = Path(path)
    advice = "restore it from a copy, or start a fresh run in another folder"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (a write that never finished?); {advice}")
    try:
        record = torch.load(path, weights_only=False)  # it holds TensorDicts: not weights_only
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} is unreadable (truncated or corrupted: {reason}); {advice}"
        ) from None
    if not (isinstance(record, dict) and record.get("format") == FORMAT):
        return record  # written before checkpoints carried hashes (or by plain torch.save)
    version = record.get("version")
    if version != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}; this frl reads version {VERSION} "
            "(use the frl that wrote it)"
        )
    payload, expected = record["payload"], record["digests"]
    found = _digests(payload)
    if found["structure"] != expected["structure"] or len(found["tensors"]) != len(expected["tensors"]):
        raise CheckpointError(
            f"checkpoint {path} is corrupted (its structure does not match its hash); {advice}"
        )
    bad = [i for i, (a, b) in enumerate(zip(found["tensors"], expected["tensors"], strict=True)) if a != b]
    if bad:
        tensors = _tensors_of(payload)
        shapes = ", ".join(f"#{i} {tuple(tensors[i].shape)}" for i in bad[:3])
        raise CheckpointError(
            f"checkpoint {path} is corrupted: {len(bad)} tensor(s) do not match their hashes "
            f"({shapes}); {advice}"
        )
    return payload
