"""Pieces the on-policy agents share (PPO, A2C, REINFORCE): the behaviour and evaluation
policies of an actor, GAE written into the segment, minibatches of a segment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import envs, optim, random
from frl._compile import readable
from frl.algos.collect import make_collect
from frl.algos.config import AgentConfig, check_segments, hyper, setting
from frl.algos.networks import clip_action
from frl.algos.spec import Segments
from frl.algos.train import Train, Unit, build_state, gradient_update, wrapped_optimizer
from frl.distributions import Distribution
from frl.optim import GradientTransformation
from frl.returns import gae
from frl.tree import assemble, entries, replace

__all__ = [
    "OnPolicyConfig",
    "actor_critic_build",
    "actor_critic_train",
    "annotate_gae",
    "bootstrap_values",
    "clipped_optimizer",
    "explore_with",
    "flat_select",
    "learner_step",
    "optimizer_state",
    "policy_of",
    "values_of",
    "with_advantages",
]

ADVANTAGE_KEYS = ("state_value", "advantage", "value_target")
"""The entries :func:`with_advantages` adds to a segment (``Segments.extra`` of its agents)."""


def explore_with(actor_apply: Callable[[TensorDictBase, Tensor], Any], dist: Distribution) -> Callable:
    """``explore(params, hyperparams, obs, key, env_steps) -> (action, log_prob)``: a sample of
    the current policy ``params["actor"]`` and its log-probability."""

    def explore(params: TensorDictBase, hyperparams: Any, obs: Tensor, key: Tensor, env_steps: Tensor):
        dist_params = actor_apply(params["actor"], obs)
        action = dist.sample(key, dist_params)
        return action, dist.log_prob(dist_params, action).detach()

    return explore


def policy_of(env: Any, actor_apply: Callable[[TensorDictBase, Tensor], Any], dist: Distribution) -> Callable:
    """``policy(params, obs) -> action``: the mode of ``params["actor"]``'s policy, clipped."""

    def policy(params: TensorDictBase, obs: Tensor) -> Tensor:
        return clip_action(env, dist.mode(actor_apply(params["actor"], obs)))

    return policy


def with_advantages(
    segment: TensorDictBase,
    value_apply: Callable[[TensorDictBase, Tensor], Tensor],
    critic_params: TensorDictBase,
    *,
    gamma: float | Tensor,
    lmbda: float | Tensor,
    truncations: int | None = None,
) -> TensorDictBase:
    """The segment ``[E, T]`` with ``state_value``, ``advantage`` and ``value_target`` (GAE).

    Values of the observations and of the true next observations (a truncated step bootstraps
    from its final observation; a terminated one does not) are detached; time is the segment's
    last dim, as ``frl.returns`` reads it.

    ``truncations``: at most this many truncated steps in one environment's row of the segment
    (``frl.envs.most_truncations(env, T)``, where the segment is the environment's own
    consecutive steps). The critic then reads ``T + truncations + 1`` observations a row instead
    of ``2 T`` (:func:`bootstrap_values`). ``None``: it reads every next observation.
    """
    if truncations is None:
        value = value_apply(critic_params, segment["observation"]).detach()
        next_value = value_apply(critic_params, segment["next", "observation"]).detach()
    else:
        value, next_value = bootstrap_values(segment, value_apply, critic_params, truncations)
    return annotate_gae(segment, value, next_value, gamma=gamma, lmbda=lmbda)


