"""A2C (Mnih et al. 2016), the worked example of ``docs/write-an-algorithm.md``: a segment ``[E, T]``
per iteration, one step of a loss made of primitives. Defaults: rl-baselines3-zoo's, CartPole."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import optim
from frl.algos import on_policy as op
from frl.algos.config import hyper, setting
from frl.algos.networks import actor_critic
from frl.algos.spec import Segments, collection_chunk
from frl.algos.train import Train, Unit, WrapOptimizer, resolve_env
from frl.losses import bind, entropy_bonus, normalize, policy_gradient_term, value_loss
from frl.tree import metrics

__all__ = ["Config", "a2c_loss", "make_train"]


@dataclass(frozen=True)
class Config(op.OnPolicyConfig):
    """Hyper-parameters live in the training state; settings shape the program."""

    agent: ClassVar[str] = "a2c"

    total_timesteps: int = setting(1_000_000, low=1)
    num_envs: int = setting(8, low=1)
    num_steps: int = setting(5, low=1)
    learning_rate: float = hyper(7e-4, low=0.0, low_open=True)
    rollout_chunk: int = setting(5, low=1)
    gae_lambda: float = hyper(1.0, low=0.0, high=1.0)
    ent_coef: float = hyper(0.0, low=0.0)
    vf_coef: float = hyper(0.5, low=0.0)
    normalize_advantage: bool = setting(False)


def a2c_loss(
    actor_params,
    critic_params,
    batch: TensorDictBase,
    *,
    policy_apply,
    value_apply,
    dist,
    entropy_coef: float | Tensor,
    value_coef: float | Tensor,
    normalize_advantage: bool = False,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """``L = policy_gradient_term(log pi, A) + value_coef value_loss(V, V_target)
    + entropy_coef entropy_bonus(H)`` on a batch with ``advantage`` and ``value_target`` [B]."""
    dist_params = policy_apply(actor_params, batch["observation"])
    advantage = normalize(batch["advantage"]) if normalize_advantage else batch["advantage"]
    policy_loss = policy_gradient_term(dist.log_prob(dist_params, batch["action"]), advantage)
    v_loss = value_loss(value_apply(critic_params, batch["observation"]), batch["value_target"])
    entropy = dist.entropy(dist_params)
    loss = policy_loss + value_coef * v_loss + entropy_coef * entropy_bonus(entropy)
    return loss, metrics(loss=loss, policy_loss=policy_loss, value_loss=v_loss, entropy=entropy.mean())


def make_train(config: Config, env: Any = None, *, wrap_optimizer: WrapOptimizer = None) -> Train:
    """A2C on ``config.env_id`` (or on ``env``), discrete or continuous actions."""
    env = resolve_env(config, env, Config)
    actor, dist, critic = networks = actor_critic(env, config.hidden, config.log_std_init, "a2c")
    tx = op.clipped_optimizer(
        optim.rmsprop(config.learning_rate, eps=1e-5), config.max_grad_norm, wrap_optimizer
    )
    loss = bind(a2c_loss, "actor", "critic", policy_apply=actor.apply, value_apply=critic.apply, dist=dist)

    with_advantages = op.values_of(env, config.num_steps)

    def learn(state: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        """GAE on the segment, then one step of the loss on all of it."""
        hp = state["hyperparams"]
        segment = with_advantages(
            state["data"], critic.apply, state["params", "critic"], gamma=hp["gamma"], lmbda=hp["gae_lambda"]
        )
        coefficients = partial(
            loss,
            entropy_coef=hp["ent_coef"],
            value_coef=hp["vf_coef"],
            normalize_advantage=config.normalize_advantage,
        )
        batch = op.flat_select(segment, ("observation", "action", "advantage", "value_target"))
        return op.learner_step(state, coefficients, tx, batch)

    chunk = collection_chunk(config.rollout_chunk, config.num_steps, env)
    consumes = Segments(config.num_envs, config.num_steps, chunk)
    return op.actor_critic_train(config, env, make_train, networks, tx, consumes, (Unit("learn", learn),))
