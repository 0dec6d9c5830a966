"""Recurrent PPO: PPO with a GRU or LSTM actor and critic, for partially observable tasks, as
CleanRL's ``ppo_atari_lstm.py`` runs it (and RL^2's learner, Duan et al. 2016).

One iteration:

1. COLLECT ``num_steps`` steps on ``num_envs`` environments; the actor's and the critic's
   carries (``frl.nn.RecurrentNetwork``) advance with every step, are zeroed before an episode's
   first step, and live in ``state["env"]["memory"]`` between calls; each step stores the carries
   it was taken from (``recurrent_state``) and whether it starts an episode (``is_init``);
2. ADVANTAGES: the critic replayed along the segment from its first step's carries gives the
   values, and the value of each true next observation continues the same history (a
   truncated step bootstraps from its final observation given everything before it); GAE; the
   minibatch orders over sequences;
3. UPDATE: the segment is cut into sequences of ``bptt_len`` steps (default: the whole segment),
   ``update_epochs x num_minibatches`` clipped-surrogate steps over minibatches of whole
   sequences (:func:`frl.losses.recurrent_ppo_loss`: each sequence replayed from its stored
   carries, truncated backpropagation through it).

A cut never hides a reset: every sequence starts from the carries collection stored at that
step (already zeroed at an episode's first step), and inside a sequence ``is_init`` zeroes them
where collection did, so the first update replays the behaviour policy exactly (its ratio is 1).
Pure environments only (the carries are stepped inside the graph).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import nn, optim
from frl.algos import on_policy as op
from frl.algos import ppo
from frl.algos.collect import IS_INIT, MEMORY, RECURRENT_STATE, make_collect
from frl.algos.config import setting
from frl.algos.networks import clip_action
from frl.algos.spec import Segments, collection_chunk
from frl.algos.train import Train, Unit, WrapOptimizer, resolve_env
from frl.distributions import Categorical, DiagGaussian
from frl.losses import bind, recurrent_ppo_loss
from frl.nn.recurrent import CELL_KINDS

__all__ = ["Config", "make_train"]

SEQUENCE_KEYS = (*ppo.MINIBATCH_KEYS, IS_INIT, RECURRENT_STATE)


@dataclass(frozen=True)
class Config(ppo.Config):
    """Recurrent PPO settings: PPO's (CleanRL's CartPole defaults), an MLP encoder (``hidden``)
    before a ``cell`` (``"gru"`` or ``"lstm"``) of ``memory_size`` units in the actor and the
    critic each, and sequences of ``bptt_len`` steps (0: the whole segment). Minibatches hold
    whole sequences: ``num_minibatches`` must divide ``num_envs * num_steps / bptt_len``."""

    agent: ClassVar[str] = "recurrent_ppo"

    hidden: tuple[int, ...] = setting((64,))
    cell: str = setting("gru")
    memory_size: int = setting(64, low=1)
    bptt_len: int = setting(0, low=0)

    def check(self) -> None:
        super().check()
        if self.cell not in CELL_KINDS:
            raise ValueError(
                f"recurrent_ppo.Config: `cell` must be one of {sorted(CELL_KINDS)}, got {self.cell!r}"
            )
        if self.num_steps % self.sequence_length:
            raise ValueError(
                f"recurrent_ppo.Config: `bptt_len` ({self.bptt_len}) must divide `num_steps` "
                f"({self.num_steps}): a sequence that ran over the segment's end would be cut from "
                "the next segment's carries"
            )
        if self.num_sequences % self.num_minibatches:
            raise ValueError(
                f"recurrent_ppo.Config: `num_minibatches` ({self.num_minibatches}) must divide the "
                f"number of sequences, num_envs * num_steps / bptt_len = {self.num_sequences}: a "
                "minibatch holds whole sequences"
            )

    @property
    def sequence_length(self) -> int:
        """Steps per sequence: ``bptt_len``, or the whole segment."""
        return self.bptt_len or self.num_steps

    @property
    def num_sequences(self) -> int:
        return self.num_envs * self.num_steps // self.sequence_length


def networks(env: Any, config: Config) -> tuple[nn.RecurrentNetwork, Any, nn.RecurrentNetwork]:
    """``(actor, dist, critic)``: recurrent networks for ``env``'s vector observations; a
    categorical policy for discrete actions, a diagonal Gaussian (free log-std) for a box."""
    obs_shape = tuple(env.observation_space.shape)
    if len(obs_shape) != 1:
        raise ValueError(f"recurrent_ppo: takes vector observations; {env.id} observes {list(obs_shape)}")
    common = dict(hidden=config.hidden, cell=config.cell, memory_size=config.memory_size)
    if env.discrete:
        actor = nn.RecurrentNetwork(obs_shape[0], env.action_space.n, output_scale=0.01, **common)
        dist: Any = Categorical()
    else:
        action_dim = env.action_space.shape[0]
        actor = nn.RecurrentNetwork(
            obs_shape[0], action_dim, output_scale=0.01, log_std_init=config.log_std_init, **common
        )
        dist = DiagGaussian()
    critic = nn.RecurrentNetwork(obs_shape[0], 1, squeeze=True, **common)
    return actor, dist, critic


def make_train(config: Config, env: Any = None, *, wrap_optimizer: WrapOptimizer = None) -> Train:
    """Recurrent PPO on ``config.env_id`` (or on ``env``): a :class:`~frl.algos.train.Train`
    whose ``policy`` and ``explore`` carry the recurrent state (``Train.memory``)."""
    env = resolve_env(config, env, Config)
    if not getattr(env, "pure", True) or getattr(env, "multi_agent", False):
        kind = "multi-agent" if getattr(env, "multi_agent", False) else "stepped outside it"
        raise ValueError(
            f"recurrent_ppo: steps its environment inside the graph, carrying hidden states from step "
            f"to step; {env.id} is {kind}: use a pure single-agent frl.envs environment"
        )
    if getattr(env, "action_space", None) is None or not (env.discrete or len(env.action_space.shape) == 1):
        raise ValueError(f"recurrent_ppo: takes Discrete or 1-d Box actions, {env.id} has {env.action_space}")
    actor, dist, critic = networks(env, config)
    E, T, L = config.num_envs, config.num_steps, config.sequence_length
    tx = op.clipped_optimizer(
        optim.adam(config.learning_rate, eps=1e-5), config.max_grad_norm, wrap_optimizer
    )

    def memory(num_envs: int, device: Any = None) -> dict[str, Tensor]:
        return {
            "actor": actor.initial_state((num_envs,), device),
            "critic": critic.initial_state((num_envs,), device),
        }

    def explore(params, hyperparams, obs, key, env_steps, carries):
        dist_params, actor_carry = actor.step(params["actor"], obs, carries["actor"])
        _, critic_carry = critic.step(params["critic"], obs, carries["critic"])
        action = dist.sample(key, dist_params)
        return (
            action,
            dist.log_prob(dist_params, action).detach(),
            {"actor": actor_carry, "critic": critic_carry},
        )

    def policy(params, obs, carries):
        dist_params, actor_carry = actor.step(params["actor"], obs, carries["actor"])
        return clip_action(env, dist.mode(dist_params)), {**carries, "actor": actor_carry}

    def with_advantages(segment, value_apply, critic_params, *, gamma, lmbda):
        """The critic replayed along the segment from its first step's carries; the value of each
        true next observation continues the history it followed."""
        starts = segment[IS_INIT]
        first = segment[RECURRENT_STATE, "critic"][:, 0]
        value, carries = value_apply(critic_params, segment["observation"], first, starts)  # critic.sequence
        next_value, _ = critic.step(critic_params, segment["next", "observation"], carries)
        return op.annotate_gae(segment, value.detach(), next_value.detach(), gamma=gamma, lmbda=lmbda)

    loss = bind(
        recurrent_ppo_loss,
        "actor",
        "critic",
        policy_apply=lambda p, o, c, s: actor.sequence(p, o, c, s)[0],
        value_apply=lambda p, o, c, s: critic.sequence(p, o, c, s)[0],
        dist=dist,
    )

    def sequences(segment: TensorDictBase, index: Tensor) -> TensorDictBase:
        """Whole sequences ``[B, L]`` of the segment cut every ``L`` steps (rows ``index``)."""
        cut = segment.select(*SEQUENCE_KEYS).reshape(E * T // L, L)
        return cut.apply(lambda x: torch.index_select(x, 0, index), batch_size=[index.shape[0], L])

    advantages = ppo.advantages_unit(config, critic.sequence, with_advantages, items=config.num_sequences)
    update = ppo.update_unit(config, tx, partial(ppo.clipped_loss, config, loss), minibatch_of=sequences)
    consumes = Segments(E, T, collection_chunk(config.rollout_chunk, T, env), extra=op.ADVANTAGE_KEYS)
    order = torch.zeros(
        config.update_epochs * config.num_minibatches,
        config.num_sequences // config.num_minibatches,
        dtype=torch.int64,
    )
    build_base = op.actor_critic_build(
        env,
        actor,
        critic,
        tx,
        consumes,
        counters={"minibatch": 0},
        scratch=TensorDict({"order": order}, batch_size=[]),
    )

    def build(key: Tensor, hyperparams: TensorDictBase) -> TensorDict:
        state = build_base(key, hyperparams)
        device = state["key"].device
        state[MEMORY] = TensorDict(memory(E, device), batch_size=[])
        state["env", IS_INIT] = torch.ones(E, dtype=torch.bool, device=device)
        state["data", RECURRENT_STATE] = TensorDict(
            {k: v.unsqueeze(1).expand(E, T, v.shape[-1]).clone() for k, v in memory(E, device).items()},
            batch_size=[E, T],
        )
        state["data", IS_INIT] = torch.zeros(E, T, dtype=torch.bool, device=device)
        return state

    collect = Unit("collect", make_collect(env, explore, consumes, memory=True), T // consumes.chunk)
    return Train(
        name=config.agent,
        config=config,
        env=env,
        consumes=consumes,
        build=build,
        collect=(collect,),
        learn=(
            Unit("advantages", advantages),
            Unit("update", update, config.update_epochs * config.num_minibatches, scanned=True),
        ),
        policy=policy,
        explore=explore,
        factory=make_train,
        parts={"actor": actor, "critic": critic, "dist": dist, "loss": loss, "optimizer": tx},
        memory=memory,
    )