def bootstrap_values(
    segment: TensorDictBase,
    value_apply: Callable[[TensorDictBase, Tensor], Tensor],
    critic_params: TensorDictBase,
    truncations: int,
) -> tuple[Tensor, Tensor]:
    """``(V(s_t), V(s'_t))``, each ``[E, T]`` and detached, from one critic pass over the
    observations and ``truncations + 1`` next observations a row.

    In a segment of consecutive steps, a step that did not end its episode leads to the next
    step's observation (``s'_t = s_{t+1}``), and a terminated step does not bootstrap (GAE
    multiplies its ``V(s'_t)`` by 0, so the next episode's first value stands in). The critic
    reads ``s'`` only at the last step and at the truncated, not terminated, steps: the first
    ``truncations`` of them in each row (gathered by ``topk`` on their step numbers; where a row has
    fewer, the other picks read their own ``s'`` too, which changes nothing).

    Raises:
      ValueError: eagerly, where a row holds more than ``truncations`` such steps.
    """
    obs, next_obs = segment["observation"], segment["next", "observation"]
    bootstraps = segment["next", "done"] & ~segment["next", "terminated"]  # [E, T]
    steps = bootstraps.shape[-1]
    most = int(bootstraps.sum(-1).max()) if readable(bootstraps) and bootstraps.numel() else 0
    if most > truncations:
        raise ValueError(
            f"with_advantages: a row of the segment holds {most} truncated steps, more than "
            f"`truncations` ({truncations})"
        )
    k = min(truncations, steps)
    # the earliest `k` truncated steps of each row score highest (a row with fewer picks others)
    first = torch.arange(steps, 0, -1, device=bootstraps.device)
    picked = torch.where(bootstraps, first, 0).topk(k, dim=-1).indices  # [E, k]
    rows = torch.cat([picked, picked.new_full((*picked.shape[:-1], 1), steps - 1)], dim=-1)  # [E, k + 1]
    index = rows.reshape(*rows.shape, *(1,) * (next_obs.dim() - rows.dim()))
    read = torch.take_along_dim(next_obs, index, dim=rows.dim() - 1)
    values = value_apply(critic_params, torch.cat([obs, read], dim=rows.dim() - 1)).detach()
    value, read_value = values[..., :steps], values[..., steps:]
    next_value = torch.cat([value[..., 1:], read_value[..., -1:]], dim=-1)
    # a picked step that is not truncated gets V(s'_t) too: s_{t+1} where it went on, and a value
    # GAE multiplies by 0 where it terminated
    next_value = next_value.scatter(-1, picked, read_value[..., :k])
    return value, next_value


def values_of(env: Any, steps: int) -> Callable:
    """:func:`with_advantages` for segments of ``steps`` steps of ``env``: with
    the bound on truncated steps where ``env`` states one (``frl.envs.most_truncations``), so the
    critic reads the observations and only those next observations that differ from the next
    step's."""
    return partial(with_advantages, truncations=envs.most_truncations(env, steps))


def annotate_gae(
    segment: TensorDictBase,
    value: Tensor,
    next_value: Tensor,
    *,
    gamma: float | Tensor,
    lmbda: float | Tensor,
) -> TensorDictBase:
    """A copy of ``segment [E, T]`` with ``state_value`` (= ``value``), and GAE's ``advantage`` and
    ``value_target`` from ``value`` and ``next_value`` (each ``[E, T]``, already detached)."""
    advantage, target = gae(
        segment["next", "reward"],
        value,
        next_value,
        segment["next", "terminated"],
        segment["next", "done"],
        gamma=gamma,
        lmbda=lmbda,
    )
    out = segment.copy()
    out["state_value"], out["advantage"], out["value_target"] = value, advantage, target
    return out


def flat_select(
    segment: TensorDictBase, keys: tuple[str, ...], index: Tensor | None = None
) -> TensorDictBase:
    """``keys`` of a segment ``[E, T]`` as one batch ``[E T]`` (rows ``index`` only, if given)."""
    fields = entries(segment)
    if all(isinstance(k, str) and isinstance(fields.get(k), Tensor) for k in keys):
        # top-level tensors (every built-in agent's keys): plain reshapes and row selections, a
        # fraction of TensorDict's select/reshape/apply eagerly and of the lines dynamo traces
        dims = segment.batch_dims
        rows = segment.batch_size.numel()

        def flat(x: Tensor) -> Tensor:
            x = x.reshape(rows, *x.shape[dims:])
            return x if index is None else torch.index_select(x, 0, index)

        n = rows if index is None else index.shape[0]
        return assemble({k: flat(fields[k]) for k in keys}, batch_size=(n,))
    flat = segment.select(*keys).reshape(-1)
    if index is None:
        return flat
    return flat.apply(lambda x: torch.index_select(x, 0, index), batch_size=[index.shape[0]])


def learner_step(
    state: TensorDictBase,
    loss_fn: Callable,
    optimizer: Any,
    batch: TensorDictBase,
    *,
    learning_rate: Tensor | None = None,
    counters: dict[str, Tensor] | None = None,
    trainable: tuple[str, ...] | None = None,
) -> tuple[TensorDictBase, TensorDictBase]:
    """One gradient step of an actor-critic agent (``frl.update.gradient_step`` on
    ``state["params"]`` and ``state["opt_state"]``) with the optimizer's ``learning_rate`` (default
    ``hyperparams.learning_rate``; PPO passes its annealed one) and ``max_norm`` (``hyperparams.
    max_grad_norm``): ``(state, metrics)`` with ``counters.updates`` advanced (and ``counters`` set).
    ``trainable``: the top-level params keys to optimise (default: all)."""
    hp = state["hyperparams"]
    rates = {"learning_rate": hp["learning_rate"] if learning_rate is None else learning_rate}
    rates["max_norm"] = hp["max_grad_norm"]
    params, opt_state, metrics = gradient_update(
        state, loss_fn, optimizer, batch, trainable=trainable, hyperparams=rates
    )
    count = {"updates": state["counters", "updates"] + 1, **(counters or {})}
    return replace(
        state, params=params, opt_state=opt_state, counters=replace(state["counters"], **count)
    ), metrics


