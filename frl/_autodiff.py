"""Gradients of a scalar function of a params TensorDict, fast when nothing transforms the call.

``torch.func.grad`` composes with ``vmap`` and ``torch.compile``, but eagerly it costs about
twice plain autograd on small networks (measured on the DQN update: 1.38 ms vs 0.68 ms for the
gradient). :func:`grad_with_aux` takes the plain ``torch.autograd.grad`` path when no functorch
transform is active and nothing is being compiled, and ``torch.func.grad`` otherwise; both
compute the same gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import Tensor

__all__ = ["grad_with_aux"]


def _plain_eager() -> bool:
    if torch.compiler.is_compiling() or not torch.is_grad_enabled():
        return False
    try:
        return torch._C._functorch.peek_interpreter_stack() is None
    except AttributeError:  # a torch without this private hook: always take the functorch path
        return False


def grad_with_aux(
    fn: Callable[[TensorDictBase], tuple[Tensor, Any]], params: TensorDictBase
) -> tuple[TensorDictBase, Any]:
    """``torch.func.grad(fn, has_aux=True)(params)``: ``(d loss / d params, aux)``.

    Args:
      fn: ``params -> (scalar loss, aux)``; ``aux`` must not need gradients (detach it).
      params: a TensorDict of floating-point leaves.

    Returns:
      ``(grads, aux)``, ``grads`` shaped like ``params``.
    """
    if not _plain_eager():
        return torch.func.grad(fn, has_aux=True)(params)
    leaves = params.apply(lambda x: x.detach().requires_grad_(True))
    loss, aux = fn(leaves)
    keys = list(leaves.keys(include_nested=True, leaves_only=True))
    grads = torch.autograd.grad(loss, [leaves.get(k) for k in keys], allow_unused=True)
    out = leaves.apply(torch.zeros_like)
    for k, g in zip(keys, grads):
        if g is not None:
            out.set(k, g)
    return out, aux
