"""Import JAX for parity tests: skip without it, unless FRL_REQUIRE_JAX=1 (CI) makes that a failure."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def import_or_skip(name: str) -> ModuleType:
    """``importlib.import_module(name)``; a skip when missing, or an error under FRL_REQUIRE_JAX=1."""
    if os.environ.get("FRL_REQUIRE_JAX") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name)
