"""JAX functions as torch operators: ``jax_function(fn)``.

``jax_function(fn)`` registers ``fn`` (jitted) as a ``torch.library`` custom operator whose
tensors cross to JAX and back through DLPack without copies. Because it is an operator,
torch treats it like any other:

* eager calls, ``loss.backward()`` (the backward runs ``jax.vjp(fn)``), and
  ``torch.compile(fullgraph=True)`` (the operator is an opaque node with shapes from
  ``jax.eval_shape``; Inductor compiles everything around it);
* ``torch.func.vmap``: the batching rule calls ``jax.vmap(fn)`` (nested vmaps nest), so a
  vmapped, compiled frl rollout can step a JAX environment.

The backward and the batched forms are the same operator called with another ``mode``
string, and the operator's name carries a digest of the function (``cache_key``), so graphs
that Inductor caches on disk stay valid in a new process.

What does not work, by construction: ``torch.func.grad``/``vjp``/``jacrev`` through the
operator (torch's functorch transforms do not run a custom operator's autograd formula; use
``loss.backward()`` or ``torch.autograd.grad``), forward-mode AD, double backward, and
Python-side effects inside ``fn`` (it is traced by ``jax.jit`` once per input signature).
Arguments are positional tensors (bind Python values with ``functools.partial`` first); the
output is an array or a nest (tuple, list, dict) of arrays whose structure does not depend on
the input shapes. 64-bit tensors need ``jax_enable_x64``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch import Tensor

from frl.interop.jax.arrays import dlpack_to_jax, x64_enabled

__all__ = ["JaxFunction", "jax_function"]

_LIBRARY = "frl_jax"
_OPS: dict[str, Any] = {}  # name -> _Op: one registration per name and process
_JAX_DTYPES = {
    torch.bool: jnp.bool_,
    torch.uint8: jnp.uint8,
    torch.int8: jnp.int8,
    torch.int16: jnp.int16,
    torch.int32: jnp.int32,
    torch.int64: jnp.int64,
    torch.uint32: jnp.uint32,
    torch.float16: jnp.float16,
    torch.bfloat16: jnp.bfloat16,
    torch.float32: jnp.float32,
    torch.float64: jnp.float64,
    torch.complex64: jnp.complex64,
}
_TORCH_DTYPES = {jnp.dtype(v): k for k, v in _JAX_DTYPES.items()}
_WIDE_DTYPES = (torch.int64, torch.float64)


_SMALL = 1 << 16  # bytes: below this, jit copying a NumPy view beats importing through DLPack


def _to_jax(x: Tensor) -> Any:
    """An operator input for ``jax.jit``: small tensors as NumPy views (jit copies them, cheaper
    than DLPack's per-array overhead), large ones (and bfloat16) through DLPack, zero-copy."""
    x = x.detach()
    if x.device.type == "cpu" and x.dtype != torch.bfloat16 and x.numel() * x.element_size() < _SMALL:
        return x.numpy()
    return dlpack_to_jax(x.contiguous())


def _to_torch(outs: Sequence[jax.Array], inputs: Sequence[Tensor]) -> list[Tensor]:
    """Operator outputs sharing the JAX buffers (read-only NumPy views on the CPU, else DLPack)."""
    tensors = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
        for a in outs:
            cpu = a.dtype != jnp.bfloat16 and all(d.platform == "cpu" for d in a.devices())
            t = torch.from_numpy(np.asarray(a)) if cpu else torch.from_dlpack(a)
            # an input forwarded by jit (DLPack path) must not come back as an alias
            if t.numel() and any(t.data_ptr() == x.data_ptr() for x in inputs if x.numel()):
                t = t.clone()
            tensors.append(t)
    return tensors


def _spec(tree: Any) -> Any:
    """A plain-Python description of a JAX output pytree (traceable by dynamo when rebuilt)."""
    if isinstance(tree, tuple) and not hasattr(tree, "_fields"):
        return ("tuple", tuple(_spec(v) for v in tree))
    if isinstance(tree, list):
        return ("list", tuple(_spec(v) for v in tree))
    if isinstance(tree, Mapping):
        keys = tuple(sorted(tree))
        return ("dict", keys, tuple(_spec(tree[k]) for k in keys))
    if tree is None:
        return ("none",)
    return ("leaf",)  # arrays, and Python numbers (made arrays)


def _leaves_in_spec_order(tree: Any) -> list[Any]:
    if isinstance(tree, (tuple, list)) and not hasattr(tree, "_fields"):
        return [leaf for v in tree for leaf in _leaves_in_spec_order(v)]
    if isinstance(tree, Mapping):
        return [leaf for k in sorted(tree) for leaf in _leaves_in_spec_order(tree[k])]
    if tree is None:
        return []
    if isinstance(tree, (bool, int, float, complex)):
        return [jnp.asarray(tree)]
    if not hasattr(tree, "shape"):
        raise TypeError(
            f"jax_function: outputs must be arrays in tuples, lists or dicts, got {type(tree).__name__}"
        )
    return [tree]


def _rebuild(spec: Any, leaves: Sequence[Tensor], start: int = 0) -> tuple[Any, int]:
    kind = spec[0]
    if kind == "leaf":
        return leaves[start], start + 1
    if kind == "none":
        return None, start
    if kind == "dict":
        out = {}
        for k, s in zip(spec[1], spec[2]):
            out[k], start = _rebuild(s, leaves, start)
        return out, start
    items = []
    for s in spec[1]:
        item, start = _rebuild(s, leaves, start)
        items.append(item)
    return (tuple(items) if kind == "tuple" else items), start


def _vmap(fn: Callable[..., list[jax.Array]], dims: Sequence[int | None]) -> Callable[..., list[jax.Array]]:
    return jax.vmap(fn, in_axes=tuple(dims), out_axes=0)


def _vjp(
    fn: Callable[..., list[jax.Array]], in_float: Sequence[bool], out_float: Sequence[bool]
) -> Callable[..., list[jax.Array]]:
    """``(inputs..., cotangents of the float outputs...) -> cotangents of the float inputs``."""
    n_in = len(in_float)
    diff = [i for i, f in enumerate(in_float) if f]

    def pullback(*args: jax.Array) -> list[jax.Array]:
        xs, cts = list(args[:n_in]), list(args[n_in:])

        def f(*dx: jax.Array) -> list[jax.Array]:
            full = list(xs)
            for i, d in zip(diff, dx):
                full[i] = d
            return [o for o, fl in zip(fn(*full), out_float) if fl]

        _, vjp = jax.vjp(f, *[xs[i] for i in diff])
        return list(vjp(cts))

    return pullback


_VMAP, _VJP = 0, 1  # the kinds of a transformation step in an operator's `mode`


class _Op:
    """ONE registered operator per function: ``op(xs, mode) -> list of tensors``.

    ``mode`` names a transformation of the function as a JSON list applied in order:
    ``[]`` is the function, ``[_VMAP, dims]`` batches it (the vmap rule appends this) and
    ``[_VJP, in_float, out_float]`` is its pullback (the backward appends this). The step kinds
    are numbers, so ``mode`` holds no quote: Inductor's C++ wrapper pastes a string argument of
    an operator it calls back into Python unescaped into its C++ source (torch 2.13). Every
    derived form is the same operator with another ``mode`` string, so a compiled graph only
    ever names operators that exist as soon as their :class:`JaxFunction` does (a graph loaded
    from Inductor's cache in a new process runs as it was compiled).
    """

    def __init__(self, flat_fn: Callable[..., list[jax.Array]], name: str, differentiable: bool) -> None:
        self.flat_fn = flat_fn
        self.name = f"{_LIBRARY}::{name}"
        self.differentiable = differentiable
        self.out_spec: list[Any] = []  # the output nest, set by JaxFunction
        self._jitted: dict[str, Callable[..., Any]] = {}
        self._shapes: dict[tuple[str, tuple[Any, ...]], list[jax.ShapeDtypeStruct]] = {}

        @torch.library.custom_op(self.name, mutates_args=())
        def op(xs: list[Tensor], mode: str) -> list[Tensor]:
            return _to_torch(self.jitted(mode)(*[_to_jax(x) for x in xs]), xs)

        @op.register_fake
        def _(xs: list[Tensor], mode: str) -> list[Tensor]:
            device = xs[0].device if xs else torch.device("cpu")
            return [
                torch.empty(s.shape, dtype=_TORCH_DTYPES[jnp.dtype(s.dtype)], device=device)
                for s in self.out_shapes(xs, mode)
            ]

        @op.register_vmap
        def _(info: Any, in_dims: Any, xs: list[Tensor], mode: str) -> tuple[list[Tensor], list[int | None]]:
            dims = list(in_dims[0])
            if all(d is None for d in dims):
                outs = self.op(xs, mode)
                return outs, [None] * len(outs)
            outs = self.op(xs, _extend(mode, [_VMAP, dims]))
            return outs, [0] * len(outs)

        if differentiable:
            op.register_autograd(self._backward, setup_context=self._setup_context)
        self.op = op

    def function(self, mode: str) -> Callable[..., list[jax.Array]]:
        fn = self.flat_fn
        for step in json.loads(mode) if mode else []:
            # "vmap"/"vjp": the spelling up to frl 0.1.1.dev23, which graphs in a user's Inductor cache
            # still carry (its key covers the traced graph, not this operator's vmap rule)
            fn = _vmap(fn, step[1]) if step[0] in (_VMAP, "vmap") else _vjp(fn, step[1], step[2])
        return fn

    def jitted(self, mode: str) -> Callable[..., Any]:
        if mode not in self._jitted:
            self._jitted[mode] = jax.jit(self.function(mode))
        return self._jitted[mode]

    def out_shapes(self, xs: Sequence[Tensor], mode: str) -> list[jax.ShapeDtypeStruct]:
        sig = (mode, tuple((tuple(x.shape), x.dtype) for x in xs))
        if sig not in self._shapes:
            args = [jax.ShapeDtypeStruct(s, _JAX_DTYPES[d]) for s, d in sig[1]]
            self._shapes[sig] = list(jax.eval_shape(self.function(mode), *args))
        return self._shapes[sig]

    @staticmethod
    def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        xs, mode = inputs
        ctx.save_for_backward(*xs)
        ctx.mode = mode
        ctx.out_meta = [(tuple(o.shape), o.dtype) for o in output]

    def _backward(self, ctx: Any, grads: list[Tensor | None]) -> tuple[list[Tensor | None], None]:
        xs = list(ctx.saved_tensors)
        in_float = [x.dtype.is_floating_point or x.dtype.is_complex for x in xs]
        out_float = [d.is_floating_point or d.is_complex for _, d in ctx.out_meta]
        device = xs[0].device
        cts = [
            torch.zeros(shape, dtype=dtype, device=device) if g is None else g
            for g, fl, (shape, dtype) in zip(grads, out_float, ctx.out_meta)
            if fl
        ]
        dxs = iter(self.op(xs + cts, _extend(ctx.mode, [_VJP, in_float, out_float])))
        return [next(dxs) if fl else None for fl in in_float], None


def _extend(mode: str, step: list[Any]) -> str:
    return json.dumps([*(json.loads(mode) if mode else []), step], separators=(",", ":"))


class JaxFunction:
    """A JAX function callable on tensors (see the module docstring); built by :func:`jax_function`.

    The operator is registered here, at wrap time: wrap outside compiled code, call anywhere.
    Its name carries a digest of ``cache_key`` so that a graph Inductor cached in another
    process, which calls the operator by name, only ever meets the same function again.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        differentiable: bool = True,
        cache_key: str | None = None,
    ) -> None:
        self.fn = fn
        self.name = (
            name or getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", "fn")
        )
        self.differentiable = differentiable
        key = cache_key if cache_key is not None else _stable_key(fn)
        digest = (
            hashlib.sha256(f"{key}|{differentiable}".encode()).hexdigest()[:12]
            if key
            else uuid.uuid4().hex[:12]
        )
        op_name = f"{_identifier(self.name)}_{digest}"
        if op_name in _OPS:  # the same function wrapped again in this process
            self._op = _OPS[op_name]
            return
        out_spec: list[Any] = []  # filled when JAX first traces fn (eval_shape or jit)
        label = self.name

        def flat_fn(*arrays: jax.Array) -> list[jax.Array]:
            out = fn(*arrays)
            spec = _spec(out)
            if not out_spec:
                out_spec.append(spec)
            elif out_spec[0] != spec:
                raise TypeError(
                    f"jax_function({label}): the output structure changed with the input shapes "
                    f"({out_spec[0]} then {spec}); it must be fixed"
                )
            return _leaves_in_spec_order(out)

        self._op = _Op(flat_fn, op_name, differentiable)
        self._op.out_spec = out_spec
        _OPS[op_name] = self._op

    @property
    def op_name(self) -> str:
        """The registered operator, ``frl_jax::<name>_<digest>``."""
        return self._op.name

    def __call__(self, *args: Tensor) -> Any:
        for i, x in enumerate(args):
            if not isinstance(x, Tensor):
                raise TypeError(
                    f"jax_function({self.name}): argument {i} must be a tensor, got {type(x).__name__} "
                    "(bind Python values with functools.partial before wrapping)"
                )
            if x.dtype in _WIDE_DTYPES and not x64_enabled():
                raise ValueError(
                    f"jax_function({self.name}): argument {i} is {x.dtype} but jax_enable_x64 is off; "
                    "cast it to 32 bits or enable x64"
                )
        outs = self._op.op(list(args), "")
        return _rebuild(self._op.out_spec[0], outs)[0]


def _stable_key(fn: Callable[..., Any]) -> str | None:
    """What identifies ``fn`` across processes: its module, name and source (a partial adds its
    bound values); None where that is not enough (closures, bound methods, unreadable source)."""
    if isinstance(fn, functools.partial):
        inner = _stable_key(fn.func)
        bound = repr(fn.args) + repr(sorted(fn.keywords.items()))
        return None if inner is None or " at 0x" in bound else inner + bound
    if not inspect.isfunction(fn) or fn.__closure__:
        return None
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return None
    return f"{fn.__module__}.{fn.__qualname__}:{source}"


def _identifier(name: str) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"fn_{cleaned}"


def jax_function(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    differentiable: bool = True,
    cache_key: str | None = None,
):
    """Wrap a JAX function so tensors can call it, eagerly, under autograd, vmap and compile.

    Args:
      fn: ``fn(*args, **kwargs)`` on JAX arrays (tensor arguments arrive as arrays, other
        arguments unchanged, as static values); returns an array or a nest (tuple, list, dict)
        of arrays.
      name: the operator's name (default ``fn.__name__``), shown in profiles and graphs.
      differentiable: register a backward (``jax.vjp``) for floating inputs and outputs.
      cache_key: a string that identifies what ``fn`` computes across processes (default: its
        module, name and source, for plain functions and partials of them; closures get a
        fresh name per process, so compiled graphs that call them are not reused from cache).

    Returns:
      A callable with ``fn``'s signature on tensors, returning tensors in ``fn``'s output nest.

    Example::

        @jax_function
        def energy(x):
            return jnp.sum(jnp.sin(x) ** 2)

        x = torch.randn(5, requires_grad=True)
        energy(x).backward()                                   # x.grad = sin(2x)
        torch.compile(lambda x: energy(x) * 2, fullgraph=True)(x)
        torch.func.vmap(energy)(torch.randn(3, 5))             # runs jax.vmap(energy)
    """
    if fn is None:
        return lambda f: JaxFunction(f, name=name, differentiable=differentiable, cache_key=cache_key)
    return JaxFunction(fn, name=name, differentiable=differentiable, cache_key=cache_key)
