"""Run folders that are owned: a lock per live run, and files frl never mixes or overwrites.

``frl train --out DIR`` holds ``DIR/.frl-lock`` (pid, host, start time) while it runs; a second
run on the folder is refused while the first is alive, and a lock left by a dead process (same
host, pid gone) is taken over. A fresh run refuses a folder that holds files of a run
(``RUN_FILES``) unless ``--overwrite``, which moves them into ``DIR/replaced-<time>/``; other
files in the folder are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from frl.cli.common import UsageError

__all__ = ["RUN_FILES", "hold", "move_aside", "run_files"]

LOCK = ".frl-lock"
RUN_FILES = (
    "config.json",
    "checkpoint.pt",
    "metrics.csv",
    "metrics.jsonl",
    "results.json",
    "failure.json",
    "tensorboard",
)
"""The files and folders ``frl train`` writes into a run folder."""


def run_files(folder: Path) -> list[str]:
    """The run files present in ``folder``."""
    return [name for name in RUN_FILES if (folder / name).exists()]


def move_aside(folder: Path) -> Path:
    """Move ``folder``'s run files into a new ``folder/replaced-<time>/``; returns it."""
    aside = folder / time.strftime("replaced-%Y%m%d-%H%M%S")
    suffix = 0
    while aside.exists():
        suffix += 1
        aside = folder / f"{time.strftime('replaced-%Y%m%d-%H%M%S')}-{suffix}"
    aside.mkdir()
    for name in run_files(folder):
        (folder / name).rename(aside / name)
    return aside


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


@contextlib.contextmanager
def hold(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the duration (a UsageError when a live run holds it or the
    folder cannot be created)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {folder} cannot be created ({err.strerror or err})") from None
    path = folder / LOCK
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                other = json.loads(path.read_text())
            except (OSError, ValueError):
                other = {}
            same_host = other.get("host") == mine["host"]
            if other and same_host and not _alive(int(other.get("pid", -1))):
                path.unlink(missing_ok=True)  # a stale lock: its process is gone
                continue
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(other.get("started", 0)))
            who = f"pid {other.get('pid', '?')} on {other.get('host', '?')} since {since}"
            raise UsageError(
                f"--out {folder} is in use by another run ({who}); wait for it, or remove "
                f"{path} if that run is gone"
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(mine, f)
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
