"""Small helpers over TensorDicts of parameters, gradients and optimizer states.

Every helper works leaf by leaf (TensorDict arithmetic dispatches to ``torch._foreach_*`` ops,
which have no ``torch.func.vmap`` batching rule), so all of them work eagerly, under ``vmap`` and
under ``torch.compile``. :func:`map_leaves`, :func:`assemble` and :func:`replace` walk and build
plain TensorDicts (no batch dims, device or dim names) without TensorDict's per-entry validation:
in the training units that is most of the Python run eagerly and of the lines dynamo traces.
:func:`leaf_lists` hands plain eager code the leaves as lists for ``torch._foreach_*`` ops
instead (one call per op over every leaf: the optimizer's eager path), :func:`with_leaves` puts
values back into a tree's structure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl._compile import readable

__all__ = [
    "assemble",
    "entries",
    "global_norm",
    "leaf_lists",
    "leaves",
    "lerp",
    "map_leaves",
    "metrics",
    "replace",
    "stack",
    "to_flat_dict",
    "unstack",
    "with_leaves",
    "zeros_like",
]


def leaves(tree: TensorDictBase) -> list[Tensor]:
    """The leaves of a (nested) TensorDict, depth first in key order (as
    ``tree.values(include_nested=True, leaves_only=True)``)."""
    if not _plain(tree):
        return list(tree.values(include_nested=True, leaves_only=True))
    out: list[Tensor] = []
    for value in entries(tree).values():
        out.extend(leaves(value) if isinstance(value, TensorDictBase) else (value,))
    return out


def _gather_leaves(trees: Sequence[TensorDictBase], lists: list[list[Tensor]]) -> bool:
    """Appends each plain tree's leaves to its list, walking the trees together in the first
    one's key order; False where a sub-tree is not plain or the trees' keys or orders differ."""
    fields = []
    for tree in trees:
        if not _plain(tree):
            return False
        fields.append(tree._tensordict)
    first = fields[0]
    if any(list(other) != list(first) for other in fields[1:]):
        return False
    for key, value in first.items():
        if isinstance(value, Tensor):
            for out, other in zip(lists, fields, strict=True):
                leaf = other[key]
                if not isinstance(leaf, Tensor):
                    return False
                out.append(leaf)
        elif not _gather_leaves([other[key] for other in fields], lists):
            return False
    return True


def _plain_leaves(tree: TensorDictBase, out: list[Tensor]) -> bool:
    """Appends the leaves of ``tree`` to ``out`` (in :func:`leaves` order); False where a sub-tree
    is not plain."""
    if not _plain(tree):
        return False
    for value in tree._tensordict.values():
        if isinstance(value, Tensor):
            out.append(value)
        elif not _plain_leaves(value, out):
            return False
    return True


def leaf_lists(*trees: TensorDictBase) -> list[list[Tensor]] | None:
    """The leaves of each tree as a list, for ``torch._foreach_*`` ops, or ``None``.

    Lists are given only where per-leaf code and one ``torch._foreach_*`` call over the lists
    compute the same values: eagerly (nothing compiling or tracing, no ``torch.func`` transform),
    the trees plain (no batch dims, device or dim names) with the same keys in the same order, and
    every leaf a CPU tensor of one dtype that needs no gradient. On CPU a foreach op runs the
    per-leaf kernel on each leaf without the Python and dispatch cost of a call per leaf (an Adam
    step's ops over PPO's 12 leaves took half the time; with the walks, the step 10 % less).
    Callers keep the per-leaf path for ``None``: under ``vmap``, ``grad`` and ``torch.compile``
    (foreach ops have no batching rule or buy nothing) and on other devices (their fused foreach
    kernels are not checked to round as the per-leaf ones).

    Args:
      *trees: TensorDicts.

    Returns:
      One list of leaves per tree, in :func:`leaves` order, or ``None``.
    """
    if not trees:
        raise ValueError("leaf_lists: pass at least one tree")
    if torch.compiler.is_compiling() or torch._C._functorch.peek_interpreter_stack() is not None:
        return None
    if len(trees) == 1:  # nothing to pair
        lists = [[]]
        if not _plain_leaves(trees[0], lists[0]):
            return None
    else:
        lists = [[] for _ in trees]
        if not _gather_leaves(trees, lists):
            return None
    if not lists[0]:
        return None
    dtype = lists[0][0].dtype
    for out in lists:
        if not readable(out[0]) or any(x.dtype != dtype or x.requires_grad or not x.is_cpu for x in out):
            return None
    return lists


def with_leaves(tree: TensorDictBase, values: Sequence[Tensor]) -> TensorDictBase:
    """``values`` (one per leaf of ``tree``, in :func:`leaves` order) with ``tree``'s structure.

    Args:
      tree: a TensorDict.
      values: as many tensors as ``tree`` has leaves.

    Returns:
      A TensorDict like ``tree``.
    """
    it = iter(values)
    try:
        try:
            out = _rebuilt(tree, it)
        except _NotPlain:
            it = iter(values)
            out = map_leaves(lambda _: next(it), tree)
    except StopIteration:
        raise ValueError("with_leaves: fewer values than the tree has leaves") from None
    if next(it, None) is not None:
        raise ValueError("with_leaves: more values than the tree has leaves")
    return out


class _NotPlain(Exception):
    pass


def _rebuilt(tree: TensorDictBase, it: Any) -> TensorDict:
    """A plain ``tree``'s structure holding the next values of ``it`` (raises :class:`_NotPlain`
    at a sub-tree with batch dims, a device or dim names)."""
    if not _plain(tree):
        raise _NotPlain
    out = {}
    for key, value in tree._tensordict.items():
        out[key] = next(it) if isinstance(value, Tensor) else _rebuilt(value, it)
    return _assembled(out, _NO_DIMS)


def global_norm(tree: TensorDictBase) -> Tensor:
    """The Euclidean norm of all leaves taken together, ``sqrt(sum_leaves sum(x**2))``.

    Args:
      tree: a TensorDict of floating-point leaves.

    Returns:
      A 0-d tensor (per member under vmap).
    """
    lists = leaf_lists(tree)
    if lists is not None:  # the same ops, the squares in one foreach call
        squares = [torch.sum(x) for x in torch._foreach_mul(lists[0], lists[0])]
    else:
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
        return map_leaves(lambda s, e: torch.lerp(s, e, weight.to(s.dtype)), start, end)
    return map_leaves(lambda s, e: torch.lerp(s, e, weight), start, end)


def _assembled(fields: dict[str, Any], batch_size: torch.Size) -> TensorDict:
    """A TensorDict holding ``fields`` as they are (tensors and TensorDicts whose leading dims are
    ``batch_size``, checked by the caller), without the constructor's per-entry validation.

    TensorDict's constructor validates every entry (~1,800 lines traced by dynamo per nested
    TensorDict, most of the tracing time of a training unit: every unit rebuilds the state from its
    leaves). This sets the four instance attributes the constructor sets; :func:`_assembly_works`
    checks once that the result equals the constructor's, else callers use the constructor.
    """
    td = TensorDict.__new__(TensorDict)
    td._tensordict = dict(fields)
    td._device = None
    td._batch_size = batch_size
    td._td_dim_names = None
    return td


def _assembly_works() -> bool:
    """Whether :func:`_assembled` builds what the constructor builds and ``_tensordict`` holds a
    TensorDict's entries (checked once, at import)."""
    try:
        x = torch.zeros(2)
        fast = _assembled({"a": x, "b": _assembled({"c": x}, torch.Size([]))}, torch.Size([]))
        slow = TensorDict({"a": x, "b": TensorDict({"c": x}, batch_size=[])}, batch_size=[])
        same_attributes = vars(fast).keys() == vars(slow).keys()
        entries = slow._tensordict["a"] is x and slow._tensordict["b"]._tensordict["c"] is x
        return bool(
            same_attributes and entries and fast.batch_size == slow.batch_size and (fast == slow).all()
        )
    except Exception:  # a tensordict whose internals differ: use the constructor
        return False


