"""Explicit, splittable random keys: threefry-2x32, bit-compatible with ``jax.random``.

frl never touches torch's global generator. Every random draw takes a *key*: an ``int64``
tensor of shape ``[2]`` holding two unsigned 32-bit words, laid out exactly like
``jax.random.key_data(jax.random.key(seed))``. Keys are split and folded, never mutated, so a
program's randomness is a pure function of its seed::

    k = frl.random.key(0)
    k_init, k_noise = frl.random.split(k)
    x = frl.random.normal(k_noise, (3,))

The generator is threefry-2x32 (20 rounds, Salmon et al. 2011, "Parallel random numbers: as
easy as 1, 2, 3", https://doi.org/10.1145/2063384.2063405) with JAX's default *partitionable*
counter layout: element ``i`` of any draw is the block function of the key and the counter
``(i >> 32, i mod 2**32)``. Keys, ``split``, ``fold_in``, ``bits``, ``randint``,
``bernoulli``, ``permutation`` and ``choice`` reproduce JAX 0.10 bit for bit; float samplers
agree to float rounding (``uniform`` and the uniform part of ``normal``/``gumbel`` are exact;
the transcendental functions differ from XLA's by a few ulp).

Every function takes ONE key of shape ``[2]``. For a batch of keys use ``torch.func.vmap``:
seed ``i`` inside a vmapped batch yields exactly what seed ``i`` yields alone. Shapes, dtypes
and counts are static Python values; keys, probabilities, logits and bounds may be (batched)
tensors. Only integer and float tensor ops are used (no CPU-only kernels, no bitcasts), so the
same code runs eagerly, under ``torch.func.vmap``, under ``torch.compile(fullgraph=True)`` and
on CUDA.

Integer results are ``torch.int64`` (torch's index dtype); their values equal JAX's ``int32``
results.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "KEY_DTYPE",
    "bernoulli",
    "bits",
    "categorical",
    "choice",
    "fold_in",
    "gumbel",
    "key",
    "native_backend",
    "normal",
    "permutation",
    "randint",
    "split",
    "stable_order",
    "threefry2x32",
    "truncated_normal",
    "uniform",
    "wrap_key_data",
]

KEY_DTYPE = torch.int64
"""dtype of a key's words: int64 holding values in ``[0, 2**32)`` (uint32 lacks torch ops)."""

Shape = int | Sequence[int]
Scalar = float | Tensor

_MASK32 = 0xFFFFFFFF
_PARITY = 0x1BD11BDA
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# --------------------------------------------------------------------------------------
# Threefry-2x32 and the counter layout
# --------------------------------------------------------------------------------------


def _rotl(x: Tensor, r: int) -> Tensor:
    return ((x << r) & _MASK32) | (x >> (32 - r))


def threefry2x32(k0: Tensor, k1: Tensor, c0: Tensor | int, c1: Tensor) -> tuple[Tensor, Tensor]:
    """The threefry-2x32 block function (20 rounds), elementwise over broadcast inputs.

    Words are int64 tensors holding unsigned 32-bit values; every sum and left shift is
    masked back to 32 bits. Key schedule ``ks = (k0, k1, k0 ^ k1 ^ 0x1BD11BDA)``; five groups
    of four rounds ``x0 += x1; x1 = rotl(x1, r) ^ x0`` with rotations (13, 15, 26, 6) and
    (17, 29, 16, 24) alternating, each group followed by the key injection
    ``x0 += ks[g mod 3]; x1 += ks[(g + 1) mod 3] + g`` for ``g = 1..5``.

    Args:
      k0, k1: key words.
      c0, c1: counter words.

    Returns:
      ``(x0, x1)``, the two output words, broadcast to a common shape.
    """
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0 = (c0 + ks[0]) & _MASK32
    x1 = (c1 + ks[1]) & _MASK32
    for g in range(5):
        for r in _ROTATIONS[g % 2]:
            x0 = (x0 + x1) & _MASK32
            x1 = _rotl(x1, r) ^ x0
        x0 = (x0 + ks[(g + 1) % 3]) & _MASK32
        x1 = (x1 + ks[(g + 2) % 3] + (g + 1)) & _MASK32
    return x0, x1


def _check_key(k: Tensor, fn: str) -> None:
    if not isinstance(k, Tensor):
        raise TypeError(f"{fn}: `key` must be a torch.Tensor made by frl.random.key, got {type(k)!r}")
    if k.dtype != KEY_DTYPE or k.shape != (2,):
        raise ValueError(
            f"{fn}: `key` must be an int64 tensor of shape [2] (one key), got dtype {k.dtype} and "
            f"shape {list(k.shape)}; for a batch of keys use torch.func.vmap"
        )


