"""The JAX-interop examples run (small settings) and do what they say."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from tests.jax_helpers import import_or_skip

import_or_skip("jax")
import_or_skip("gymnax")
pytestmark = pytest.mark.jax

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # flax modules (dataclasses) look their module up
    spec.loader.exec_module(module)
    return module


def test_jax_env_torch_learner_runs_and_improves():
    """gymnax CartPole stepped in JAX, PPO in torch: 10k steps lift the return above random (~22)."""
    final = load("jax_env_torch_learner").main(["--total-timesteps", "10240"])
    assert math.isfinite(final) and final > 40, final


def test_flax_params_example_trains_both_ways():
    mse_frl, mse_optax = load("flax_params").main(["--steps", "300"])
    assert mse_frl < 0.05 and mse_optax < 0.05, (mse_frl, mse_optax)
