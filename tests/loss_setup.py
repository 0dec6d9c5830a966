"""Small networks, params and batches for every loss, deterministic in a seed index."""

from __future__ import annotations

import torch
from tensordict import TensorDict

import frl.random as fr
from frl import distributions as D
from frl import losses, nn

BATCH, OBS, N_ACT, ACT_DIM = 16, 4, 3, 2
QNET = nn.QNetwork(OBS, N_ACT, hidden=(16,))
POLICY = nn.CategoricalPolicy(OBS, N_ACT, hidden=(16,), output_scale=1.0)
GAUSS_POLICY = nn.GaussianPolicy(OBS, ACT_DIM, hidden=(16,), output_scale=1.0, log_std_init=-0.3)
VALUE = nn.ValueNetwork(OBS, hidden=(16,))
SAC_ACTOR = nn.TanhGaussianPolicy(OBS, ACT_DIM, hidden=(16,))
CRITIC = nn.ContinuousQNetwork(OBS, ACT_DIM, hidden=(16,))
DISCRETE_CRITIC = nn.QNetwork(OBS, N_ACT, hidden=(16,))


def transitions(i: int, *, continuous: bool = False) -> TensorDict:
    k = fr.fold_in(fr.key(1234), i)
    ks = fr.split(k, 8)
    action = (
        fr.uniform(ks[1], (BATCH, ACT_DIM), minval=-0.95, maxval=0.95)
        if continuous
        else fr.randint(ks[1], (BATCH,), 0, N_ACT)
    )
    terminated = fr.bernoulli(ks[4], 0.2, (BATCH,))
    truncated = fr.bernoulli(ks[5], 0.2, (BATCH,)) & ~terminated
    return TensorDict(
        {
            "observation": fr.normal(ks[0], (BATCH, OBS)),
            "action": action,
            "next": {
                "observation": fr.normal(ks[2], (BATCH, OBS)),
                "reward": fr.normal(ks[3], (BATCH,)),
                "terminated": terminated,
                "truncated": truncated,
                "done": terminated | truncated,
            },
        },
        batch_size=[BATCH],
    )


def on_policy(i: int, *, continuous: bool = False) -> TensorDict:
    batch = transitions(i, continuous=continuous)
    ks = fr.split(fr.fold_in(fr.key(99), i), 4)
    batch["action_log_prob"] = -1.0 + 0.3 * fr.normal(ks[0], (BATCH,))
    batch["advantage"] = fr.normal(ks[1], (BATCH,))
    batch["value_target"] = fr.normal(ks[2], (BATCH,))
    batch["state_value"] = fr.normal(ks[3], (BATCH,))
    return batch


def dqn_params(i: int) -> TensorDict:
    k1, k2 = fr.split(fr.fold_in(fr.key(7), i))
    return TensorDict({"online": QNET.init(k1), "target": QNET.init(k2)}, batch_size=[])


def actor_critic_params(i: int, *, continuous: bool = False) -> TensorDict:
    k1, k2 = fr.split(fr.fold_in(fr.key(8), i))
    actor = (GAUSS_POLICY if continuous else POLICY).init(k1)
    return TensorDict({"actor": actor, "critic": VALUE.init(k2)}, batch_size=[])


def sac_params(i: int, *, critics: int = 2, discrete: bool = False) -> TensorDict:
    k1, k2, k3 = fr.split(fr.fold_in(fr.key(9), i), 3)
    critic = nn.Ensemble(DISCRETE_CRITIC if discrete else CRITIC, critics)
    return TensorDict(
        {
            "actor": (POLICY if discrete else SAC_ACTOR).init(k1),
            "critic": critic.init(k2),
            "target_critic": critic.init(k3),
            "log_alpha": torch.tensor(-0.5 + 0.1 * i),
        },
        batch_size=[],
    )


DQN = losses.bind(losses.dqn_loss, "online", "target", q_apply=QNET.apply, gamma=0.99)
PPO = losses.bind(
    losses.ppo_loss,
    "actor",
    "critic",
    policy_apply=POLICY.apply,
    value_apply=VALUE.apply,
    dist=D.Categorical(),
)
PPO_CONTINUOUS = losses.bind(
    losses.ppo_loss,
    "actor",
    "critic",
    policy_apply=GAUSS_POLICY.apply,
    value_apply=VALUE.apply,
    dist=D.DiagGaussian(),
)
SAC_KEYS = ("actor", "critic", "target_critic", "log_alpha")
SAC = losses.bind(
    losses.sac_loss,
    *SAC_KEYS,
    actor_apply=SAC_ACTOR.apply,
    critic_apply=CRITIC.apply,
    gamma=0.99,
    target_entropy=-2.0,
)
DISCRETE_SAC = losses.bind(
    losses.discrete_sac_loss,
    *SAC_KEYS,
    actor_apply=POLICY.apply,
    critic_apply=DISCRETE_CRITIC.apply,
    gamma=0.99,
    target_entropy=0.5,
)
REINFORCE = losses.bind(
    losses.reinforce_loss,
    "actor",
    "critic",
    policy_apply=POLICY.apply,
    dist=D.Categorical(),
    value_apply=VALUE.apply,
)
SOFT_Q = losses.bind(losses.soft_q_loss, "online", "target", q_apply=QNET.apply, gamma=0.99, alpha=0.5)
