"""``frl.run``: the driver's entry point, callable as a function and importable as a module.

``frl.run(train, seeds=8)`` trains; ``from frl.run import run, RunResult, evaluate`` imports its
names. The driver itself lives in :mod:`frl.driver` (the run loop, data sources, evaluation,
logging, checkpoints); this module re-exports it and makes itself callable, so the module and the
function of the same name never shadow each other.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from frl.driver import PureEnv, RunResult, evaluate, run
from frl.driver.collectors import Collectors

__all__ = ["Collectors", "PureEnv", "RunResult", "evaluate", "run"]


class _CallableModule(types.ModuleType):
    """This module, callable: ``frl.run(...)`` is :func:`frl.driver.run`."""

    def __call__(self, *args: Any, **kwargs: Any) -> RunResult:
        return run(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
