"""Small helpers over TensorDicts of parameters, gradients and optimizer states.

Every helper works leaf by leaf with ``TensorDict.apply`` (TensorDict arithmetic dispatches to
``torch._foreach_*`` ops, which have no ``torch.func.vmap`` batching rule), so all of them work
eagerly, under ``vmap`` and under ``torch.compile``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

__all__ = [
    "global_norm",
    "leaves",
    "lerp",
    "metrics",
    "stack",
    "to_flat_dict",
    "unstack",
    "zeros_like",
]


def leaves(tree: TensorDictBase) -> list[Tensor]:
    """The leaves of a (nested) TensorDict, in its key order."""
    return list(tree.values(include_nested=True, leaves_only=True))


def global_norm(tree: TensorDictBase) -> Tensor:
    """The Euclidean norm of all leaves taken together, ``sqrt(sum_leaves sum(x**2))``.

    Args:
      tree: a TensorDict of floating-point leaves.

    Returns:
      A 0-d tensor (per member under vmap).
    """
    squares = [torch.sum(x * x) for x in leaves(tree)]
    if not squares:
        raise ValueError("global_norm: `tree` has no leaves")
    return torch.sqrt(torch.stack(squares).sum())


def lerp(start: TensorDictBase, end: TensorDictBase, weight: float | Tensor) -> TensorDictBase:
    """Leafwise linear interpolation ``start + weight * (end - start)`` (``torch.lerp``).

    Args:
      start, end: TensorDicts with the same keys and shapes.
      weight: a float or 0-d tensor; 0 gives ``start`` and 1 gives ``end`` exactly.

    Returns:
      A TensorDict like ``start``.
    """
    if isinstance(weight, Tensor):
        return start.apply(lambda s, e: torch.lerp(s, e, weight.to(s.dtype)), end)
    return start.apply(lambda s, e: torch.lerp(s, e, weight), end)


def zeros_like(tree: TensorDictBase) -> TensorDictBase:
    """A TensorDict of zeros with the keys, shapes and dtypes of ``tree``."""
    return tree.apply(torch.zeros_like)


def stack(trees: Sequence[TensorDictBase]) -> TensorDictBase:
    """Stack TensorDicts with identical structure along a new leading (member) dim.

    Args:
      trees: ``N`` TensorDicts with the same keys, shapes and dtypes.

    Returns:
      A TensorDict with ``batch_size`` ``[N, *batch_size]``.
    """
    if len(trees) == 0:
        raise ValueError("stack: `trees` is empty")
    keys = set(trees[0].keys(include_nested=True, leaves_only=True))
    for i, tree in enumerate(trees[1:], start=1):
        other = set(tree.keys(include_nested=True, leaves_only=True))
        if other != keys:
            raise ValueError(
                f"stack: trees[{i}] has keys {sorted(map(str, other ^ keys))} not shared with trees[0]"
            )
    return torch.stack(list(trees), dim=0)


def unstack(tree: TensorDictBase) -> list[TensorDictBase]:
    """Split a stacked TensorDict along its leading dim (the inverse of :func:`stack`)."""
    if tree.batch_dims == 0:
        raise ValueError("unstack: `tree` has no batch dim to unstack (batch_size is [])")
    return list(tree.unbind(0))


def to_flat_dict(tree: TensorDictBase, separator: str = ".") -> dict[str, Tensor]:
    """A plain ``{"a.b.c": tensor}`` dict, as ``torch.func.functional_call`` needs.

    ``functional_call`` rejects TensorDicts; flattening keys with ``"."`` matches
    ``nn.Module.named_parameters`` names and works under grad, vmap and compile.
    """
    return tree.flatten_keys(separator).to_dict()


def metrics(**values: Tensor) -> TensorDictBase:
    """A metrics TensorDict (``batch_size []``) of detached 0-d values: ``metrics(loss=l, q=q)``."""
    return TensorDict({k: v.detach() for k, v in values.items()}, batch_size=[])
