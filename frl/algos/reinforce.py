"""REINFORCE with a learned baseline (Williams 1992) on a pure environment.

One iteration:

1. COLLECT ``num_steps`` steps on ``num_envs`` environments with the current stochastic policy;
2. LEARN one gradient step of ``frl.losses.reinforce_loss`` on the whole segment: discounted
   returns ``G_t = r_t + gamma G_{t+1}`` restart at episode ends; a terminated episode adds
   nothing after its last reward, while a truncated one (time limit) and the segment's last step
   bootstrap from the baseline ``b(s')`` of the true next observation (the segment is a window
   onto longer episodes). The baseline regresses onto ``G``; the policy term uses ``G - b(s)``.
   Adam on actor and baseline together, gradient norm clipped.

Fixed-shape segments, not whole episodes, keep the iteration a pure, compilable function; with
``num_steps`` at least the episode length the bootstrap only touches unfinished episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from tensordict import TensorDict, TensorDictBase

from frl import optim
from frl.algos import on_policy as op
from frl.algos.config import hyper, setting
from frl.algos.networks import actor_critic
from frl.algos.spec import Segments, collection_chunk
from frl.algos.train import Train, Unit, WrapOptimizer, resolve_env
from frl.losses import bind, reinforce_loss
from frl.returns import discounted_returns

__all__ = ["Config", "make_train"]


@dataclass(frozen=True)
class Config(op.OnPolicyConfig):
    """REINFORCE settings (defaults tuned for CartPole-v1; networks as CleanRL's PPO)."""

    agent: ClassVar[str] = "reinforce"

    learning_rate: float = hyper(1e-3, low=0.0, low_open=True)
    value_coef: float = hyper(0.5, low=0.0)
    normalize_returns: bool = setting(False)


def make_train(config: Config, env: Any = None, *, wrap_optimizer: WrapOptimizer = None) -> Train:
    """REINFORCE with a baseline on ``config.env_id`` (discrete or continuous actions)."""
    env = resolve_env(config, env, Config)
    actor, dist, critic = networks = actor_critic(env, config.hidden, config.log_std_init, "reinforce")
    tx = op.clipped_optimizer(optim.adam(config.learning_rate), config.max_grad_norm, wrap_optimizer)
    loss = bind(
        reinforce_loss, "actor", "critic", policy_apply=actor.apply, value_apply=critic.apply, dist=dist
    )

    def learn(state: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        segment, hp = state["data"], state["hyperparams"]
        next_value = critic.apply(state["params", "critic"], segment["next", "observation"]).detach()
        # bootstraps from b(s') at cuts only: truncations and the segment's last step
        reward, terminated, done = (segment["next", k] for k in ("reward", "terminated", "done"))
        returns = discounted_returns(reward, terminated, done, gamma=hp["gamma"], next_value=next_value)
        batch = op.flat_select(segment, ("observation", "action"))
        batch["value_target"] = returns.reshape(-1)
        weights = partial(loss, value_coef=hp["value_coef"], normalize_returns=config.normalize_returns)
        return op.learner_step(state, weights, tx, batch)

    chunk = collection_chunk(config.rollout_chunk, config.num_steps, env)
    consumes = Segments(config.num_envs, config.num_steps, chunk)
    return op.actor_critic_train(config, env, make_train, networks, tx, consumes, (Unit("learn", learn),))
