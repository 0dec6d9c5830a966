"""Gradients of a scalar function of a params TensorDict, fast when nothing transforms the call.

``torch.func.grad`` composes with ``vmap`` and ``torch.compile``, but eagerly it costs about
twice plain autograd on small networks (measured on the DQN update: 1.38 ms vs 0.68 ms for the
gradient). :func:`grad_with_aux` takes the plain ``torch.autograd.grad`` path when no functorch
transform is active and nothing is being compiled, and ``torch.func.grad`` otherwise; both
compute the same gradient.

The plain path never cuts a higher-order gradient. When the params are themselves functions of
tensors that require grad (a MAML-style inner update ``phi = theta - a grad L(theta)``
differentiated by an outer ``backward``), or when the loss reaches such tensors through its
closure (a learned loss coefficient), the gradient is taken with ``create_graph=True`` on the
params as they are, so the outer gradient flows through it. Only when nothing outside the
call needs a gradient are the params detached into fresh leaves (no graph is kept: the
optimizer's updated params stay plain tensors step after step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import Tensor

from frl.tree import leaves as tree_leaves
from frl.tree import map_leaves

__all__ = ["grad_with_aux"]


def _plain_eager() -> bool:
    if torch.compiler.is_compiling() or not torch.is_grad_enabled():
        return False
    try:
        return torch._C._functorch.peek_interpreter_stack() is None
    except AttributeError:  # a torch without this private hook: always take the functorch path
        return False


def _reaches_other_leaves(output: Tensor, leaves: list[Tensor]) -> bool:
    """Whether ``output``'s autograd graph reaches a tensor requiring grad beyond ``leaves``."""
    own = {id(x) for x in leaves}
    seen: set[int] = set()
    stack = [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)  # AccumulateGrad: a leaf of the graph
        if variable is not None and id(variable) not in own:
            return True
        stack.extend(next_node for next_node, _ in node.next_functions)
    return False


def _like(tree: TensorDictBase, values: list[Tensor]) -> TensorDictBase:
    """``values`` (one per leaf of ``tree``, in :func:`frl.tree.leaves` order) with ``tree``'s
    structure."""
    it = iter(values)
    return map_leaves(lambda _: next(it), tree)


def grad_with_aux(
    fn: Callable[[TensorDictBase], tuple[Tensor, Any]], params: TensorDictBase
) -> tuple[TensorDictBase, Any]:
    """``torch.func.grad(fn, has_aux=True)(params)``: ``(d loss / d params, aux)``.

    Higher-order gradients are kept: see the module docstring.

    Args:
      fn: ``params -> (scalar loss, aux)``; ``aux`` must not need gradients (detach it).
      params: a TensorDict of floating-point leaves.

    Returns:
      ``(grads, aux)``, ``grads`` shaped like ``params``.
    """
    if not _plain_eager():
        # over the list of leaves: functorch then wraps and unwraps tensors, not TensorDicts
        # (whose flattening and rebuilding dominated an eager vmapped update and its tracing)
        grads, aux = torch.func.grad(lambda xs: fn(_like(params, xs)), has_aux=True)(tree_leaves(params))
        return _like(params, grads), aux
    # params that already require grad stay as they are (their gradient is differentiated
    # further); the others become fresh leaves
    leaves = map_leaves(lambda x: x if x.requires_grad else x.detach().requires_grad_(True), params)
    loss, aux = fn(leaves)
    inputs = tree_leaves(leaves)
    outer = any(x.requires_grad for x in tree_leaves(params))
    create_graph = outer or _reaches_other_leaves(loss, inputs)
    grads = torch.autograd.grad(loss, inputs, allow_unused=True, create_graph=create_graph)
    grads = [torch.zeros_like(x.detach()) if g is None else g for x, g in zip(inputs, grads, strict=True)]
    return _like(params, grads), aux
