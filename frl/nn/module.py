"""An adapter from a user's ``torch.nn.Module`` to a pure ``(params, apply)`` pair.

Two ways to train a module with frl's losses:

* **frl's way** (pure, vmappable, compilable): ``params, net = from_module(module)`` gives
  detached copies; ``torch.func.grad`` of a loss over ``params`` and ``frl.optim`` update them
  (the module itself never changes).
* **torch.optim's way** (a live module): ``params, net = from_module(module, copy=False)`` gives
  the module's own ``nn.Parameter`` objects, so a loss computed with ``net.apply(params, x)``
  backpropagates into ``module.parameters()``' ``.grad`` and ``torch.optim`` steps them::

      params, net = frl.nn.from_module(policy, copy=False)
      optimizer = torch.optim.Adam(policy.parameters(), lr=3e-4)
      loss, metrics = frl.losses.reinforce_loss(params, None, batch, policy_apply=net.apply, dist=dist)
      optimizer.zero_grad()
      loss.backward()
      optimizer.step()  # params sees the new values: they are the module's tensors
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor, nn
from torch.func import functional_call

from frl import random
from frl.tree import to_flat_dict

__all__ = ["FunctionalModule", "from_module"]


@dataclass(frozen=True, eq=False)
class FunctionalModule:
    """A ``torch.nn.Module`` used as a pure function of a params TensorDict.

    ``params`` holds the module's parameters and buffers (nested by submodule, as
    ``TensorDict.from_module``); ``apply(params, *args)`` runs the module's ``forward`` with
    them through ``torch.func.functional_call``, whose keys are flattened to a plain
    ``{"layer.weight": tensor}`` dict (it rejects TensorDicts). The module's own tensors are
    never read or written by ``apply``, so it works under ``torch.func.grad``, ``vmap`` and
    ``torch.compile``.
    """

    module: nn.Module

    def params(self) -> TensorDict:
        """The module's current parameters and buffers, detached copies."""
        td = TensorDict.from_module(self.module, as_module=False)
        return td.detach().clone()

    def init(self, key: Tensor) -> TensorDict:
        """Fresh params from the module's own ``reset_parameters``, seeded from ``key``.

        Deterministic in ``key``, but it draws from torch's generator (in a forked RNG
        scope), so it is not vmappable: for an ensemble, stack ``init`` over ``split`` keys.
        """
        seed = int(random.bits(key, (), 64)) % 2**63
        clone = copy.deepcopy(self.module)
        # manual_seed reseeds every CUDA device too: fork them all so no global generator moves
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            for m in clone.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        return FunctionalModule(clone).params()

    def apply(self, params: TensorDictBase, *args: Any, **kwargs: Any) -> Any:
        """``module(*args, **kwargs)`` with ``params`` in place of the module's tensors."""
        return functional_call(self.module, to_flat_dict(params), args, kwargs)


def from_module(module: nn.Module, *, copy: bool = True) -> tuple[TensorDict, FunctionalModule]:
    """``(params, net)`` for a module: ``net.apply(params, x)`` equals ``module(x)``.

    Args:
      module: any ``torch.nn.Module``.
      copy: ``True``: ``params`` are detached copies (train them with ``torch.func.grad`` and
        ``frl.optim``). ``False``: ``params`` holds the module's own parameters and buffers,
        live: gradients of a loss over them land in ``.grad`` and ``torch.optim`` updates them
        in place (see the module docstring).
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"from_module: expected a torch.nn.Module, got {type(module)!r}")
    net = FunctionalModule(module)
    return (net.params() if copy else TensorDict.from_module(module, as_module=False)), net