def _as_shape(shape: Shape, fn: str, name: str = "shape") -> tuple[int, ...]:
    if isinstance(shape, (int, torch.SymInt)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{fn}: `{name}` must be an int or a sequence of ints, got {shape!r}") from None
    if any(s < 0 for s in out):
        raise ValueError(f"{fn}: `{name}` must have non-negative sizes, got {out}")
    return out


def _threefry2x32_numpy(k0: np.ndarray, k1: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The block function on counters ``(0, 0..n-1)`` for keys ``k0, k1 [K, 1]`` (uint32): ``[K, n]``."""
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(_PARITY))
    with np.errstate(over="ignore"):
        x1 = np.arange(n, dtype=np.uint32)[None, :] + ks[1]
        x0 = np.broadcast_to(ks[0], x1.shape).copy()
        for g in range(5):
            for r in _ROTATIONS[g % 2]:
                x0 += x1
                x1 = (x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))
                x1 ^= x0
            x0 += ks[(g + 1) % 3]
            x1 += ks[(g + 2) % 3] + np.uint32(g + 1)
    return x0, x1


def _threefry2x32_python(k0: int, k1: int, n: int) -> tuple[list[int], list[int]]:
    """The block function on counters ``(0, 0..n-1)`` in Python ints (fastest for a few blocks)."""
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    out0, out1 = [], []
    for i in range(n):
        x0, x1 = ks[0], (i + ks[1]) & _MASK32
        for g in range(5):
            for r in _ROTATIONS[g % 2]:
                x0 = (x0 + x1) & _MASK32
                x1 = (((x1 << r) | (x1 >> (32 - r))) & _MASK32) ^ x0
            x0 = (x0 + ks[(g + 1) % 3]) & _MASK32
            x1 = (x1 + ks[(g + 2) % 3] + g + 1) & _MASK32
        out0.append(x0)
        out1.append(x1)
    return out0, out1


@torch.library.custom_op("frl::threefry_blocks", mutates_args=())
def _threefry_blocks(keys: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Both output words for counters ``0..n-1`` of each key: keys ``[..., 2]`` -> ``[..., n]`` twice.

    One operator instead of ~150 integer kernels per draw: under ``torch.compile`` dynamo
    traces one node (compile time on CPU is dominated by tracing), and under ``vmap`` one batched
    call replaces a vmapped kernel per round. This default kernel uses torch integer ops (any
    device); the CPU kernel below uses NumPy's native uint32 arithmetic.
    """
    idx = torch.arange(n, dtype=KEY_DTYPE, device=keys.device)
    return threefry2x32(keys[..., 0:1], keys[..., 1:2], 0, idx)


_NATIVE: list[Any] = []  # [module or None] once tried
_BACKEND: list[str] = []  # how the CPU kernel runs: "extension", "jit" or "numpy"


def _native_kernel() -> Any:
    """The C++ block function, or None (then NumPy): from frl's extension (:mod:`frl._native`:
    compiled into the wheel, else built once per machine when a C++ compiler is on the PATH), else
    NumPy, reported once by a warning. ``FRL_NATIVE_THREEFRY=0`` skips the C++ kernel."""
    if not _NATIVE:
        module, backend, why = None, "numpy", None
        if os.environ.get("FRL_NATIVE_THREEFRY", "1") == "0":
            why = "FRL_NATIVE_THREEFRY=0"
        else:
            from frl import _native

            module, backend, why = _native.load()
            backend = backend if module is not None else "numpy"
        if why is not None and why != "FRL_NATIVE_THREEFRY=0":
            warnings.warn(
                f"frl.random: the C++ threefry kernel is unavailable: {why}; using NumPy", stacklevel=2
            )
        _NATIVE.append(module)
        _BACKEND.append(backend)
    return _NATIVE[0]


def native_backend() -> str:
    """How random bits are made on the CPU: ``"extension"`` (the C++ operator compiled into the
    installed wheel), ``"jit"`` (built from source on this machine) or ``"numpy"`` (no compiler)."""
    _native_kernel()
    return _BACKEND[0]


@_threefry_blocks.register_kernel("cpu")
def _threefry_blocks_cpu(keys: Tensor, n: int) -> tuple[Tensor, Tensor]:
    native = _native_kernel()
    if native is not None:
        x0, x1 = native.threefry_blocks(keys.to(KEY_DTYPE), n)
        return x0, x1
    batch = keys.shape[:-1]
    if keys.numel() == 2 and n <= 4:
        k0, k1 = (int(w) for w in keys.reshape(2).tolist())
        w0, w1 = _threefry2x32_python(k0, k1, n)
        shape = (*batch, n)
        return torch.tensor(w0, dtype=KEY_DTYPE).reshape(shape), torch.tensor(w1, dtype=KEY_DTYPE).reshape(
            shape
        )
    words = keys.reshape(-1, 2).numpy().astype(np.uint32)
    x0, x1 = _threefry2x32_numpy(words[:, :1], words[:, 1:], n)
    return (
        torch.from_numpy(x0.astype(np.int64)).reshape(*batch, n),
        torch.from_numpy(x1.astype(np.int64)).reshape(*batch, n),
    )


@_threefry_blocks.register_fake
def _(keys: Tensor, n: int) -> tuple[Tensor, Tensor]:
    shape = (*keys.shape[:-1], n)
    return keys.new_empty(shape), keys.new_empty(shape)


@_threefry_blocks.register_vmap
def _(info, in_dims, keys: Tensor, n: int):
    keys = keys if in_dims[0] is None else keys.movedim(in_dims[0], 0)
    out = _threefry_blocks(keys, n)
    dim = None if in_dims[0] is None else 0
    return out, (dim, dim)


def _native_op() -> Any:
    """``torch.ops.frl_native.threefry_blocks`` (the C++ kernel as a dispatcher operator, with
    the fake kernel and vmap rule below), or None without the extension."""
    if not _NATIVE_OP:
        op = None
        if _native_kernel() is not None:
            op = torch.ops.frl_native.threefry_blocks.default

            @torch.library.register_fake("frl_native::threefry_blocks")
            def _(keys: Tensor, n: int) -> tuple[Tensor, Tensor]:
                shape = (*keys.shape[:-1], n)
                return keys.new_empty(shape), keys.new_empty(shape)

            _register_over_keys("threefry_blocks", op, outputs=2)
            uniform_op = torch.ops.frl_native.threefry_uniform_f32.default

            @torch.library.register_fake("frl_native::threefry_uniform_f32")
            def _(keys: Tensor, n: int, lo: float, span: float) -> Tensor:
                return keys.new_empty((*keys.shape[:-1], n), dtype=torch.float32)

            _register_over_keys("threefry_uniform_f32", uniform_op)
            split_op = torch.ops.frl_native.threefry_split.default

            @torch.library.register_fake("frl_native::threefry_split")
            def _(keys: Tensor, n: int) -> Tensor:
                return keys.new_empty((*keys.shape[:-1], n, 2))

            _register_over_keys("threefry_split", split_op)
            order_op = torch.ops.frl_native.stable_order.default

            @torch.library.register_fake("frl_native::stable_order")
            def _(words: Tensor) -> Tensor:
                return words.new_empty(words.shape)

            _register_over_keys("stable_order", order_op)
            _NATIVE_UNIFORM.append(uniform_op)
            _NATIVE_SPLIT.append(split_op)
            _NATIVE_ORDER.append(order_op)
        _NATIVE_OP.append(op)
    return _NATIVE_OP[0]


def _register_over_keys(name: str, op: Any, outputs: int = 1) -> None:
    """The vmap rule of ``frl_native::<name>``, an operator over a batch of keys ``[..., 2]`` (or of
    rows of words ``[..., n]``: its first argument) whose outputs lead with that argument's batch
    dims: the vmapped dim moved first."""

    def rule(info: Any, in_dims: tuple[int | None, ...], keys: Tensor, *args: Any):
        keys = keys if in_dims[0] is None else keys.movedim(in_dims[0], 0)
        dim = None if in_dims[0] is None else 0
        return op(keys, *args), (dim,) * outputs if outputs > 1 else dim

    torch.library.register_vmap(f"frl_native::{name}", rule)


_NATIVE_OP: list[Any] = []  # [OpOverload or None] once tried
_NATIVE_UNIFORM: list[Any] = []  # [OpOverload] with the extension
_NATIVE_SPLIT: list[Any] = []  # [OpOverload] with the extension
_NATIVE_ORDER: list[Any] = []  # [OpOverload] with the extension


def _native_uniform() -> Any:
    """``torch.ops.frl_native.threefry_uniform_f32`` (with its fake kernel and vmap rule), or None
    without the extension: float32 uniform draws in one eager call, where the threefry words,
    their mantissa and the scaling are eleven torch ops (~20 us). Compiled code keeps those ops,
    which Inductor fuses with their consumer (:mod:`frl._inductor`)."""
    _native_op()
    return _NATIVE_UNIFORM[0] if _NATIVE_UNIFORM else None


def _blocks(k: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Both output words for counters ``0..n-1`` (partitionable layout), flat ``[n]``.

    On the CPU through one operator, eager, vmapped or compiled (one traced node instead of
    ~150 integer ops): ``frl_native::threefry_blocks``, the C++ kernel registered with the
    dispatcher (no Python on the call path), or without a compiler the Python custom op
    ``frl::threefry_blocks`` (Python ints or NumPy). On other devices and for counters past
    ``2**32``, inline torch integer ops that Inductor fuses. All give the same words (tested).
    """
    if k.device.type == "cpu" and n < 2**32:
        # compiled code reads the operator a prior eager call resolved (loading is not traceable)
        op = (_NATIVE_OP[0] if _NATIVE_OP else None) if torch.compiler.is_compiling() else _native_op()
        if op is not None:
            return op(k, n)
        return _threefry_blocks(k, n)
    idx = torch.arange(n, dtype=KEY_DTYPE, device=k.device)
    c0: Tensor | int = (idx >> 32) if n > 2**32 else 0
    return threefry2x32(k[0], k[1], c0, idx & _MASK32)


# --------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------


def key(seed: int | Tensor, *, x64: bool = False, device: torch.device | str | None = None) -> Tensor:
    """A key from an integer seed, holding the words of ``jax.random.key_data(jax.random.key(seed))``.

    In JAX's default 32-bit mode the seed is narrowed to 32 bits: ``key(s) = (0, s mod 2**32)``.
    With ``x64=True`` (JAX with ``jax_enable_x64``): ``((s mod 2**64) >> 32, s mod 2**32)``.

    Args:
      seed: a Python int in ``[-2**63, 2**63)`` or an integer tensor of shape ``[]``
        (vmap over a tensor of seeds to make a batch of keys).
      x64: use JAX's 64-bit seeding.
      device: where to put a key made from an int (a tensor seed keeps its device).

    Returns:
      ``int64[2]``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, Tensor)):
        raise TypeError(f"key: `seed` must be an int or an integer tensor, got {type(seed)!r}")
    if isinstance(seed, int):
        if not -(2**63) <= seed < 2**63:
            raise ValueError(f"key: `seed` must lie in [-2**63, 2**63) like jax.random.key, got {seed}")
        hi = ((seed % 2**64) >> 32) if x64 else 0
        return torch.tensor([hi, seed & _MASK32], dtype=KEY_DTYPE, device=device)
    if seed.dtype.is_floating_point or seed.dtype == torch.bool or seed.dtype.is_complex:
        raise TypeError(f"key: `seed` tensor must have an integer dtype, got {seed.dtype}")
    if seed.dim() != 0:
        raise ValueError(
            f"key: `seed` tensor must be 0-d, got shape {list(seed.shape)}; use torch.func.vmap(key)"
        )
    s = seed.to(KEY_DTYPE)
    hi = (s >> 32) & _MASK32 if x64 else torch.zeros_like(s)
    return torch.stack([hi, s & _MASK32])


def wrap_key_data(data: Tensor) -> Tensor:
    """Keys from raw words (e.g. ``jax.random.key_data`` through DLPack or NumPy).

    Args:
      data: an integer tensor ``[..., 2]`` (uint32, int32 or int64) holding 32-bit words.

    Returns:
      ``int64[..., 2]`` with each word taken modulo ``2**32`` (int32 words are reinterpreted
      as unsigned).
    """
    if not isinstance(data, Tensor):
        data = torch.as_tensor(data)
    if data.dtype.is_floating_point or data.dtype.is_complex or data.dtype == torch.bool:
        raise TypeError(f"wrap_key_data: `data` must have an integer dtype, got {data.dtype}")
    if data.dim() == 0 or data.shape[-1] != 2:
        raise ValueError(f"wrap_key_data: `data` must have a trailing dim of 2, got {list(data.shape)}")
    return data.to(KEY_DTYPE) & _MASK32


def split(key: Tensor, num: Shape = 2) -> Tensor:
    """Split a key into ``num`` new keys: new key ``i`` is ``threefry(key, (0, i))``.

    Args:
      key: ``int64[2]``.
      num: a count or a shape ``S``.

    Returns:
      ``int64[num, 2]`` (or ``int64[*S, 2]``); iterate or index it for the keys.
    """
    _check_key(key, "split")
    shape = _as_shape(num, "split", "num")
    n = math.prod(shape)
    if key.device.type == "cpu" and n < 2**32 and not torch.compiler.is_compiling():
        _native_op()
        if _NATIVE_SPLIT:  # the same keys in one C++ call (compiled code fuses the ops below)
            keys = _NATIVE_SPLIT[0](key, n)
            return keys if len(shape) == 1 else keys.reshape(*shape, 2)
    x0, x1 = _blocks(key, n)
    return torch.stack([x0, x1], dim=-1).reshape(*shape, 2)


def fold_in(key: Tensor, data: int | Tensor) -> Tensor:
    """A new key from a key and an integer, ``threefry(key, (0, data mod 2**32))``.

    ``fold_in(key, d)`` equals ``split(key, n)[d]`` for any ``n > d``.

    Args:
      key: ``int64[2]``.
      data: a Python int in ``[0, 2**32)`` or an integer tensor of shape ``[]`` (taken modulo
        ``2**32``, like a NumPy integer in JAX).

    Returns:
      ``int64[2]``.
    """
    _check_key(key, "fold_in")
    if isinstance(data, bool) or not isinstance(data, (int, Tensor)):
        raise TypeError(f"fold_in: `data` must be an int or an integer tensor, got {type(data)!r}")
    if isinstance(data, int):
        if not 0 <= data <= _MASK32:
            raise ValueError(f"fold_in: `data` must lie in [0, 2**32) like jax.random.fold_in, got {data}")
        d: Tensor | int = data
    else:
        if data.dtype.is_floating_point or data.dtype.is_complex or data.dtype == torch.bool:
            raise TypeError(f"fold_in: `data` tensor must have an integer dtype, got {data.dtype}")
        if data.dim() != 0:
            raise ValueError(f"fold_in: `data` must be 0-d, got shape {list(data.shape)}; use vmap")
        d = data.to(KEY_DTYPE) & _MASK32
    x0, x1 = threefry2x32(key[0], key[1], 0, d)
    return torch.stack([x0, x1])


# --------------------------------------------------------------------------------------
# Raw bits
# --------------------------------------------------------------------------------------


def bits(key: Tensor, shape: Shape = (), width: int = 32) -> Tensor:
    """Uniform random bits, the words of ``jax.random.bits(key, shape, uint<width>)``.

    For element ``i`` with ``(x0, x1) = threefry(key, (i >> 32, i mod 2**32))``: 32 bits are
    ``x0 ^ x1``; 16 and 8 bits are its low bits; 64 bits are ``(x0 << 32) | x1`` (JAX with x64).

    Args:
      key: ``int64[2]``.
      shape: output shape.
      width: 8, 16, 32 or 64.

    Returns:
      ``int64[shape]`` holding values in ``[0, 2**width)``; for ``width=64`` the int64 holds
      the same bit pattern as JAX's uint64 (values ``>= 2**63`` read as negative).
    """
    _check_key(key, "bits")
    shape = _as_shape(shape, "bits")
    if width not in (8, 16, 32, 64):
        raise ValueError(f"bits: `width` must be 8, 16, 32 or 64, got {width}")
    x0, x1 = _blocks(key, math.prod(shape))
    if width == 64:
        hi = torch.where(x0 > _INT32_MAX, x0 - 2**32, x0)  # signed high word: no int64 overflow
        out = hi * 2**32 + x1
    else:
        out = (x0 ^ x1) & ((1 << width) - 1)
    return out.reshape(shape)


# --------------------------------------------------------------------------------------
# Floats
# --------------------------------------------------------------------------------------


def _check_float_dtype(dtype: torch.dtype, fn: str) -> None:
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: `dtype` must be one of {_FLOAT_DTYPES}, got {dtype}")


def _round_significand(x: Tensor, digits: int) -> Tensor:
    """Round float32 values to ``digits`` significant bits, half to even.

    Rounds like a cast to float16 (11 digits) or bfloat16 (8) for normal numbers, but with
    arithmetic that Inductor cannot fuse away (it drops ``.to(bfloat16)`` round trips).
    """
    mantissa, exponent = torch.frexp(x)
    scale = float(2**digits)
    return torch.ldexp(torch.round(mantissa * scale) / scale, exponent.to(x.dtype))


def _unit_uniform(key: Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """``f = m * 2**-nmant`` in [0, 1): JAX's mantissa trick, exact, without bitcasts.

    Returned as float32 for 16-bit dtypes (exact there too), else in ``dtype``.
    """
    x0, x1 = _blocks(key, math.prod(shape))
    if dtype == torch.float64:
        mant = (x0 << 20) | (x1 >> 12)  # top 52 of the 64-bit word (x0 << 32) | x1
        return mant.to(torch.float64).reshape(shape) * 2.0**-52
    if dtype == torch.float32:
        mant = (x0 ^ x1) >> 9
        return mant.to(torch.float32).reshape(shape) * 2.0**-23
    if dtype == torch.float16:
        mant = ((x0 ^ x1) & 0xFFFF) >> 6
        return mant.to(torch.float32).reshape(shape) * 2.0**-10
    mant = ((x0 ^ x1) & 0xFF) >> 1  # bfloat16 draws 8-bit words
    return mant.to(torch.float32).reshape(shape) * 2.0**-7


def _as_float(x: Scalar, dtype: torch.dtype, device: torch.device, fn: str, name: str) -> Tensor:
    if isinstance(x, Tensor):
        if not (x.dtype.is_floating_point or x.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"{fn}: `{name}` must be a real tensor, got dtype {x.dtype}")
        return x.to(dtype)
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{fn}: `{name}` must be a float or a tensor, got {type(x)!r}")
    return torch.tensor(x, dtype=dtype, device=device)


def _broadcasts_to(src: Sequence[int], dst: Sequence[int]) -> bool:
    """Whether ``src`` broadcasts to exactly ``dst`` (plain Python: ``torch.broadcast_shapes`` costs
    ~50 us per call in eager, a fifth of an eager categorical draw)."""
    return len(src) <= len(dst) and all(s == 1 or s == d for s, d in zip(reversed(src), reversed(dst)))


def _finite_floats(*values: Any) -> bool:
    return all(type(v) is float and math.isfinite(v) for v in values)


@functools.lru_cache(maxsize=256)
def _float32_bounds(minval: float, maxval: float) -> tuple[float, float]:
    """``(lo, hi - lo)`` as :func:`uniform` forms them in float32 (each rounded once), as floats."""
    lo, hi = np.float32(minval), np.float32(maxval)
    return float(lo), float(hi - lo)


def _fma_float32(f: Tensor, span: Tensor | float, lo: Tensor | float) -> Tensor:
    """``f * span + lo`` rounded once to float32, as a fused multiply-add (XLA's contraction).

    ``f``, ``span`` and ``lo`` hold float32 values (``f`` as float64). Their product is exact in
    float64 (24 + 24 bits), the sum is not: ``s = p + lo`` rounded to float64 and then to float32
    is a double rounding, wrong where ``s`` lands on a float32 midpoint that the exact sum misses
    (``p`` a tie, ``lo`` tiny). So the sum is rounded to odd (Boldo and Melquiond 2008): with the
    exact error ``e = (p + lo) - s`` (Knuth's TwoSum), an inexact ``s`` with an even last bit moves
    one float64 ulp towards the exact sum; a float32 rounding of a float64 rounded to odd is the
    correct rounding of the exact value (53 >= 24 + 2 bits).
    """
    p = f * span
    s = p + lo
    b = s - p
    e = (p - (s - b)) + (lo - b)
    even = (s.view(torch.int64) & 1) == 0
    towards = torch.where(e > 0, math.inf, -math.inf).to(torch.float64)
    return torch.where((e != 0) & even, torch.nextafter(s, towards), s).float()


def _check_broadcast(shape: tuple[int, ...], fn: str, **tensors: Tensor) -> None:
    for name, t in tensors.items():
        if not _broadcasts_to(t.shape, shape):
            raise ValueError(
                f"{fn}: `{name}` of shape {list(t.shape)} does not broadcast to shape {list(shape)}"
            )


def uniform(
    key: Tensor,
    shape: Shape = (),
    dtype: torch.dtype = torch.float32,
    minval: Scalar = 0.0,
    maxval: Scalar = 1.0,
) -> Tensor:
    """Uniform floats in ``[minval, maxval)``, as ``jax.random.uniform``.

    ``f = m * 2**-nmant`` with ``m`` the top ``nmant`` mantissa bits of a random word, then
    ``out = max(minval, f * (maxval - minval) + minval)``, the product-sum rounded once in
    float32 as XLA's fused multiply-add does, after each op in float16 and bfloat16.
    Bit-exact with JAX for float32, float16 and bfloat16 (16-bit products that fall below
    the normal range excepted); for float64 with a range other than ``[0, 1)`` the product
    and sum are rounded separately (at most 1 ulp from JAX's FMA).

    Args:
      key: ``int64[2]``.
      shape: output shape.
      dtype: float16, bfloat16, float32 or float64.
      minval, maxval: bounds; floats or tensors broadcastable to ``shape``.

    Returns:
      ``dtype[shape]``.
    """
    _check_key(key, "uniform")
    shape = _as_shape(shape, "uniform")
    _check_float_dtype(dtype, "uniform")
    eager_floats = (
        dtype == torch.float32 and _finite_floats(minval, maxval) and not torch.compiler.is_compiling()
    )
    if eager_floats and key.device.type == "cpu" and math.prod(shape) < 2**32:
        native = _native_uniform()
        if native is not None:  # the same values as below, in one C++ call
            return native(key, math.prod(shape), *_float32_bounds(minval, maxval)).reshape(shape)
    f = _unit_uniform(key, shape, dtype)
    is_default = (
        not isinstance(minval, Tensor) and not isinstance(maxval, Tensor) and minval == 0.0 and maxval == 1.0
    )
    if is_default:
        return f.to(dtype)
    if eager_floats:
        # eagerly, Python-float bounds skip four tensor constructions and casts: the same
        # float32 bounds and span, the same fused product-sum (compiled code folds them anyway)
        lo32, span32 = _float32_bounds(minval, maxval)
        return torch.clamp(_fma_float32(f.double(), span32, lo32), min=lo32)
    lo = _as_float(minval, dtype, key.device, "uniform", "minval")
    hi = _as_float(maxval, dtype, key.device, "uniform", "maxval")
    _check_broadcast(shape, "uniform", minval=lo, maxval=hi)
    span = hi - lo
    if dtype == torch.float32:  # one rounding, like XLA's fused multiply-add
        y = _fma_float32(f.double(), span.double(), lo.double())
    elif dtype == torch.float64:
        y = f * span + lo
    else:  # 16-bit floats: XLA rounds the product, then the sum
        digits = 11 if dtype == torch.float16 else 8
        product = _round_significand(f * span.float(), digits)
        y = _round_significand(product + lo.float(), digits).to(dtype)
    return torch.maximum(lo, y)


def _f32(x: float) -> float:
    """The float32 value nearest to ``x``, as a Python float."""
    return float(torch.tensor(x, dtype=torch.float32))


# Giles (2010), "Approximating the erfinv function", single-precision polynomials, as XLA
# compiles lax.erf_inv for float32 (highest degree first).
_ERFINV_CENTRAL = tuple(
    _f32(c)
    for c in (
        2.81022636e-08,
        3.43273939e-07,
        -3.5233877e-06,
        -4.39150654e-06,
        2.1858087e-04,
        -1.25372503e-03,
        -4.17768164e-03,
        0.246640727,
        1.50140941,
    )
)
_ERFINV_TAIL = tuple(
    _f32(c)
    for c in (
        -2.00214257e-04,
        1.00950558e-04,
        1.34934322e-03,
        -3.67342844e-03,
        5.73950773e-03,
        -7.6224613e-03,
        9.43887047e-03,
        1.00167406,
        2.83297682,
    )
)


def _horner_fma(coefficients: tuple[float, ...], t: Tensor) -> Tensor:
    """Evaluate a float32 polynomial by Horner steps rounded once each (as an FMA would)."""
    t64 = t.double()
    p = torch.full_like(t64, coefficients[0])
    for c in coefficients[1:]:
        p = (p * t64 + c).float().double()  # f32 * f32 is exact in f64: one rounding per step
    return p.float()


def _erfinv_f32(x: Tensor) -> Tensor:
    """XLA's float32 ``erf_inv`` (Giles 2010) for ``|x| < 1``."""
    w = -torch.log1p(-(x * x))
    central = _horner_fma(_ERFINV_CENTRAL, w - 2.5)
    tail = _horner_fma(_ERFINV_TAIL, torch.sqrt(w) - 3.0)
    return torch.where(w < 5.0, central, tail) * x


def _erfinv(u: Tensor) -> Tensor:
    if u.dtype == torch.float64:
        return torch.erfinv(u)
    return _erfinv_f32(u.float())


_SQRT2 = math.sqrt(2.0)
# nextafter(-1, 0) in each float dtype: the lower bound of the uniform that feeds erfinv.
_ABOVE_MINUS_ONE = {
    dt: float(torch.nextafter(torch.tensor(-1.0, dtype=dt), torch.tensor(0.0, dtype=dt)))
    for dt in _FLOAT_DTYPES
}


def normal(key: Tensor, shape: Shape = (), dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal samples, as ``jax.random.normal``: ``sqrt(2) * erfinv(u)``.

    ``u = uniform(key, shape, dtype, nextafter(-1, 0), 1)`` is bit-exact with JAX; float32 uses
    XLA's erf_inv polynomial, so results agree with JAX to a few ulp (the ``log1p`` inside
    differs); float64 uses ``torch.erfinv``.

    Args:
      key: ``int64[2]``.
      shape: output shape.
      dtype: a float dtype.

    Returns:
      ``dtype[shape]``.
    """
    _check_key(key, "normal")
    _check_float_dtype(dtype, "normal")
    u = uniform(key, shape, dtype, _ABOVE_MINUS_ONE[dtype], 1.0)
    z = _erfinv(u).to(dtype)
    return torch.tensor(_SQRT2, dtype=dtype, device=u.device) * z


def truncated_normal(
    key: Tensor,
    lower: Scalar,
    upper: Scalar,
    shape: Shape | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal samples truncated to ``(lower, upper)``, as ``jax.random.truncated_normal``.

    ``u ~ U[erf(lower / sqrt2), erf(upper / sqrt2))``, ``out = sqrt2 * erfinv(u)``, clipped to
    the open interval.

    Args:
      key: ``int64[2]``.
      lower, upper: bounds, floats or tensors broadcastable to ``shape``.
      shape: output shape (default: the broadcast shape of the bounds).
      dtype: a float dtype.

    Returns:
      ``dtype[shape]``.
    """
    _check_key(key, "truncated_normal")
    _check_float_dtype(dtype, "truncated_normal")
    lo = _as_float(lower, dtype, key.device, "truncated_normal", "lower")
    hi = _as_float(upper, dtype, key.device, "truncated_normal", "upper")
    shape = (
        tuple(torch.broadcast_shapes(lo.shape, hi.shape))
        if shape is None
        else _as_shape(shape, "truncated_normal")
    )
    sqrt2 = torch.tensor(_SQRT2, dtype=dtype, device=key.device)
    u = uniform(key, shape, dtype, torch.erf(lo / sqrt2), torch.erf(hi / sqrt2))
    out = sqrt2 * _erfinv(u).to(dtype)
    inf = torch.tensor(math.inf, dtype=dtype, device=key.device)
    return torch.clamp(out, torch.nextafter(lo, inf), torch.nextafter(hi, -inf))


def gumbel(key: Tensor, shape: Shape = (), dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard Gumbel samples, as ``jax.random.gumbel`` (mode "low"): ``-log(-log(u))``.

    ``u = uniform(key, shape, dtype, tiny, 1)`` (bit-exact with JAX); the logs agree to ulps.

    Args:
      key: ``int64[2]``.
      shape: output shape.
      dtype: a float dtype.

    Returns:
      ``dtype[shape]``.
    """
    _check_key(key, "gumbel")
    _check_float_dtype(dtype, "gumbel")
    return -_negated_gumbel(key, shape, dtype)


def _negated_gumbel(key: Tensor, shape: Shape, dtype: torch.dtype) -> Tensor:
    """``log(-log(u))``: minus :func:`gumbel`'s samples (``x - this`` is ``x + gumbel`` exactly)."""
    u = uniform(key, shape, dtype, torch.finfo(dtype).tiny, 1.0)
    return torch.log(-torch.log(u))


# --------------------------------------------------------------------------------------
# Discrete
# --------------------------------------------------------------------------------------


def categorical(key: Tensor, logits: Tensor, axis: int = -1, shape: Shape | None = None) -> Tensor:
    """Samples from categorical distributions, as ``jax.random.categorical`` (Gumbel-max).

    ``argmax(logits + g)`` over ``axis`` with ``g = gumbel(key, prefix + logits.shape)``.

    Args:
      key: ``int64[2]``.
      logits: unnormalised log-probabilities ``[..., A, ...]`` (``A`` at ``axis``).
      axis: the category axis.
      shape: output shape; must end with the batch shape (``logits.shape`` without ``axis``);
        extra leading dims draw independent samples. Default: the batch shape.

    Returns:
      ``int64[shape]`` indices in ``[0, A)``.
    """
    _check_key(key, "categorical")
    if not isinstance(logits, Tensor) or not logits.dtype.is_floating_point:
        raise TypeError("categorical: `logits` must be a floating-point tensor")
    if logits.dim() == 0:
        raise ValueError("categorical: `logits` must have at least one dim (the categories)")
    if not -logits.dim() <= axis < logits.dim():
        raise ValueError(f"categorical: `axis` {axis} is out of range for logits of {logits.dim()} dims")
    axis = axis % logits.dim()
    batch_shape = tuple(logits.shape[:axis]) + tuple(logits.shape[axis + 1 :])
    if shape is None:
        shape = batch_shape
    shape = _as_shape(shape, "categorical")
    n_prefix = len(shape) - len(batch_shape)
    if n_prefix < 0 or tuple(shape[n_prefix:]) != batch_shape:
        raise ValueError(
            f"categorical: `shape` {list(shape)} must end with the logits batch shape {list(batch_shape)}"
        )
    _check_float_dtype(logits.dtype, "categorical")
    # logits + g, as logits - (-g): the same floats, one op fewer
    negated = _negated_gumbel(key, tuple(shape[:n_prefix]) + tuple(logits.shape), logits.dtype)
    return torch.argmax(logits - negated, dim=axis - logits.dim())


def bernoulli(key: Tensor, p: Scalar = 0.5, shape: Shape | None = None) -> Tensor:
    """Bernoulli samples ``uniform(key, shape, p.dtype) < p``, as ``jax.random.bernoulli``.

    Args:
      key: ``int64[2]``.
      p: probability of ``True``; a float (taken as float32) or a float tensor broadcastable
        to ``shape``.
      shape: output shape (default: ``p``'s shape).

    Returns:
      ``bool[shape]``.
    """
    _check_key(key, "bernoulli")
    if isinstance(p, Tensor) and not p.dtype.is_floating_point:
        raise TypeError(f"bernoulli: `p` must be a float or a float tensor, got dtype {p.dtype}")
    p = _as_float(p, p.dtype if isinstance(p, Tensor) else torch.float32, key.device, "bernoulli", "p")
    shape = tuple(p.shape) if shape is None else _as_shape(shape, "bernoulli")
    _check_broadcast(shape, "bernoulli", p=p)
    return uniform(key, shape, p.dtype) < p


def _as_int_bound(x: int | Tensor, device: torch.device, name: str) -> Tensor:
    if isinstance(x, Tensor):
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise TypeError(f"randint: `{name}` must be an int or an integer tensor, got {x.dtype}")
        return x.to(torch.int64)
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"randint: `{name}` must be an int or an integer tensor, got {type(x)!r}")
    if not _INT32_MIN <= x <= _INT32_MAX:
        raise ValueError(f"randint: `{name}` must lie in the int32 range like JAX's default, got {x}")
    return torch.tensor(x, dtype=torch.int64, device=device)


def _mulmod32(a: Tensor, b: Tensor) -> Tensor:
    """``a * b mod 2**32`` for ``a, b`` in ``[0, 2**32)`` without int64 overflow."""
    return (a * (b & 0xFFFF) + (((a * (b >> 16)) & 0xFFFF) << 16)) & _MASK32


def randint(
    key: Tensor,
    shape: Shape,
    minval: int | Tensor,
    maxval: int | Tensor,
    dtype: torch.dtype = torch.int64,
) -> Tensor:
    """Uniform integers in ``[minval, maxval)``, as ``jax.random.randint`` with int32.

    Two independent 32-bit draws ``hi, lo`` are combined modulo ``span = maxval - minval``:
    ``off = ((hi mod span) * (2**32 mod span) + lo mod span) mod span`` in wrapping 32-bit
    arithmetic (JAX's algorithm, reproduced bit for bit, including its wrap-around). An empty
    range (``maxval <= minval``) returns ``minval``. Bounds are clipped to the int32 range;
    a tensor ``maxval`` above it includes ``2**31 - 1``.

    Args:
      key: ``int64[2]``.
      shape: output shape.
      minval, maxval: bounds; ints in the int32 range or integer tensors broadcastable to
        ``shape``.
      dtype: ``torch.int64`` or ``torch.int32``.

    Returns:
      ``dtype[shape]``.
    """
    _check_key(key, "randint")
    shape = _as_shape(shape, "randint")
    if dtype not in (torch.int32, torch.int64):
        raise TypeError(f"randint: `dtype` must be torch.int32 or torch.int64, got {dtype}")
    lo_bound = _as_int_bound(minval, key.device, "minval")
    hi_bound = _as_int_bound(maxval, key.device, "maxval")
    _check_broadcast(shape, "randint", minval=lo_bound, maxval=hi_bound)
    maxval_out_of_range = hi_bound > _INT32_MAX
    lo_bound = lo_bound.clamp(_INT32_MIN, _INT32_MAX)
    hi_bound = hi_bound.clamp(_INT32_MIN, _INT32_MAX)
    k_hi, k_lo = split(key)
    hi, lo = bits(k_hi, shape), bits(k_lo, shape)
    span = (hi_bound - lo_bound) & _MASK32
    span = torch.where(hi_bound <= lo_bound, torch.ones_like(span), span + maxval_out_of_range.to(span.dtype))
    # A span of 2**32 stands for JAX's wrapped span of 0: `x mod 2**32` is then the identity.
    r = 2**16 % span
    multiplier = ((r * r) & _MASK32) % span
    offset = (_mulmod32(hi % span, multiplier) + lo % span) & _MASK32
    return (lo_bound + offset % span).to(dtype)


def _shuffle_rounds(n: int) -> int:
    return math.ceil(3 * math.log(max(1, n)) / math.log(_MASK32))


def _shuffle(key: Tensor, x: Tensor, axis: int) -> Tensor:
    """JAX's shuffle: rounds of a stable sort of ``x`` along ``axis`` by fresh 32-bit keys."""
    for _ in range(_shuffle_rounds(x.numel())):
        key, sub = split(key)
        order = stable_order(bits(sub, tuple(x.shape)).movedim(axis, -1)).movedim(-1, axis)
        x = torch.gather(x, axis, order)
    return x


def stable_order(words: Tensor) -> Tensor:
    """The indices that sort ``words`` along the last dim, equal words in index order:
    ``torch.argsort(words, dim=-1, stable=True)`` for 32-bit words (what :func:`bits` draws).

    How frl turns random words into orders (:func:`permutation`; PPO's minibatch orders). On the
    CPU with frl's extension it is one operator, eager, vmapped or compiled
    (``frl_native::stable_order``, a radix sort: a row of 512 words in ~2 us where torch's merge
    sort takes ~16 us), which refuses words outside ``[0, 2**32)``; elsewhere ``torch.argsort``.

    Args:
      words: ``int64[..., n]``, values in ``[0, 2**32)``.

    Returns:
      ``int64[..., n]``: each row's stable ascending order.
    """
    if not isinstance(words, Tensor):
        raise TypeError(f"stable_order: `words` must be an int64 tensor, got {type(words).__name__}")
    if words.dtype != torch.int64 or words.dim() == 0:
        got = f"{words.dtype} {tuple(words.shape)}"
        raise ValueError(f"stable_order: `words` must be int64 with at least one dim, got {got}")
    if words.device.type == "cpu":
        # compiled code reads the operator a prior eager call resolved (loading is not traceable)
        ready = _NATIVE_OP if torch.compiler.is_compiling() else [_native_op()]
        if ready and ready[0] is not None:
            return _NATIVE_ORDER[0](words)
    return torch.argsort(words, dim=-1, stable=True)


def permutation(key: Tensor, x: int | Tensor, axis: int = 0, independent: bool = False) -> Tensor:
    """A random permutation of ``range(x)`` or of ``x`` along ``axis``, as ``jax.random.permutation``.

    Args:
      key: ``int64[2]``.
      x: an int ``n`` (permute ``arange(n)``) or a tensor.
      axis: the axis of ``x`` to permute.
      independent: permute each slice along ``axis`` independently (else whole slices move
        together).

    Returns:
      ``int64[n]`` or a tensor like ``x``.
    """
    _check_key(key, "permutation")
    if isinstance(x, bool) or not isinstance(x, (int, Tensor)):
        raise TypeError(f"permutation: `x` must be an int or a tensor, got {type(x)!r}")
    if isinstance(x, int):
        if x < 0:
            raise ValueError(f"permutation: `x` must be non-negative, got {x}")
        return _shuffle(key, torch.arange(x, dtype=torch.int64, device=key.device), 0)
    if x.dim() == 0:
        raise ValueError("permutation: `x` must be an int or a tensor with at least one dim")
    if not -x.dim() <= axis < x.dim():
        raise ValueError(f"permutation: `axis` {axis} is out of range for a tensor of {x.dim()} dims")
    axis = axis % x.dim()
    if independent or x.dim() == 1:
        return _shuffle(key, x, axis)
    order = _shuffle(key, torch.arange(x.shape[axis], dtype=torch.int64, device=x.device), 0)
    return torch.index_select(x, axis, order)


def choice(
    key: Tensor,
    a: int | Tensor,
    shape: Shape = (),
    replace: bool = True,
    p: Tensor | None = None,
    axis: int = 0,
) -> Tensor:
    """Random draws from ``range(a)`` or from the slices of ``a`` along ``axis``, as ``jax.random.choice``.

    With replacement and no ``p``: ``randint``; without replacement: a prefix of
    ``permutation``; with ``p``: inverse-CDF search (with replacement) or Gumbel top-k
    (without).

    Args:
      key: ``int64[2]``.
      a: an int ``n`` or a tensor.
      shape: the shape of the draws.
      replace: draw with replacement.
      p: probabilities ``[n]`` (need not be normalised).
      axis: the axis of ``a`` to draw along.

    Returns:
      ``int64[shape]`` for an int ``a``; else ``a`` with ``axis`` replaced by ``shape``.
    """
    _check_key(key, "choice")
    shape = _as_shape(shape, "choice")
    if isinstance(a, bool) or not isinstance(a, (int, Tensor)):
        raise TypeError(f"choice: `a` must be an int or a tensor, got {type(a)!r}")
    is_int = isinstance(a, int) or a.dim() == 0
    if is_int:
        n = int(a)
    else:
        if not -a.dim() <= axis < a.dim():
            raise ValueError(f"choice: `axis` {axis} is out of range for a tensor of {a.dim()} dims")
        axis = axis % a.dim()
        n = a.shape[axis]
    n_draws = math.prod(shape)
    if n <= 0 and n_draws > 0:
        raise ValueError(f"choice: `a` must hold at least one element, got {n}")
    if not replace and n_draws > n:
        raise ValueError(f"choice: cannot draw {n_draws} > {n} elements without replacement")
    if p is None:
        if replace:
            index = randint(key, (n_draws,), 0, n)
        else:
            index = permutation(key, n)[:n_draws]
    else:
        if not isinstance(p, Tensor) or not p.dtype.is_floating_point or p.shape != (n,):
            raise ValueError(f"choice: `p` must be a float tensor of shape [{n}], got {p!r}")
        if replace:
            cdf = torch.cumsum(p, dim=0)
            u = uniform(key, (n_draws,), p.dtype)
            index = torch.searchsorted(cdf, cdf[-1] * (1 - u))
        else:
            g = gumbel(key, (n,), p.dtype) + torch.log(p)
            index = torch.topk(g, n_draws).indices
    if is_int:
        return index.reshape(shape)
    out = torch.index_select(a, axis, index)
    return out.reshape(*a.shape[:axis], *shape, *a.shape[axis + 1 :])
