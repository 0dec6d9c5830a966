"""JAX interop (the ``jax`` extra): arrays, parameters, environments and functions.

* :func:`to_jax` / :func:`from_jax`: tensors and TensorDicts to JAX arrays and dict pytrees and
  back, zero-copy through DLPack (``arrays``); :func:`to_jax_key` / :func:`from_jax_key` for
  random keys (frl's keys are ``jax.random``'s words).
* :func:`to_flax` / :func:`from_flax`: frl MLP params to flax ``Dense`` variables and back
  (``params``).
* :class:`GymnaxEnv`: any gymnax environment as a frl pure environment (``gymnax``); also
  ``frl.envs.make("gymnax:<id>")`` once this module is importable.
* :func:`jax_function`: a JAX function as a torch operator that works under autograd,
  ``torch.func.vmap`` and ``torch.compile`` (``functions``).

Nothing else in frl imports JAX.
"""

from frl import envs as _envs
from frl.interop.jax.arrays import from_jax, from_jax_key, is_zero_copy, to_jax, to_jax_key, x64_enabled
from frl.interop.jax.functions import JaxFunction, jax_function
from frl.interop.jax.gymnax import PREFIX, GymnaxEnv, make_gymnax
from frl.interop.jax.params import from_flax, to_flax

_envs.register_prefix(PREFIX, make_gymnax)

__all__ = [
    "GymnaxEnv",
    "JaxFunction",
    "from_flax",
    "from_jax",
    "from_jax_key",
    "is_zero_copy",
    "jax_function",
    "make_gymnax",
    "to_flax",
    "to_jax",
    "to_jax_key",
    "x64_enabled",
]
