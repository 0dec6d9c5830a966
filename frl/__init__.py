"""frl: functional reinforcement learning on torch.

Algorithms are pure functions over TensorDicts (params, optimizer states, batches), so
``torch.func`` transforms them and ``torch.compile`` compiles them: one program trains one
seed, 256 seeds or an ensemble alike. Randomness comes from explicit ``frl.random`` keys,
bit-compatible with ``jax.random``.

The root is lazy: ``import frl.random`` or ``import frl.losses`` loads neither TorchRL nor
gymnasium nor the driver; ``frl.run``, ``frl.compile`` and the subpackages load on first use.
``frl.run`` is both the driver's module and a callable (``frl.run(train, seeds=8)``).
"""

from __future__ import annotations

import importlib
from typing import Any

try:  # written by setuptools-scm from the git tags when the package is built or installed
    from frl._version import __version__
except ImportError:  # a source tree that was never installed
    __version__ = "0.1.0+unknown"

_SUBMODULES = (
    "algos",
    "buffers",
    "distributed",
    "distributions",
    "driver",
    "envs",
    "host_memory",
    "interop",
    "launch",
    "llm",
    "losses",
    "nn",
    "optim",
    "planning",
    "random",
    "returns",
    "run",
    "tree",
    "update",
)

__all__ = ["__version__", "compile", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name == "compile":
        from frl._compile import compile

        return compile
    if name in _SUBMODULES:
        return importlib.import_module(f"frl.{name}")
    raise AttributeError(f"module 'frl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
