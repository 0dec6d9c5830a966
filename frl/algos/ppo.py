"""PPO (Schulman et al. 2017) on a pure environment, discrete or continuous actions.

One iteration, as CleanRL's ``ppo.py`` (and ``ppo_continuous_action.py``):

1. COLLECT ``num_steps`` steps on ``num_envs`` environments into the segment ``[E, T]``
   (units of ``rollout_chunk`` steps);
2. ADVANTAGES: values of the observations and of the true next observations, GAE (truncated
   steps bootstrap, terminated ones do not) written into the segment, and ``update_epochs``
   minibatch orders;
3. UPDATE: ``update_epochs x num_minibatches`` clipped-surrogate steps (Adam, gradient-norm
   clipping, learning rate annealed linearly to 0 over the run).

Every hyper-parameter of the math (learning rate, gamma, GAE lambda, clip ratio, entropy and
value coefficients, clip norm) is read from ``state["hyperparams"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase

from frl import optim, random
from frl.algos import on_policy as op
from frl.algos.config import hyper, setting
from frl.algos.networks import actor_critic
from frl.algos.spec import Segments, collection_chunk
from frl.algos.train import Train, Unit, WrapOptimizer, resolve_env
from frl.losses import bind, ppo_loss
from frl.tree import assemble, replace

__all__ = [
    "MINIBATCH_KEYS",
    "Config",
    "advantages_unit",
    "clipped_loss",
    "extend",
    "make_train",
    "update_unit",
]

MINIBATCH_KEYS = ("observation", "action", "action_log_prob", *op.ADVANTAGE_KEYS)


@dataclass(frozen=True)
class Config(op.OnPolicyConfig):
    """PPO settings; defaults are CleanRL's for CartPole-v1 (``ppo.py``); ``Config.preset(env_id)``
    gives tuned settings for other built-in environments (``frl/algos/presets.json``)."""

    agent: ClassVar[str] = "ppo"

    anneal_lr: bool = setting(True)
    gae_lambda: float = hyper(0.95, low=0.0, high=1.0)
    num_minibatches: int = setting(4, low=1)
    update_epochs: int = setting(4, low=1)
    norm_adv: bool = setting(True)
    clip_coef: float = hyper(0.2, low=0.0, high=1.0)
    clip_vloss: bool = setting(True)
    ent_coef: float = hyper(0.01, low=0.0)
    vf_coef: float = hyper(0.5, low=0.0)

    def check(self) -> None:
        super().check()
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"ppo.Config: `num_envs * num_steps` ({self.batch_size}) must be divisible by "
                f"`num_minibatches` ({self.num_minibatches})"
            )

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def num_iterations(self) -> int:
        return self.total_timesteps // self.batch_size


def advantages_unit(
    config: Config,
    value_apply: Callable,
    with_advantages: Callable = op.with_advantages,
    prefix: tuple[str, ...] = (),
    items: int | None = None,
) -> Callable:
    """The unit that writes values and GAE into the segment (``params["critic"]``, the state's
    ``gamma`` and ``gae_lambda``) and draws this iteration's ``update_epochs`` minibatch orders.
    ``with_advantages(segment, value_apply, critic_params, gamma=, lmbda=)`` computes them, under
    ``prefix`` in the segment (multi-agent PPO passes its own, which writes them per agent under
    the agents' group). ``items``: what the orders permute (default the ``E T`` steps; recurrent
    PPO permutes its sequences)."""
    n = config.num_envs * config.num_steps if items is None else items

    def advantages(state: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        hp = state["hyperparams"]
        segment = with_advantages(
            state["data"], value_apply, state["params", "critic"], gamma=hp["gamma"], lmbda=hp["gae_lambda"]
        )
        key, k_order = random.split(state["key"])
        # one draw of random sort keys for every epoch (one threefry, cheap to compile)
        order = random.stable_order(random.bits(k_order, (config.update_epochs, n)))
        start = torch.zeros_like(state["counters", "minibatch"])
        new = replace(
            state,
            data=segment,
            key=key,
            # an extension's own scratch entries stay
            scratch=replace(state["scratch"], order=order.reshape(-1, n // config.num_minibatches)),
            counters=replace(state["counters"], minibatch=start),
        )
        value, advantage = segment[(*prefix, "state_value")], segment[(*prefix, "advantage")]
        means = {"value": value.mean(), "advantage": advantage.mean()}
        return new, assemble(means)

    return advantages


def update_unit(
    config: Config,
    optimizer: Any,
    loss_of: Callable,
    keys: tuple[Any, ...] = MINIBATCH_KEYS,
    trainable: tuple[str, ...] | None = None,
    minibatch_of: Callable | None = None,
) -> Callable:
    """The unit that takes one step of ``loss_of(hyperparams)`` (a loss over ``params`` and a
    minibatch of the segment's ``keys``) on the next minibatch, with the learning rate annealed
    linearly to 0 over the run when ``anneal_lr``; ``trainable``: the params keys it optimises
    (default: all); ``minibatch_of(segment, index)``: the minibatch of the order's ``index``
    (default: those steps of the flattened segment's ``keys``)."""
    updates_total = max(config.num_iterations * config.update_epochs * config.num_minibatches, 1)

    def update(state: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        hp, counters = state["hyperparams"], state["counters"]
        index = torch.index_select(state["scratch", "order"], 0, counters["minibatch"].reshape(1)).squeeze(0)
        minibatch = (
            op.flat_select(state["data"], keys, index)
            if minibatch_of is None
            else minibatch_of(state["data"], index)
        )
        lr = hp["learning_rate"]
        if config.anneal_lr:
            lr = lr * (1.0 - torch.clamp(counters["updates"] / updates_total, max=1.0))
        step = {"minibatch": counters["minibatch"] + 1}
        return op.learner_step(
            state, loss_of(hp), optimizer, minibatch, learning_rate=lr, counters=step, trainable=trainable
        )

    return update


def clipped_loss(config: Config, loss: Callable, hp: TensorDictBase) -> Callable:
    """``loss`` (a bound :func:`frl.losses.ppo_loss`) with the state's coefficients."""
    return partial(
        loss,
        clip_eps=hp["clip_coef"],
        value_clip_eps=hp["clip_coef"] if config.clip_vloss else None,
        entropy_coef=hp["ent_coef"],
        value_coef=hp["vf_coef"],
        normalize_advantage=config.norm_adv,
    )


def make_train(config: Config, env: Any = None, *, wrap_optimizer: WrapOptimizer = None) -> Train:
    """PPO on ``config.env_id`` (or on ``env``): a :class:`~frl.algos.train.Train`.

    ``wrap_optimizer`` wraps the optimizer (``frl.distributed.all_reduce_gradients`` for
    data-parallel training). The units are :func:`advantages_unit` and :func:`update_unit`, which
    an extension reuses (``examples/ppo_rnd.py``).
    """
    env = resolve_env(config, env, Config)
    actor, dist, critic = networks = actor_critic(env, config.hidden, config.log_std_init, "ppo")
    tx = op.clipped_optimizer(
        optim.adam(config.learning_rate, eps=1e-5), config.max_grad_norm, wrap_optimizer
    )
    loss = bind(ppo_loss, "actor", "critic", policy_apply=actor.apply, value_apply=critic.apply, dist=dist)
    updates_per_iteration = config.update_epochs * config.num_minibatches
    order = torch.zeros(updates_per_iteration, config.minibatch_size, dtype=torch.int64)
    return op.actor_critic_train(
        config,
        env,
        make_train,
        networks,
        tx,
        Segments(
            config.num_envs,
            config.num_steps,
            collection_chunk(config.rollout_chunk, config.num_steps, env),
            extra=op.ADVANTAGE_KEYS,
        ),
        (
            Unit("advantages", advantages_unit(config, critic.apply, op.values_of(env, config.num_steps))),
            Unit(
                "update",
                update_unit(config, tx, partial(clipped_loss, config, loss)),
                updates_per_iteration,
                scanned=True,
            ),
        ),
        parts={"loss": loss},
        counters={"minibatch": 0},
        scratch=TensorDict({"order": order}, batch_size=[]),
    )


def extend(
    base: Train,
    *,
    networks: Mapping[str, Any],
    trainable: tuple[str, ...],
    factory: Callable,
    loss_term: Callable | None = None,
    shape_advantages: Callable | None = None,
    extra: tuple[str, ...] = (),
    minibatch_keys: tuple[Any, ...] = (),
) -> Train:
    """PPO with more: networks added to ``params``, a loss term added to the clipped loss, the
    advantages reshaped after GAE (``examples/ppo_rnd.py`` adds RND this way).

    Args:
      base: a PPO agent (:func:`make_train`).
      networks: ``{name: network}`` with ``init(key)``, added to ``params``.
      trainable: the params keys the optimizer trains (PPO's ``actor`` and ``critic`` included).
      factory: ``factory(config, env) -> Train`` that rebuilds the extended agent.
      loss_term: ``loss_term(hyperparams) -> term(params, minibatch) -> (loss, metrics)``.
      shape_advantages: ``(state) -> (state, metrics)`` after PPO's GAE (it may rewrite
        ``data.advantage`` and fill the ``extra`` entries).
      extra: per-step float entries added to the segment.
      minibatch_keys: segment entries the minibatches carry beyond PPO's.
    """
    config, tx = base.config, base.parts["optimizer"]

    def loss_of(hp: TensorDictBase) -> Callable:
        ppo_term, more = clipped_loss(config, base.parts["loss"], hp), loss_term and loss_term(hp)

        def loss(params: TensorDictBase, batch: TensorDictBase, key: Any = None) -> tuple[Any, TensorDict]:
            value, metrics = ppo_term(params, batch)
            if more is None:
                return value, metrics
            added, added_metrics = more(params, batch)
            return value + added, metrics.update(added_metrics)

        return loss

    def advantages(state: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        state, metrics = base.learn[0].fn(state)
        if shape_advantages is None:
            return state, metrics
        state, added = shape_advantages(state)
        return state, metrics.update(added)

    def build(key: Any, hyperparams: TensorDictBase) -> TensorDict:
        state = base.build(key, hyperparams)
        keys = random.split(random.fold_in(key, 1), len(networks))
        state["params"].update(
            {name: net.init(k) for (name, net), k in zip(networks.items(), keys, strict=True)}
        )
        state["opt_state"] = op.optimizer_state(tx, state["params"].select(*trainable))
        for name in extra:
            state["data", name] = torch.zeros_like(state["data", "advantage"])
        return state

    update = update_unit(config, tx, loss_of, (*MINIBATCH_KEYS, *minibatch_keys), trainable)
    learn = (Unit("advantages", advantages), base.learn[1]._replace(fn=update))
    consumes = dataclasses.replace(base.consumes, extra=(*base.consumes.extra, *extra))
    return dataclasses.replace(base, consumes=consumes, build=build, learn=learn, factory=factory)
