"""frl parameters as flax.linen variables and back: ``to_flax(params)`` / ``from_flax(variables)``.

frl's linear layers hold ``{"weight": [out, in], "bias": [out]}`` and compute
``x @ weight.T + bias`` (torch's ``Linear``); flax's ``Dense`` holds ``{"kernel": [in, out],
"bias": [out]}`` and computes ``x @ kernel + bias``, so ``kernel = weight.T``. An frl MLP's
layers are keyed ``"0", "1", ...``; a flax module of ``nn.Dense`` layers created inline in a
``@nn.compact`` ``__call__`` names them ``Dense_0, Dense_1, ...``:

==================================  =========================================
frl (``frl.nn.MLP``)                flax.linen (``Dense`` stack)
==================================  =========================================
``params["0"]["weight"]`` [o, i]    ``variables["params"]["Dense_0"]["kernel"]`` [i, o]
``params["0"]["bias"]`` [o]         ``variables["params"]["Dense_0"]["bias"]`` [o]
==================================  =========================================

Convolution weights ``[out, in, kh, kw]`` become ``Conv`` kernels ``[kh, kw, in, out]`` (NHWC)
when their layers are named by ``layer_name``. Other leaves keep their names and values
(``log_std``, a temperature ...). Biases and other leaves are shared with the source (DLPack,
zero-copy); a transposed kernel is one contiguous copy (DLPack cannot describe a transpose).
The same forward pass and gradients in both frameworks are tested to 1e-6.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl.interop.jax.arrays import from_jax, to_jax

__all__ = ["from_flax", "to_flax"]


def _dense_name(index: int) -> str:
    return f"Dense_{index}"


def _is_layer(node: Any) -> bool:
    keys = set(node.keys())
    return "weight" in keys and keys <= {"weight", "bias"}


def to_flax(
    params: TensorDictBase | Mapping[str, Any],
    *,
    layer_name: Callable[[int], str] = _dense_name,
    wrap: bool = True,
    downcast: bool = False,
) -> dict[str, Any]:
    """frl params as flax variables (see the module docstring for the layout).

    Args:
      params: a params TensorDict (or nested dict of tensors).
      layer_name: the flax name of frl layer ``"i"`` (default ``Dense_i``); layers under other
        names keep them.
      wrap: return ``{"params": tree}`` (what ``module.apply`` takes) rather than the tree.
      downcast: passed to :func:`frl.interop.jax.to_jax` (64-bit leaves with x64 off).

    Returns:
      A dict pytree of JAX arrays.
    """

    def walk(node: Any, where: str) -> Any:
        if isinstance(node, Tensor):
            return to_jax(node, downcast=downcast)
        if not isinstance(node, (Mapping, TensorDictBase)):
            raise TypeError(f"to_flax: {where} is {type(node).__name__}, expected tensors in dicts")
        if _is_layer(node):
            weight = node["weight"]
            if weight.dim() == 2:
                kernel = weight.detach().T
            elif weight.dim() == 4:
                kernel = weight.detach().permute(2, 3, 1, 0)
            else:
                raise ValueError(
                    f"to_flax: {where}['weight'] must be 2-D (linear) or 4-D (conv), got {list(weight.shape)}"
                )
            out = {"kernel": to_jax(kernel, downcast=downcast)}
            if "bias" in node.keys():  # noqa: SIM118 (TensorDict has no `in`)
                out["bias"] = to_jax(node["bias"], downcast=downcast)
            return out
        out = {}
        for k in node.keys():  # noqa: SIM118 (TensorDict iterates differently)
            child = node[k]
            name = layer_name(int(k)) if isinstance(k, str) and k.isdigit() and _is_layer_like(child) else k
            out[name] = walk(child, f"{where}[{k!r}]")
        return out

    tree = walk(params, "`params`")
    return {"params": tree} if wrap else tree


def _is_layer_like(node: Any) -> bool:
    return isinstance(node, (Mapping, TensorDictBase)) and _is_layer(node)


_NUMBERED = re.compile(r"^(?:Dense|Conv)_(\d+)$")


def from_flax(
    variables: Mapping[str, Any],
    *,
    layer_index: Callable[[str], int | None] | None = None,
) -> TensorDict:
    """flax variables (``{"params": ...}`` or the params tree) as frl params.

    Args:
      variables: a flax variables dict or params tree of arrays.
      layer_index: the frl index of a flax layer name, or None to keep the name (default:
        ``Dense_i``/``Conv_i`` -> ``"i"``).

    Returns:
      A params TensorDict; kernels are transposed back into weights (a copy), other leaves
      share the JAX buffers (clone before writing in place).
    """
    tree = variables["params"] if "params" in variables and len(variables) == 1 else variables
    index = layer_index or (lambda name: int(m.group(1)) if (m := _NUMBERED.match(name)) else None)

    def walk(node: Any, where: str) -> Any:
        if isinstance(node, Mapping):
            keys = set(node)
            if "kernel" in keys and keys <= {"kernel", "bias"}:
                kernel = node["kernel"]
                if kernel.ndim == 2:
                    weight = jnp.transpose(kernel)
                elif kernel.ndim == 4:
                    weight = jnp.transpose(kernel, (3, 2, 0, 1))
                else:
                    raise ValueError(f"from_flax: {where}['kernel'] must be 2-D or 4-D, got {kernel.shape}")
                out = {"weight": from_jax(weight)}
                if "bias" in keys:
                    out["bias"] = from_jax(node["bias"])
                return out
            result = {}
            for k, v in node.items():
                i = index(k) if isinstance(v, Mapping) and "kernel" in v else None
                result[str(i) if i is not None else k] = walk(v, f"{where}[{k!r}]")
            return result
        if isinstance(node, (jax.Array,)) or hasattr(node, "__array__"):
            return from_jax(node)
        raise TypeError(f"from_flax: {where} is {type(node).__name__}, expected arrays in dicts")

    out = walk(tree, "`variables`")
    return TensorDict(out, batch_size=[])
