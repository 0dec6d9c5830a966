"""Ensembles: N members' params stacked on a leading dim and applied with ``torch.func.vmap``
(:class:`PerAgent`: one member per agent, applied along a multi-agent batch's agent dim)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tensordict import TensorDictBase
from torch import Tensor
from torch.func import vmap

from frl import random
from frl.nn.layers import Network
from frl.tree import stack

__all__ = ["Ensemble", "PerAgent", "ensemble_apply", "ensemble_init", "stack"]


def ensemble_init(init: Callable[[Tensor], TensorDictBase], key: Tensor, num: int) -> TensorDictBase:
    """Init ``num`` members from ``split(key, num)``, stacked: ``batch_size [num]``.

    Member ``i`` equals ``init(split(key, num)[i])`` exactly (initialisation is pure).
    """
    if not isinstance(num, int) or num <= 0:
        raise ValueError(f"ensemble_init: `num` must be a positive int, got {num!r}")
    return vmap(init)(random.split(key, num))


def ensemble_apply(
    apply: Callable[..., Any],
    params: TensorDictBase,
    *inputs: Any,
    shared_inputs: bool | Sequence[bool] = True,
) -> Any:
    """Apply every member: ``out[i] = apply(params[i], *inputs)`` (or ``inputs[j][i]``).

    Args:
      apply: a pure ``apply(params, *inputs)``.
      params: stacked params, leading member dim ``N``.
      inputs: the inputs.
      shared_inputs: ``True`` (all members see the same inputs), ``False`` (each input has a
        leading member dim ``N``), or one flag per input.

    Returns:
      ``apply``'s outputs with a leading member dim ``N``.
    """
    if params.batch_dims == 0:
        raise ValueError("ensemble_apply: `params` needs a leading member dim (batch_size [N])")
    flags = [shared_inputs] * len(inputs) if isinstance(shared_inputs, bool) else list(shared_inputs)
    if len(flags) != len(inputs):
        raise ValueError(f"ensemble_apply: `shared_inputs` has {len(flags)} flags for {len(inputs)} inputs")
    num = params.batch_size[0]
    for j, (x, shared) in enumerate(zip(inputs, flags)):
        if not shared and (not isinstance(x, Tensor) or x.dim() == 0 or x.shape[0] != num):
            shape = list(x.shape) if isinstance(x, Tensor) else type(x)
            raise ValueError(f"ensemble_apply: inputs[{j}] must have a leading member dim {num}, got {shape}")
    in_dims = (0, *(None if shared else 0 for shared in flags))
    return vmap(apply, in_dims=in_dims)(params, *inputs)


@dataclass(frozen=True)
class Ensemble:
    """``num`` independent copies of a network, applied in one vectorised call.

    Example (twin critics)::

        critics = Ensemble(ContinuousQNetwork(obs_dim, act_dim), num=2)
        params = critics.init(key)          # batch_size [2]
        q = critics.apply(params, obs, act) # [2, batch]
    """

    network: Network
    num: int
    shared_inputs: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.num, int) or self.num <= 0:
            raise ValueError(f"Ensemble: `num` must be a positive int, got {self.num!r}")

    def init(self, key: Tensor) -> TensorDictBase:
        return ensemble_init(self.network.init, key, self.num)

    def apply(self, params: TensorDictBase, *inputs: Any) -> Any:
        return ensemble_apply(self.network.apply, params, *inputs, shared_inputs=self.shared_inputs)


@dataclass(frozen=True)
class PerAgent:
    """A network with its own params for each of ``n_agents`` agents, applied along the agent dim.

    ``params`` stack the agents' params on a leading dim ``[n_agents]``; :meth:`apply` maps
    ``[..., n_agents, d] -> [..., n_agents, ...]`` where agent ``i``'s rows go through
    ``network.apply(params[i], .)`` (one ``vmap``). Agent ``i``'s output equals the network applied
    alone with ``params[i]``, so per-agent training equals training each agent separately. A
    network applied directly to ``[..., n_agents, d]`` instead shares its params across agents.
    """

    network: Network
    n_agents: int

    def __post_init__(self) -> None:
        if isinstance(self.n_agents, bool) or not isinstance(self.n_agents, int) or self.n_agents <= 0:
            raise ValueError(f"PerAgent: `n_agents` must be a positive int, got {self.n_agents!r}")

    def init(self, key: Tensor) -> TensorDictBase:
        return ensemble_init(self.network.init, key, self.n_agents)

    def apply(self, params: TensorDictBase, x: Tensor, *more: Tensor) -> Any:
        """``x [..., n_agents, d]`` (and any further inputs with the same agent dim)."""
        for j, t in enumerate((x, *more)):
            if t.dim() < 2 or t.shape[-2] != self.n_agents:
                raise ValueError(
                    f"PerAgent.apply: input {j} must be [..., n_agents={self.n_agents}, d], "
                    f"got {list(t.shape)}"
                )
        agent_dim = x.dim() - 2
        out = vmap(self.network.apply)(params, *(t.movedim(-2, 0) for t in (x, *more)))
        return (
            out.movedim(0, agent_dim)
            if isinstance(out, Tensor)
            else tuple(o.movedim(0, agent_dim) for o in out)
        )