def clipped_optimizer(optimizer: GradientTransformation, max_grad_norm: float, wrap: Callable | None = None):
    """``optimizer`` after a global-norm clip (``max_norm`` passed from the state at every update),
    wrapped by ``make_train``'s ``wrap_optimizer`` hook."""
    return wrapped_optimizer(optim.chain(optim.clip_by_global_norm(max_grad_norm), optimizer), wrap)


def actor_critic_train(
    config: OnPolicyConfig,
    env: Any,
    factory: Callable,
    networks: tuple[Any, Distribution, Any],
    optimizer: GradientTransformation,
    consumes: Segments,
    learn: tuple[Unit, ...],
    parts: dict[str, Any] | None = None,
    **build: Any,
) -> Train:
    """An actor-critic agent's :class:`Train`: ``learn`` after the pure-environment collection of
    ``consumes`` (``rollout_chunk`` steps per call) with the actor's samples, the actor's mode for
    evaluation, and :func:`actor_critic_build`'s state (``build``: its ``counters``, ``scratch``).
    ``Train.parts`` holds the networks, the optimizer and ``parts``."""
    actor, dist, critic = networks
    explore = explore_with(actor.apply, dist)
    collect = Unit("collect", make_collect(env, explore, consumes), consumes.num_steps // consumes.chunk)
    return Train(
        name=config.agent,
        config=config,
        env=env,
        consumes=consumes,
        build=actor_critic_build(env, actor, critic, optimizer, consumes, **build),
        collect=(collect,),
        learn=learn,
        policy=policy_of(env, actor.apply, dist),
        explore=explore,
        factory=factory,
        parts={"actor": actor, "critic": critic, "dist": dist, "optimizer": optimizer, **(parts or {})},
    )


def optimizer_state(optimizer: GradientTransformation, params: TensorDictBase) -> TensorDictBase:
    """``optimizer.init(params)`` without ``learning_rate`` and ``max_norm``: an actor-critic agent
    passes them from the state's ``hyperparams`` (:func:`learner_step`)."""
    return optim.drop_hyperparams(optimizer.init(params), "learning_rate", "max_norm")


def actor_critic_build(
    env: Any,
    actor: Any,
    critic: Any,
    optimizer: Any,
    consumes: Segments,
    *,
    counters: dict[str, int] | None = None,
    scratch: TensorDictBase | None = None,
) -> Callable[[Tensor, TensorDictBase], TensorDictBase]:
    """``build(key, hyperparams) -> state`` for an actor-critic agent (:func:`build_state`):
    ``params`` ``{"actor", "critic"}``, the optimizer's ``learning_rate`` and ``max_norm`` passed
    from ``hyperparams``."""

    def init_params(key: Tensor) -> TensorDict:
        k_actor, k_critic = random.split(key)
        return TensorDict({"actor": actor.init(k_actor), "critic": critic.init(k_critic)}, batch_size=[])

    return build_state(
        env,
        consumes,
        init_params,
        optimizer,
        passed=("learning_rate", "max_norm"),
        counters=counters,
        scratch=scratch,
    )


@dataclass(frozen=True)
class OnPolicyConfig(AgentConfig):
    """What every on-policy agent's Config holds: ``num_envs`` environments x ``num_steps`` steps
    per iteration (collected ``rollout_chunk`` steps per compiled call; 0, the default: the whole
    segment in one call, its steps a loop inside the graph), CleanRL's actor-critic networks, and
    the optimizer's learning rate and gradient-norm clip."""

    env_id: str = setting("CartPole-v1")
    total_timesteps: int = setting(500_000, low=1)
    num_envs: int = setting(4, low=1)
    num_steps: int = setting(128, low=1)
    learning_rate: float = hyper(2.5e-4, low=0.0, low_open=True)
    gamma: float = hyper(0.99, low=0.0, high=1.0)
    max_grad_norm: float = hyper(0.5, low=0.0, low_open=True)
    hidden: tuple[int, ...] = setting((64, 64))
    log_std_init: float = setting(0.0)
    rollout_chunk: int = setting(0, low=0)

    def check(self) -> None:
        check_segments(self)