def _plain(tree: Any) -> bool:
    """A TensorDict whose entries :func:`entries` reads directly (no batch dims, device or names)."""
    return (
        _ASSEMBLY_WORKS
        and type(tree) is TensorDict
        and tree._device is None
        and not tree._batch_size
        and tree._td_dim_names is None
    )


def entries(tree: TensorDictBase) -> Mapping[str, Any]:
    """The top-level entries of ``tree``, ``{key: tensor or sub-tree}``: for a plain TensorDict (no
    batch dims, device or dim names) its own mapping, read without copying or per-entry checks
    (do not modify it), else ``dict(tree.items())``."""
    return tree._tensordict if _plain(tree) else dict(tree.items())


def assemble(fields: dict[str, Any], batch_size: Sequence[int] = ()) -> TensorDict:
    """``TensorDict(fields, batch_size=batch_size)`` for entries that need no conversion: cheap to
    run and to trace.

    Entries must be tensors or TensorDicts (nested plain dicts are not converted) whose leading
    dims are ``batch_size``; they are checked eagerly (with ``batch_size == ()`` nothing needs
    checking), and in compiled code the constructor is used where they are not known to fit.

    Args:
      fields: ``{name: tensor or TensorDict}``.
      batch_size: the TensorDict's batch size.

    Returns:
      A TensorDict without a device or dim names.
    """
    size = torch.Size(batch_size)
    fits = all(isinstance(v, (Tensor, TensorDictBase)) for v in fields.values()) and (
        not size or all(tuple(v.shape[: len(size)]) == tuple(size) for v in fields.values())
    )
    if fits and _ASSEMBLY_WORKS:
        return _assembled(fields, size)
    return TensorDict(fields, batch_size=size)


