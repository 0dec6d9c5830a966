"""Value-decomposition mixers: a team value ``Q_tot`` from the agents' chosen action values.

Both are monotonic in every agent's value (``dQ_tot / dQ_i >= 0``), so each agent's greedy action
is the team's greedy action (the individual-global-max property that lets decentralised agents
act on their own ``Q_i``):

* :func:`vdn_mix` (Sunehag et al. 2018, https://arxiv.org/abs/1706.05296): ``Q_tot = sum_i Q_i``.
* :class:`QMixer` (Rashid et al. 2018, https://arxiv.org/abs/1803.11485): a two-layer network in
  the agents' values whose weights are made non-negative functions of the global state
  (hypernetworks).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import random
from frl.nn.initializers import variance_scaling
from frl.nn.mlp import MLP, check_features

__all__ = ["QMixer", "vdn_mix"]


def vdn_mix(agent_q: Tensor) -> Tensor:
    """VDN's team value ``Q_tot = sum_i Q_i(o_i, a_i)``: ``[..., n_agents] -> [...]``."""
    if agent_q.dim() == 0:
        raise ValueError("vdn_mix: `agent_q` must have an agent dim [..., n_agents]")
    return agent_q.sum(-1)


@dataclass(frozen=True)
class QMixer:
    """QMIX's monotonic mixer: ``[..., n_agents] x state [..., state_dim] -> Q_tot [...]``.

    With ``q`` the agents' chosen values as a row ``[1, n]`` and the global state ``s``::

        W1 = |hyper_w1(s)|  [n, E],   b1 = hyper_b1(s)  [E]
        h  = elu(q W1 + b1)                                [1, E]
        w2 = |hyper_w2(s)|  [E, 1],   b2 = V(s)         (V: s -> E -> relu -> 1)
        Q_tot = h w2 + b2

    ``|.|`` keeps every weight on the path from ``Q_i`` to ``Q_tot`` non-negative, and ``elu`` is
    increasing, so ``Q_tot`` is monotonic in each ``Q_i``; the biases may be any function of the
    state. ``hypernet_hidden`` (0: one linear layer) sizes the weight hypernetworks' hidden layer
    (pymarl's ``hypernet_layers=2`` with ``hypernet_embed=64``). Weights start as pymarl's do
    (torch's default ``U(+-1/sqrt(fan_in))``): ``Q_tot`` then starts near the scale of the agents'
    values (orthogonal layers started it ~4x larger, a bias the bootstrapped targets kept for
    tens of thousands of updates).
    """

    n_agents: int
    state_dim: int
    embed_dim: int = 32
    hypernet_hidden: int = 64
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        for name in ("n_agents", "state_dim", "embed_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"QMixer: `{name}` must be a positive int, got {value!r}")
        if (
            isinstance(self.hypernet_hidden, bool)
            or not isinstance(self.hypernet_hidden, int)
            or self.hypernet_hidden < 0
        ):
            raise ValueError(f"QMixer: `hypernet_hidden` must be an int >= 0, got {self.hypernet_hidden!r}")

    def _mlp(self, sizes: tuple[int, ...]) -> MLP:
        init = variance_scaling(1.0 / 3.0, "fan_in", "uniform")  # torch.nn.Linear's default
        return MLP(sizes, "relu", w_init=init, out_w_init=init, dtype=self.dtype)

    @cached_property
    def networks(self) -> dict[str, MLP]:
        E, S = self.embed_dim, self.state_dim
        hidden = (self.hypernet_hidden,) if self.hypernet_hidden else ()
        return {
            "w1": self._mlp((S, *hidden, self.n_agents * E)),
            "b1": self._mlp((S, E)),
            "w2": self._mlp((S, *hidden, E)),
            "v": self._mlp((S, E, 1)),
        }

    def init(self, key: Tensor) -> TensorDict:
        keys = random.split(key, len(self.networks))
        return TensorDict(
            {name: net.init(k) for (name, net), k in zip(self.networks.items(), keys, strict=True)},
            batch_size=[],
        )

    def apply(self, params: TensorDictBase, agent_q: Tensor, state: Tensor) -> Tensor:
        """``Q_tot [...]`` from ``agent_q [..., n_agents]`` and ``state [..., state_dim]``."""
        check_features(agent_q, self.n_agents, "agent_q", "QMixer.apply")
        check_features(state, self.state_dim, "state", "QMixer.apply")
        if agent_q.shape[:-1] != state.shape[:-1]:
            raise ValueError(
                f"QMixer.apply: `agent_q` {list(agent_q.shape)} and `state` {list(state.shape)} must share "
                "their batch dims"
            )
        nets, E = self.networks, self.embed_dim
        w1 = nets["w1"].apply(params["w1"], state).abs().unflatten(-1, (self.n_agents, E))
        b1 = nets["b1"].apply(params["b1"], state)
        hidden = F.elu((agent_q.unsqueeze(-2) @ w1).squeeze(-2) + b1)  # [..., E]
        w2 = nets["w2"].apply(params["w2"], state).abs()
        return (hidden * w2).sum(-1) + nets["v"].apply(params["v"], state).squeeze(-1)
