"""Checkpoints written atomically: a crash mid-write never leaves a torn file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["load", "save"]


def save(path: str | Path, payload: Any) -> Path:
    """``torch.save(payload)`` to a temporary file in the same folder, then ``os.replace`` it in.

    ``os.replace`` is atomic on POSIX and Windows: readers see the old checkpoint or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path) -> Any:
    """Load a checkpoint written by :func:`save` (it holds TensorDicts: not ``weights_only``)."""
    return torch.load(Path(path), weights_only=False)
