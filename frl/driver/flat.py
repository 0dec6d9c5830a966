"""Compiled units' trees rebuilt from their flat leaves per member, and flattened again.

A compiled unit takes and returns the flat leaves of the training state (see
:mod:`frl.driver.compiled`). Rebuilding the state from them inside the traced function with
``pytree.tree_unflatten`` runs TensorDict's constructor for every nested TensorDict, and
``torch.func.vmap`` over TensorDicts flattens and rebuilds them again, validating every entry:
most of the lines dynamo traced for a PPO unit. Here the specs are read once, outside the trace,
into a :data:`Plan` (plain Python data); inside it the leaves get their member dim removed
(:func:`frl._compile.vmap_leaves`) and the trees are built by :func:`frl.tree.assemble` and read
by :func:`frl.tree.entries`. Dynamo's tracing of a PPO CartPole run (three units and the
evaluation, 8 seeds) took 15.5 s instead of 37.8 s (the same graphs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torch.utils import _pytree as pytree

from frl._compile import vmap_leaves
from frl.tree import assemble, entries

__all__ = ["Plan", "flatten", "member_function", "plan", "rebuildable", "unflatten"]


def _plain(spec: pytree.TreeSpec, strip: int) -> bool:
    """Whether ``spec`` is a TensorDict node that :func:`frl.tree.assemble` rebuilds (no device, dim
    names or non-tensor entries) with at least ``strip`` batch dims."""
    context = spec.context
    return (
        spec.type is TensorDict
        and context.get("cls") is TensorDict
        and context.get("device") is None
        and context.get("names") is None
        and not context.get("non_tensor_data")
        and "batch_size" in context
        and len(context["batch_size"]) >= strip
    )


def rebuildable(spec: pytree.TreeSpec, strip: int = 0) -> bool:
    """Whether :func:`unflatten` and :func:`flatten` handle ``spec``: every TensorDict in it
    :func:`_plain`, other containers registered with ``torch.utils._pytree``."""
    if spec.is_leaf():
        return True
    if spec.type is TensorDict:
        ok = _plain(spec, strip)
    else:
        ok = spec.type in pytree.SUPPORTED_NODES and not issubclass(spec.type, TensorDictBase)
    return ok and all(rebuildable(child, strip) for child in spec.children())


Plan = tuple[Any, ...] | None
"""How a tree is rebuilt and read: ``None`` (a leaf), ``(keys, batch_size, children)`` (a
TensorDict) or ``(node type, context, children)`` (another container)."""


def plan(spec: pytree.TreeSpec, strip: int = 0) -> Plan:
    """The :data:`Plan` of a :func:`rebuildable` ``spec``, TensorDicts' first ``strip`` batch dims
    dropped (``strip=1`` inside a vmap over members)."""
    if spec.is_leaf():
        return None
    children = tuple(plan(child, strip) for child in spec.children())
    if spec.type is TensorDict:
        return (tuple(spec.context["keys"]), tuple(spec.context["batch_size"][strip:]), children)
    return (spec.type, spec.context, children)


def unflatten(leaves: Sequence[Any], how: Plan) -> Any:
    """The tree of ``leaves`` that ``how`` describes (:func:`plan`)."""
    it = iter(leaves)

    def build(node: Plan) -> Any:
        if node is None:
            return next(it)
        head, meta, children = node
        built = [build(child) for child in children]
        if isinstance(head, tuple):
            return assemble(dict(zip(head, built, strict=True)), meta)
        return pytree.SUPPORTED_NODES[head].unflatten_fn(built, meta)

    return build(how)


def flatten(tree: Any, how: Plan) -> list[Any]:
    """The leaves of ``tree``, which has the structure ``how`` was planned from (the driver checks
    it on each unit's eager call), in that spec's order."""
    out: list[Any] = []

    def walk(x: Any, node: Plan) -> None:
        if node is None:
            out.append(x)
            return
        head, _, children = node
        if isinstance(head, tuple):
            fields = entries(x)
            parts = [fields[key] for key in head]
        else:
            parts, _ = pytree.SUPPORTED_NODES[head].flatten_fn(x)
        for part, child in zip(parts, children, strict=True):
            walk(part, child)

    walk(tree, how)
    return out


def member_function(
    fn: Callable, in_specs: Sequence[pytree.TreeSpec], out_spec: pytree.TreeSpec, batched: bool
) -> Callable[..., list[Tensor]] | None:
    """``fn(*trees) -> tree`` as a function of the trees' flat leaves returning the output's flat
    leaves, vmapped over members (dim 0 of every leaf) when ``batched``; the specs are those of
    the batched trees. ``None`` where a spec is not :func:`rebuildable` (the caller then goes
    through ``pytree`` and ``torch.func.vmap``)."""
    strip = 1 if batched else 0
    if not all(rebuildable(spec, strip) for spec in (*in_specs, out_spec)):
        return None
    in_plans = [(spec.num_leaves, plan(spec, strip)) for spec in in_specs]
    out_plan = plan(out_spec, strip)

    def per_member(*leaves: Tensor) -> tuple[list[Tensor]]:
        trees, i = [], 0
        for count, how in in_plans:
            trees.append(unflatten(leaves[i : i + count], how))
            i += count
        return (flatten(fn(*trees), out_plan),)

    if not batched:
        return lambda *leaves: per_member(*leaves)[0]
    vmapped = vmap_leaves(per_member)
    return lambda *leaves: vmapped(*leaves)[0]
