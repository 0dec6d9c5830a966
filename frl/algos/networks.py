"""The networks agents share: CleanRL's actor-critic pair, and clipping actions into the box."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from frl import nn
from frl.distributions import Categorical, DiagGaussian, Distribution, MultiCategorical, PlackettLuce
from frl.envs.spaces import MultiDiscrete, Slate

__all__ = ["actor_critic", "clip_action", "vector_observations"]


def vector_observations(env: Any, algorithm: str) -> int:
    """The observation size of ``env``, or a ValueError if its observations are not vectors."""
    shape = tuple(env.observation_space.shape)
    if len(shape) != 1:
        raise ValueError(
            f"{algorithm} takes vector observations; {env.id} has observations of shape {list(shape)} "
            "(image observations: the Nature CNN path is dqn's)"
        )
    return shape[0]


def actor_critic(
    env: Any, hidden: tuple[int, ...], log_std_init: float = 0.0, algorithm: str = "actor-critic"
) -> tuple[Any, Distribution, nn.ValueNetwork]:
    """CleanRL's on-policy networks for ``env``: ``(actor, dist, critic)``.

    Discrete actions: a categorical policy (tanh MLP, near-uniform start); on image frames
    (``env.pixels``) a convolutional torso per network (``env.torso``: ``"nature"`` or
    ``"minatar"``). A ``Slate``: a Plackett-Luce policy over per-candidate scores
    (:class:`frl.nn.CandidateScorer` when the environment lays candidates out as ``document_dim``
    features each, else an MLP). ``MultiDiscrete`` (and ``MultiBinary``): the same MLP with
    ``sum(nvec)`` logits, a factorised categorical per action dim. Continuous: a diagonal Gaussian
    with a state-independent log-std starting at ``log_std_init``. The critic is a tanh MLP value
    network (a CNN one on frames).
    """
    if getattr(env, "pixels", False) and env.discrete:  # image frames: a convolutional torso each
        shape, kind = tuple(env.observation_space.shape), getattr(env, "torso", "nature")
        actor_net = nn.ConvNetwork(shape, env.action_space.n, kind, output_scale=0.01)
        return actor_net, Categorical(), nn.ConvNetwork(shape, 1, kind, squeeze=True)
    obs_dim = vector_observations(env, algorithm)
    if isinstance(env.action_space, Slate):
        space = env.action_space
        item_dim = getattr(env, "document_dim", None)
        if item_dim is None:  # no per-candidate layout: score the candidates from the whole observation
            actor: Any = nn.CategoricalPolicy(obs_dim, space.n, hidden=hidden, activation="tanh")
        else:
            user_dim = obs_dim - space.n * item_dim
            actor = nn.CandidateScorer(user_dim, item_dim, space.n, hidden=hidden, activation="tanh")
        dist: Distribution = PlackettLuce(space.k)
    elif isinstance(env.action_space, MultiDiscrete):
        nvec = env.action_space.nvec
        actor = nn.CategoricalPolicy(obs_dim, sum(nvec), hidden=hidden, activation="tanh")
        dist = MultiCategorical(nvec)
    elif env.discrete:
        actor = nn.CategoricalPolicy(obs_dim, env.action_space.n, hidden=hidden, activation="tanh")
        dist = Categorical()
    else:
        actor = nn.GaussianPolicy(
            obs_dim, env.action_space.shape[0], hidden=hidden, log_std_init=log_std_init
        )
        dist = DiagGaussian()
    return actor, dist, nn.ValueNetwork(obs_dim, hidden=hidden)


def clip_action(env: Any, action: Tensor) -> Tensor:
    """Clamp continuous actions into the action box (discrete actions pass through)."""
    if env.discrete or isinstance(env.action_space, MultiDiscrete):
        return action
    space = env.action_space
    return torch.clamp(
        action,
        space.low_tensor(action.device).to(action.dtype),
        space.high_tensor(action.device).to(action.dtype),
    )
