"""Replay buffers: a pure ring (uniform or prioritized) in a TensorDict state, n-step folding,
and adapters to and from TorchRL's ``ReplayBuffer``.

``init``, ``add``, ``sample``, ``update_priorities``, ``stage`` and ``nstep`` are pure, so a buffer per seed
lives inside a vmapped, compiled training state; ``add_`` is ``add`` writing into the ring in
place (its storage donated, as the agents use it), ``commit_`` a staged buffer's staging area
likewise. The TorchRL adapters run eagerly at the edge
(and load TorchRL on first use: ``import frl.buffers`` does not).
"""

import importlib
from typing import TYPE_CHECKING, Any

from frl.buffers.nstep import nstep
from frl.buffers.ring import (
    add,
    add_,
    capacity,
    commit_,
    init,
    is_prioritized,
    is_staged,
    sample,
    stage,
    stored,
    update_priorities,
)

if TYPE_CHECKING:
    from frl.buffers.torchrl_adapters import (
        ProportionalSampler,
        from_torchrl,
        to_torchrl,
        torchrl_batch,
        torchrl_prioritized,
    )

_ADAPTERS = ("ProportionalSampler", "from_torchrl", "to_torchrl", "torchrl_batch", "torchrl_prioritized")


def __getattr__(name: str) -> Any:
    if name in _ADAPTERS:
        return getattr(importlib.import_module("frl.buffers.torchrl_adapters"), name)
    raise AttributeError(f"module 'frl.buffers' has no attribute {name!r}")


__all__ = [
    "ProportionalSampler",
    "add",
    "add_",
    "capacity",
    "commit_",
    "from_torchrl",
    "init",
    "is_prioritized",
    "is_staged",
    "nstep",
    "sample",
    "stage",
    "stored",
    "to_torchrl",
    "torchrl_batch",
    "torchrl_prioritized",
    "update_priorities",
]
