"""Replay buffers: a pure ring (uniform or prioritized) in a TensorDict state, n-step folding,
and adapters to and from TorchRL's ``ReplayBuffer``.

``init``, ``add``, ``sample``, ``update_priorities`` and ``nstep`` are pure, so a buffer per seed
lives inside a vmapped, compiled training state; the TorchRL adapters run eagerly at the edge.
"""

from frl.buffers.nstep import nstep
from frl.buffers.ring import add, capacity, init, is_prioritized, sample, stored, update_priorities
from frl.buffers.torchrl_adapters import (
    ProportionalSampler,
    from_torchrl,
    to_torchrl,
    torchrl_batch,
    torchrl_prioritized,
)

__all__ = [
    "ProportionalSampler",
    "add",
    "capacity",
    "from_torchrl",
    "init",
    "is_prioritized",
    "nstep",
    "sample",
    "stored",
    "to_torchrl",
    "torchrl_batch",
    "torchrl_prioritized",
    "update_priorities",
]
