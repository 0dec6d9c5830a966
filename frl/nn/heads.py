"""Networks with the outputs RL algorithms need: Q-values, values and policy parameters.

Each is a frozen dataclass with ``init(key) -> params`` and a pure ``apply``. The heads output
distribution *parameters* (logits, mean and log-std); sampling and log-probabilities live in
``frl.distributions``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import random
from frl.nn.initializers import orthogonal, zeros
from frl.nn.layers import Activation, get_activation, linear, linear_init
from frl.nn.mlp import MLP, check_features

__all__ = [
    "CandidateScorer",
    "CategoricalPolicy",
    "ContinuousQNetwork",
    "GaussianPolicy",
    "QNetwork",
    "TanhGaussianPolicy",
    "ValueNetwork",
]


def _check_dims(owner: str, **dims: int) -> None:
    for name, value in dims.items():
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{owner}: `{name}` must be a positive int, got {value!r}")


@dataclass(frozen=True)
class QNetwork:
    """Action values for discrete actions, ``Q(s, .)``: ``[..., obs_dim] -> [..., num_actions]``.

    Defaults follow CleanRL's DQN (hidden (120, 84), ReLU).
    """

    obs_dim: int
    num_actions: int
    hidden: Sequence[int] = (120, 84)
    activation: str | Activation = "relu"
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        _check_dims("QNetwork", obs_dim=self.obs_dim, num_actions=self.num_actions)

    @cached_property
    def mlp(self) -> MLP:
        return MLP((self.obs_dim, *self.hidden, self.num_actions), self.activation, dtype=self.dtype)

    def init(self, key: Tensor) -> TensorDict:
        return self.mlp.init(key)

    def apply(self, params: TensorDictBase, obs: Tensor) -> Tensor:
        return self.mlp.apply(params, obs)


@dataclass(frozen=True)
class ContinuousQNetwork:
    """``Q(s, a)`` for continuous actions: ``([..., obs_dim], [..., action_dim]) -> [...]``.

    Defaults follow CleanRL's SAC critic (hidden (256, 256), ReLU). Stack several with
    ``frl.nn.Ensemble`` for twin or REDQ-style critics.
    """

    obs_dim: int
    action_dim: int
    hidden: Sequence[int] = (256, 256)
    activation: str | Activation = "relu"
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        _check_dims("ContinuousQNetwork", obs_dim=self.obs_dim, action_dim=self.action_dim)

    @cached_property
    def mlp(self) -> MLP:
        return MLP((self.obs_dim + self.action_dim, *self.hidden, 1), self.activation, dtype=self.dtype)

    def init(self, key: Tensor) -> TensorDict:
        return self.mlp.init(key)

    def apply(self, params: TensorDictBase, obs: Tensor, action: Tensor) -> Tensor:
        check_features(obs, self.obs_dim, "obs", "ContinuousQNetwork.apply")
        check_features(action, self.action_dim, "action", "ContinuousQNetwork.apply")
        if obs.shape[:-1] != action.shape[:-1]:
            raise ValueError(
                "ContinuousQNetwork.apply: `obs` and `action` must share leading dims, got "
                f"{list(obs.shape)} and {list(action.shape)}"
            )
        return self.mlp.apply(params, torch.cat([obs, action], dim=-1)).squeeze(-1)


@dataclass(frozen=True)
class ValueNetwork:
    """State values ``V(s)``: ``[..., obs_dim] -> [...]`` (CleanRL PPO critic: (64, 64), tanh)."""

    obs_dim: int
    hidden: Sequence[int] = (64, 64)
    activation: str | Activation = "tanh"
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        _check_dims("ValueNetwork", obs_dim=self.obs_dim)

    @cached_property
    def mlp(self) -> MLP:
        return MLP((self.obs_dim, *self.hidden, 1), self.activation, output_scale=1.0, dtype=self.dtype)

    def init(self, key: Tensor) -> TensorDict:
        return self.mlp.init(key)

    def apply(self, params: TensorDictBase, obs: Tensor) -> Tensor:
        return self.mlp.apply(params, obs).squeeze(-1)


@dataclass(frozen=True)
class CategoricalPolicy:
    """Logits of a categorical policy: ``[..., obs_dim] -> [..., num_actions]``.

    CleanRL PPO's actor: (64, 64), tanh, the logits layer initialised with gain 0.01 so the
    initial policy is near uniform.
    """

    obs_dim: int
    num_actions: int
    hidden: Sequence[int] = (64, 64)
    activation: str | Activation = "tanh"
    output_scale: float = 0.01
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        _check_dims("CategoricalPolicy", obs_dim=self.obs_dim, num_actions=self.num_actions)

    @cached_property
    def mlp(self) -> MLP:
        sizes = (self.obs_dim, *self.hidden, self.num_actions)
        return MLP(sizes, self.activation, output_scale=self.output_scale, dtype=self.dtype)

    def init(self, key: Tensor) -> TensorDict:
        return self.mlp.init(key)

    def apply(self, params: TensorDictBase, obs: Tensor) -> Tensor:
        return self.mlp.apply(params, obs)


@dataclass(frozen=True)
class CandidateScorer:
    """One score per candidate from a shared network: ``[..., user_dim + M * item_dim] -> [..., M]``.

    The observation is the user's features followed by ``M`` candidates' features (the layout of
    :mod:`frl.envs.recsim`); every candidate is scored by the same MLP on
    ``concat(user, item_j)``, so the scores follow the candidates wherever they sit. The
    logits of a slate policy (:class:`frl.distributions.PlackettLuce`) or per-item values.
    """

    user_dim: int
    item_dim: int
    num_candidates: int
    hidden: Sequence[int] = (64, 64)
    activation: str | Activation = "tanh"
    output_scale: float = 0.01
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        _check_dims("CandidateScorer", item_dim=self.item_dim, num_candidates=self.num_candidates)
        if not isinstance(self.user_dim, int) or self.user_dim < 0:
            raise ValueError(f"CandidateScorer: `user_dim` must be an int >= 0, got {self.user_dim!r}")

    @property
    def obs_dim(self) -> int:
        return self.user_dim + self.num_candidates * self.item_dim

    @cached_property
    def mlp(self) -> MLP:
        sizes = (self.user_dim + self.item_dim, *self.hidden, 1)
        return MLP(sizes, self.activation, output_scale=self.output_scale, dtype=self.dtype)

    def init(self, key: Tensor) -> TensorDict:
        return self.mlp.init(key)

    def apply(self, params: TensorDictBase, obs: Tensor) -> Tensor:
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(
                f"CandidateScorer: observations must end with {self.obs_dim} features "
                f"(user {self.user_dim} + {self.num_candidates} x {self.item_dim}), got {obs.shape[-1]}"
            )
        user = obs[..., : self.user_dim]
        items = obs[..., self.user_dim :].unflatten(-1, (self.num_candidates, self.item_dim))
        user = user.unsqueeze(-2).expand(*items.shape[:-1], self.user_dim)
        return self.mlp.apply(params, torch.cat([user, items], dim=-1)).squeeze(-1)


@dataclass(frozen=True)
class GaussianPolicy:
    """A diagonal Gaussian policy: ``[..., obs_dim] -> (mean, log_std)``, each ``[..., action_dim]``.

    The torso (``hidden``, ``activation``) feeds a linear mean layer (gain ``output_scale``).
    The log-std is either free (``state_dependent_std=False``: a parameter ``log_std
    [action_dim]`` starting at ``log_std_init``, as CleanRL's continuous PPO) or a second
    linear layer. With ``log_std_bounds=(lo, hi)`` a free log-std is clamped and a
    state-dependent one squashed smoothly, ``lo + (hi - lo) * (tanh(x) + 1) / 2``.

    Params: ``{"torso": MLP params, "mean": linear, "log_std": linear or tensor}``.
    """

    obs_dim: int
    action_dim: int
    hidden: Sequence[int] = (64, 64)
    activation: str | Activation = "tanh"
    state_dependent_std: bool = False
    log_std_init: float = 0.0
    log_std_bounds: tuple[float, float] | None = None
    output_scale: float = 0.01
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        _check_dims(type(self).__name__, obs_dim=self.obs_dim, action_dim=self.action_dim)
        if len(tuple(self.hidden)) == 0:
            raise ValueError(f"{type(self).__name__}: `hidden` must hold at least one layer size")
        if self.log_std_bounds is not None and not self.log_std_bounds[0] < self.log_std_bounds[1]:
            raise ValueError(
                f"{type(self).__name__}: `log_std_bounds` must be (low, high) with low < high, "
                f"got {self.log_std_bounds}"
            )
        get_activation(self.activation)

    @cached_property
    def torso(self) -> MLP:
        sizes = (self.obs_dim, *self.hidden)  # every torso layer is a hidden layer
        return MLP(sizes, self.activation, True, out_w_init=orthogonal(math.sqrt(2.0)), dtype=self.dtype)

    def init(self, key: Tensor) -> TensorDict:
        k_torso, k_mean, k_std = random.split(key, 3)
        width = tuple(self.hidden)[-1]
        head = dict(w_init=orthogonal(self.output_scale), b_init=zeros(), dtype=self.dtype)
        params = {
            "torso": self.torso.init(k_torso),
            "mean": linear_init(k_mean, width, self.action_dim, **head),
        }
        if self.state_dependent_std:
            params["log_std"] = linear_init(k_std, width, self.action_dim, **head)
        else:
            params["log_std"] = torch.full((self.action_dim,), self.log_std_init, dtype=self.dtype)
        return TensorDict(params, batch_size=[])

    def apply(self, params: TensorDictBase, obs: Tensor) -> tuple[Tensor, Tensor]:
        h = self.torso.apply(params["torso"], obs)
        mean = linear(params["mean"], h)
        if self.state_dependent_std:
            log_std = linear(params["log_std"], h)
            if self.log_std_bounds is not None:
                lo, hi = self.log_std_bounds
                log_std = lo + 0.5 * (hi - lo) * (torch.tanh(log_std) + 1.0)
        else:
            log_std = params["log_std"].expand_as(mean)
            if self.log_std_bounds is not None:
                log_std = log_std.clamp(*self.log_std_bounds)
        return mean, log_std


@dataclass(frozen=True)
class TanhGaussianPolicy(GaussianPolicy):
    """A Gaussian policy squashed by tanh into ``[action_low, action_high]`` (SAC's actor).

    ``apply`` returns the pre-squash ``(mean, log_std)``; ``mode`` the deterministic action
    ``tanh(mean) * scale + bias`` with ``scale = (high - low) / 2``, ``bias = (high + low) / 2``.
    Defaults follow CleanRL's SAC: (256, 256), ReLU, state-dependent log-std squashed into
    (-5, 2).
    """

    hidden: Sequence[int] = (256, 256)
    activation: str | Activation = "relu"
    state_dependent_std: bool = True
    log_std_bounds: tuple[float, float] | None = (-5.0, 2.0)
    output_scale: float = 1.0
    action_low: float | Sequence[float] = -1.0
    action_high: float | Sequence[float] = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        low = torch.as_tensor(self.action_low, dtype=torch.float64).expand(self.action_dim)
        high = torch.as_tensor(self.action_high, dtype=torch.float64).expand(self.action_dim)
        if not bool((low < high).all()):
            raise ValueError(
                f"TanhGaussianPolicy: `action_low` must be below `action_high`, got {self.action_low}, "
                f"{self.action_high}"
            )

    def action_scale_and_bias(self, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        """``((high - low) / 2, (high + low) / 2)``, each ``[action_dim]``."""
        low = torch.as_tensor(self.action_low, dtype=self.dtype, device=device).expand(self.action_dim)
        high = torch.as_tensor(self.action_high, dtype=self.dtype, device=device).expand(self.action_dim)
        return (high - low) / 2.0, (high + low) / 2.0

    def mode(self, params: TensorDictBase, obs: Tensor) -> Tensor:
        """The deterministic action ``tanh(mean) * scale + bias``: ``[..., action_dim]``."""
        mean, _ = self.apply(params, obs)
        scale, bias = self.action_scale_and_bias(mean.device)
        return torch.tanh(mean) * scale + bias
