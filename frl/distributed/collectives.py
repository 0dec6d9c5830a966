"""Collectives over TensorDicts: one flat buffer per dtype, never leaf by leaf.

``all_reduce_mean(tree)`` concatenates every floating leaf of ``tree`` into one buffer (one per
dtype), all-reduces it once (sum, divided by the world size) and splits it back into a
TensorDict of the same keys, shapes and dtypes. It is a ``torch.library`` custom operator
(``frl::all_reduce_mean``) so it runs eagerly, under ``torch.func.vmap`` (the reduction is
element-wise across ranks, so a batch of seeds is reduced in the same single call) and inside
``torch.compile(fullgraph=True)``. Outside a process group it is the identity.

``tree_digest(tree)`` hashes every leaf's bytes; ``assert_in_sync(tree)`` gathers the digests of
all ranks and raises if any differ (data-parallel training checks its parameters with it).
"""

from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

__all__ = [
    "all_reduce_mean",
    "all_reduce_mean_per_leaf",
    "assert_in_sync",
    "gather_objects",
    "tree_digest",
]


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.library.custom_op("frl::all_reduce_mean", mutates_args=())
def _all_reduce_mean_op(buffer: Tensor) -> Tensor:
    out = buffer.contiguous().clone()
    if _active():
        dist.all_reduce(out)
        out /= dist.get_world_size()
    return out


@_all_reduce_mean_op.register_fake
def _(buffer: Tensor) -> Tensor:
    return torch.empty_like(buffer, memory_format=torch.contiguous_format)


def _vmap_rule(info, in_dims, buffer):
    (dim,) = in_dims
    if dim is None:
        return _all_reduce_mean_op(buffer), None
    return _all_reduce_mean_op(buffer), dim  # element-wise across ranks: the batch rides along


torch.library.register_vmap("frl::all_reduce_mean", _vmap_rule)


def _floating_leaves(tree: TensorDictBase) -> list[tuple[tuple[str, ...], Tensor]]:
    items = []
    for key, leaf in tree.items(include_nested=True, leaves_only=True):
        if not leaf.is_floating_point():
            raise TypeError(
                f"all_reduce_mean: leaf {key!r} is {leaf.dtype}; only floating-point trees are averaged"
            )
        items.append((key if isinstance(key, tuple) else (key,), leaf))
    return items


def all_reduce_mean(tree: TensorDictBase) -> TensorDict:
    """The mean of ``tree`` over all ranks, one all-reduce per dtype: same keys and shapes."""
    items = _floating_leaves(tree)
    out = TensorDict({}, batch_size=tree.batch_size)
    for dtype in sorted({leaf.dtype for _, leaf in items}, key=str):
        group = [(k, leaf) for k, leaf in items if leaf.dtype == dtype]
        flat = torch.cat([leaf.reshape(-1) for _, leaf in group])
        reduced = _all_reduce_mean_op(flat)
        for (key, leaf), piece in zip(group, torch.split(reduced, [leaf.numel() for _, leaf in group])):
            out[key] = piece.reshape(leaf.shape)
    return out


def all_reduce_mean_per_leaf(tree: TensorDictBase) -> TensorDict:
    """:func:`all_reduce_mean` with one all-reduce per leaf (for comparison; slower)."""
    out = TensorDict({}, batch_size=tree.batch_size)
    for key, leaf in _floating_leaves(tree):
        out[key] = _all_reduce_mean_op(leaf)
    return out


def tree_digest(tree: TensorDictBase) -> str:
    """A SHA-256 of every leaf's key, dtype, shape and bytes, in sorted key order."""
    h = hashlib.sha256()
    leaves = sorted(
        ((k if isinstance(k, tuple) else (k,)), v)
        for k, v in tree.items(include_nested=True, leaves_only=True)
    )
    for key, leaf in leaves:
        leaf = leaf.detach().cpu().contiguous()
        h.update(repr((key, str(leaf.dtype), tuple(leaf.shape))).encode())
        h.update(leaf.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def gather_objects(obj, dst: int = 0) -> list | None:
    """Every rank's ``obj`` on rank ``dst`` (a list in rank order), None elsewhere."""
    if not _active():
        return [obj]
    out = [None] * dist.get_world_size() if dist.get_rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def assert_in_sync(tree: TensorDictBase, what: str = "parameters") -> str:
    """Raise ``RuntimeError`` on every rank unless ``tree`` is bit-identical on all ranks."""
    digest = tree_digest(tree)
    if not _active():
        return digest
    digests: list = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest)
    if len(set(digests)) != 1:
        raise RuntimeError(
            f"assert_in_sync: the {what} differ across ranks (digests {[d[:12] for d in digests]})"
        )
    return digest
