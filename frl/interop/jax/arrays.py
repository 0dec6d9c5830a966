"""Tensors and TensorDicts to JAX arrays and back, through DLPack (zero-copy where possible).

``to_jax`` and ``from_jax`` share memory with their input whenever DLPack allows it, so a
conversion costs microseconds whatever the size and writes on one side show on the other:

- a contiguous tensor of a dtype JAX has (bool, uint8..uint32, int8..int32, float16, bfloat16,
  float32, complex64; 64-bit ones with ``jax_enable_x64`` on): zero-copy (the array's buffer is
  the tensor's memory);
- a ``requires_grad`` tensor: detached, then zero-copy (JAX arrays carry no autograd);
- a non-contiguous view (transpose, slice with a stride, ``expand``): one contiguous copy (DLPack
  cannot describe the view to JAX);
- a view whose start is not 64-byte aligned (``x[1:]``): JAX copies it (XLA needs aligned
  buffers);
- a 64-bit dtype with ``jax_enable_x64`` off: ``ValueError`` naming the leaf, unless
  ``downcast=True`` (an explicit, range-checked cast to 32 bits).

Trees: a ``TensorDict`` or ``dict`` becomes a ``dict`` pytree (nested the same way), lists and
tuples keep their type; ``from_jax`` turns dicts back into a ``TensorDict`` (``batch_size=[]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

__all__ = ["from_jax", "from_jax_key", "is_zero_copy", "to_jax", "to_jax_key", "x64_enabled"]

_WIDE = {torch.int64: torch.int32, torch.uint64: torch.uint32, torch.float64: torch.float32}
_WIDE[torch.complex128] = torch.complex64


def _fast_cpu_import() -> Any:
    """jaxlib's DLPack importer, called directly for CPU tensors.

    ``jax.dlpack.from_dlpack`` spends ~30 us per array in Python (device lookup, stream query,
    a dtype-canonicalising ``jnp.asarray``); the importer underneath takes ~6 us. Its signature
    is private (jaxlib extension version 467, JAX 0.10): any other version uses the public path.
    """
    try:
        from jax._src.lib import _jax, jaxlib_extension_version

        if jaxlib_extension_version != 467 or not hasattr(_jax, "dlpack_managed_tensor_to_buffer"):
            return None
        device = jax.devices("cpu")[0]
    except Exception:  # pragma: no cover - another jaxlib, or no CPU backend
        return None
    cpu = 1  # DLDeviceType.kDLCPU

    def importer(x: Tensor) -> jax.Array:
        return _jax.dlpack_managed_tensor_to_buffer(x.__dlpack__(), device, None, None, cpu)

    return importer


_FAST: list[Any] = []


def dlpack_to_jax(x: Tensor) -> jax.Array:
    """A contiguous tensor as a JAX array on the same memory (JAX copies misaligned starts)."""
    if x.device.type == "cpu":
        if not _FAST:
            _FAST.append(_fast_cpu_import())
        if _FAST[0] is not None:
            return _FAST[0](x)
    return jax.dlpack.from_dlpack(x)


def x64_enabled() -> bool:
    """Whether JAX keeps 64-bit dtypes (``jax.config.update("jax_enable_x64", True)``)."""
    return bool(jax.config.read("jax_enable_x64"))


def _narrow(x: Tensor, where: str) -> Tensor:
    """An explicit 32-bit copy of a 64-bit tensor; integers must fit."""
    target = _WIDE[x.dtype]
    if not target.is_floating_point and not target.is_complex and x.numel():
        info = torch.iinfo(target)
        lo, hi = int(x.min()), int(x.max())
        if lo < info.min or hi > info.max:
            raise ValueError(
                f"to_jax: {where} holds {x.dtype} values in [{lo}, {hi}], outside {target}'s range; "
                "enable jax_enable_x64 to keep them"
            )
    return x.to(target)


def _tensor_to_jax(x: Tensor, where: str, downcast: bool) -> jax.Array:
    if x.dtype in _WIDE and not x64_enabled():
        if not downcast:
            raise ValueError(
                f"to_jax: {where} is {x.dtype}, but JAX runs with jax_enable_x64 off and would "
                f"silently make it {_WIDE[x.dtype]}; call jax.config.update('jax_enable_x64', True), "
                "or pass downcast=True for an explicit (range-checked) 32-bit copy"
            )
        x = _narrow(x, where)
    x = x.detach()
    if not x.is_contiguous():
        x = x.contiguous()
    return dlpack_to_jax(x)


def to_jax(tree: Any, *, downcast: bool = False) -> Any:
    """Tensors (in a tensor, ``TensorDict``, dict, list or tuple) as JAX arrays.

    Args:
      tree: a tensor or a nest of them; non-tensor leaves are returned unchanged.
      downcast: with ``jax_enable_x64`` off, cast 64-bit leaves to 32 bits (integers must fit)
        instead of raising.

    Returns:
      The same nest with ``jax.Array`` leaves; TensorDicts become dicts.
    """

    def walk(x: Any, where: str) -> Any:
        if isinstance(x, Tensor):
            return _tensor_to_jax(x, where, downcast)
        if isinstance(x, TensorDictBase):
            return {k: walk(x.get(k), f"{where}[{k!r}]") for k in x.keys()}  # noqa: SIM118 (TensorDict has no `in`)
        if isinstance(x, Mapping):
            return {k: walk(v, f"{where}[{k!r}]") for k, v in x.items()}
        if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
            return type(x)(walk(v, f"{where}[{i}]") for i, v in enumerate(x))
        return x

    return walk(tree, "`tree`" if not isinstance(tree, Tensor) else "the tensor")


def _array_to_torch(a: Any) -> Tensor:
    if isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
        raise TypeError("from_jax: a typed PRNG key array; use from_jax_key for keys")
    if not isinstance(a, jax.Array):
        a = jnp.asarray(a)
    return torch.from_dlpack(a)


def from_jax(tree: Any, *, tensordict: bool = True) -> Any:
    """JAX arrays (in an array or a dict/list/tuple pytree) as tensors sharing their memory.

    Args:
      tree: an array or a nest of them (NumPy arrays are moved to JAX first).
      tensordict: dicts become ``TensorDict(batch_size=[])`` (``False``: plain dicts).

    Returns:
      The same nest with tensor leaves. Writing to them writes the JAX buffers, which JAX
      assumes immutable: clone before an in-place update.
    """

    def walk(x: Any) -> Any:
        if isinstance(x, Mapping):
            out = {k: walk(v) for k, v in x.items()}
            return TensorDict(out, batch_size=[]) if tensordict else out
        if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
            return type(x)(walk(v) for v in x)
        if isinstance(x, (jax.Array,)) or hasattr(x, "__array__"):
            return _array_to_torch(x)
        return x

    return walk(tree)


def is_zero_copy(tensor: Tensor, array: jax.Array) -> bool:
    """Whether ``array`` reads ``tensor``'s memory (same first-element address)."""
    return tensor.numel() > 0 and array.unsafe_buffer_pointer() == tensor.data_ptr()


def to_jax_key(key: Tensor) -> jax.Array:
    """A frl key (``int64 [..., 2]`` of uint32 words) as a typed ``jax.random`` key.

    ``jax.random.X(to_jax_key(k), ...)`` draws exactly what ``frl.random.X(k, ...)`` draws.
    """
    if not isinstance(key, Tensor) or key.shape[-1:] != (2,) or key.dtype.is_floating_point:
        raise ValueError(f"to_jax_key: `key` must be an integer tensor [..., 2], got {key!r:.80}")
    words = jnp.asarray(key.detach().cpu().to(torch.int64).numpy().astype("uint32"))
    return jax.random.wrap_key_data(words)


def from_jax_key(key: jax.Array) -> Tensor:
    """A ``jax.random`` key (typed, or raw ``uint32 [..., 2]`` data) as a frl key."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    if key.dtype != jnp.uint32 or key.shape[-1:] != (2,):
        raise ValueError(
            f"from_jax_key: expected a threefry key or uint32 [..., 2], got {key.dtype}{key.shape}"
        )
    return torch.from_numpy(jax.device_get(key).astype("int64"))