def replace(tree: TensorDictBase, /, **values: Any) -> TensorDict:
    """``tree`` with the top-level entries ``values`` replaced (or added), as a new TensorDict.

    Every other entry is the same object as in ``tree``, sub-trees included: nothing is copied,
    and neither tree changes the other unless a shared sub-tree is written in place (replace the
    sub-tree instead). ``TensorDict.copy()`` rebuilds every nested TensorDict (~0.27 ms eagerly on
    a 73-leaf PPO state, several times per update, and thousands of traced lines); this costs a
    few microseconds.

    Args:
      tree: a TensorDict.
      **values: new top-level entries (tensors or TensorDicts).

    Returns:
      A TensorDict with ``tree``'s batch size and device.
    """
    fields = {**entries(tree), **values}
    if tree.device is None and tree.batch_dims == 0:
        return assemble(fields)
    names = tree.names if any(name is not None for name in tree.names) else None
    return TensorDict(fields, batch_size=tree.batch_size, device=tree.device, names=names)


def _mapped(fn: Callable[..., Tensor], tree: TensorDict, others: Sequence[TensorDict]) -> TensorDict:
    """:func:`map_leaves` over plain ``tree`` and ``others`` (their entries read directly: this walk
    runs ~10 times per optimizer step, eagerly, and is traced in every compiled update)."""
    out = {}
    other_fields = [o._tensordict for o in others]
    for key, value in tree._tensordict.items():
        try:
            rest = [f[key] for f in other_fields]
        except KeyError:
            raise KeyError(f"map_leaves: `tree` has the entry {key!r}; another tree lacks it") from None
        if isinstance(value, Tensor):
            out[key] = fn(value, *rest)
        elif _plain(value) and all(_plain(o) for o in rest):
            out[key] = _mapped(fn, value, rest)
        else:  # a sub-tree with batch dims, a device or dim names: its own apply, in the same order
            out[key] = value.apply(fn, *rest)
    return _assembled(out, _NO_DIMS)


_NO_DIMS = torch.Size([])


def map_leaves(fn: Callable[..., Tensor], tree: TensorDictBase, *others: TensorDictBase) -> TensorDictBase:
    """``fn`` over the leaves of ``tree`` (and the same-keyed leaves of ``others``), as
    ``tree.apply(fn, *others)``: a TensorDict of the results with ``tree``'s structure.

    Plain TensorDicts (no batch dims, device or dim names: a member's params, gradients and
    optimizer state inside a vmapped unit) are walked directly, other sub-trees (an ensemble's
    stacked params, with a batch dim) through their ``TensorDict.apply``: ``fn`` is called once
    per leaf, depth first in key order (as :func:`leaves` lists them), whichever way. The same
    results as ``tree.apply``; a third of its time eagerly and a small fraction of the lines
    dynamo traces (an optimizer step applies ~10 such maps).

    Args:
      fn: ``fn(leaf, *other_leaves) -> tensor``.
      tree: a TensorDict.
      *others: TensorDicts with (at least) the keys of ``tree``.

    Returns:
      A TensorDict like ``tree``.
    """
    if _plain(tree) and all(_plain(o) for o in others):
        return _mapped(fn, tree, others)
    return tree.apply(fn, *others)


def zeros_like(tree: TensorDictBase) -> TensorDictBase:
    """A TensorDict of zeros with the keys, shapes and dtypes of ``tree``."""
    return map_leaves(torch.zeros_like, tree)


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
    return assemble({k: v.detach() for k, v in values.items()})


_ASSEMBLY_WORKS = _assembly_works()
