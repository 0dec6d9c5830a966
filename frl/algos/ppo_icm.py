"""PPO + the intrinsic curiosity module (Pathak et al. 2017, "Curiosity-driven exploration by
self-supervised prediction", https://arxiv.org/abs/1705.05363) on frl's PPO units
(:func:`frl.algos.ppo.extend`).

Per iteration, after PPO's extrinsic GAE:

1. the curiosity reward ``r_i = eta ||g_fwd(phi(s), a) - phi(s')||^2 / 2``
   (:func:`frl.intrinsic.icm_reward`) of every step, divided by the running standard deviation
   of its discounted sum (:func:`frl.intrinsic.discounted_filter`, as RND scales its bonus, so
   one ``int_coef`` suits any feature scale);
2. the advantages and value targets are recomputed by GAE on ``r_e + int_coef r_i`` (ICM adds
   the bonus to the reward: one critic, episodic);

the update adds ``icm_coef`` times ICM's loss (:func:`frl.losses.icm_loss`: the inverse model's
cross-entropy and the forward model's error, weighted ``1 - beta`` and ``beta``) to PPO's
clipped loss. Discrete actions and vector observations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import intrinsic, nn, random
from frl.algos import ppo
from frl.algos.config import hyper, setting
from frl.algos.train import Train, WrapOptimizer
from frl.losses import icm_loss
from frl.returns import gae
from frl.tree import metrics

__all__ = ["ICM", "Config", "make_train"]

NEXT_OBS = ("next", "observation")


@dataclass(frozen=True)
class ICM:
    """ICM's three networks: features ``phi: obs -> K``, the inverse model ``(phi, phi') ->
    logits [A]`` and the forward model ``(phi, one_hot(a)) -> phi_hat [K]`` (MLPs with
    ``hidden`` ReLU layers). Params ``{"feature", "inverse", "forward"}``."""

    obs_dim: int
    num_actions: int
    features: int = 32
    hidden: tuple[int, ...] = (64,)

    @property
    def feature(self) -> nn.MLP:
        return nn.MLP((self.obs_dim, *self.hidden, self.features), "relu")

    @property
    def inverse(self) -> nn.MLP:
        return nn.MLP((2 * self.features, *self.hidden, self.num_actions), "relu")

    @property
    def forward(self) -> nn.MLP:
        return nn.MLP((self.features + self.num_actions, *self.hidden, self.features), "relu")

    def init(self, key: Tensor) -> TensorDict:
        k_f, k_i, k_w = random.split(key, 3)
        parts = {"feature": self.feature.init(k_f), "inverse": self.inverse.init(k_i)}
        return TensorDict({**parts, "forward": self.forward.init(k_w)}, batch_size=[])

    def feature_apply(self, params: TensorDictBase, obs: Tensor) -> Tensor:
        return self.feature.apply(params, obs)

    def inverse_apply(self, params: TensorDictBase, phi: Tensor, phi_next: Tensor) -> Tensor:
        return self.inverse.apply(params, torch.cat([phi, phi_next], dim=-1))

    def forward_apply(self, params: TensorDictBase, phi: Tensor, action: Tensor) -> Tensor:
        arms = torch.arange(self.num_actions, device=action.device)
        one_hot = (action.unsqueeze(-1) == arms).to(phi.dtype)  # F.one_hot reads its max: not vmappable
        return self.forward.apply(params, torch.cat([phi, one_hot], dim=-1))


@dataclass(frozen=True)
class Config(ppo.Config):
    """PPO+ICM settings: PPO's (CleanRL's CartPole defaults) plus ICM's: the forward loss weight
    ``beta = 0.2`` (Pathak et al.), the curiosity scale ``eta``, the bonus's weight in the reward
    ``int_coef`` (0.1, measured on DeepSea-8: at 1 the scaled bonus outweighs the treasure and no
    seed of four found it in 16k steps; at 0.1 all four did in 32k), ICM's loss weight
    ``icm_coef`` and its sizes."""

    agent: ClassVar[str] = "ppo_icm"

    eta: float = hyper(1.0, low=0.0)
    int_coef: float = hyper(0.1, low=0.0)
    int_gamma: float = hyper(0.99, low=0.0, high=1.0)
    icm_beta: float = hyper(0.2, low=0.0, high=1.0)
    icm_coef: float = hyper(1.0, low=0.0)
    icm_features: int = setting(32, low=1)
    icm_hidden: tuple[int, ...] = setting((64,))


def make_train(config: Config, env: Any = None, *, wrap_optimizer: WrapOptimizer = None) -> Train:
    """PPO+ICM on ``config.env_id`` (or on ``env``): a :class:`~frl.algos.train.Train` (module
    docstring). Discrete actions and vector observations only."""
    if not isinstance(config, Config):
        raise TypeError(f"ppo_icm.make_train: expected a ppo_icm.Config, got {type(config)!r}")
    base = ppo.make_train(config, env, wrap_optimizer=wrap_optimizer)
    env = base.env
    shape = tuple(env.observation_space.shape)
    if len(shape) != 1 or not env.discrete or not hasattr(env.action_space, "n"):
        raise ValueError(
            f"ppo_icm: ICM's inverse model classifies discrete actions from vector observations; "
            f"{env.id} observes {list(shape)} with {env.action_space}: use ppo_rnd or ppo"
        )
    icm = ICM(shape[0], env.action_space.n, config.icm_features, config.icm_hidden)
    E = config.num_envs

    def loss_term(hp: TensorDictBase):
        def term(params: TensorDictBase, batch: TensorDictBase):
            loss, parts = icm_loss(
                params["icm"],
                batch,
                feature_apply=icm.feature_apply,
                inverse_apply=icm.inverse_apply,
                forward_apply=icm.forward_apply,
                beta=hp["icm_beta"],
            )
            return hp["icm_coef"] * loss, metrics(
                inverse_loss=parts["inverse_loss"],
                forward_loss=parts["forward_loss"],
                inverse_accuracy=parts["inverse_accuracy"],
            )

        return term

    def shape_advantages(state: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        seg, p, hp = state["data"].copy(), state["params"], state["hyperparams"]
        own = state["scratch", "icm"]
        flat = seg.batch_size.numel()
        bonus = intrinsic.icm_reward(
            p["icm"],
            seg["observation"].reshape(flat, -1),
            seg["action"].reshape(flat),
            seg[NEXT_OBS].reshape(flat, -1),
            feature_apply=icm.feature_apply,
            forward_apply=icm.forward_apply,
            eta=hp["eta"],
        ).reshape(seg.batch_size)
        filtered, carry = intrinsic.discounted_filter(own["carry"], bonus, hp["int_gamma"])
        ret_moments = intrinsic.update_moments(own["ret_moments"], filtered)
        scaled = bonus / torch.sqrt(ret_moments["var"] + 1e-8)
        critic = base.parts["critic"]
        next_value = critic.apply(p["critic"], seg[NEXT_OBS]).detach()
        reward = seg["next", "reward"] + hp["int_coef"].to(scaled.dtype) * scaled
        seg["advantage"], seg["value_target"] = gae(
            reward,
            seg["state_value"],
            next_value,
            seg["next", "terminated"],
            seg["next", "done"],
            gamma=hp["gamma"],
            lmbda=hp["gae_lambda"],
        )
        new = state.copy()
        new["data"] = seg
        scratch = state["scratch"].copy()
        scratch["icm"] = TensorDict({"ret_moments": ret_moments, "carry": carry}, batch_size=[])
        new["scratch"] = scratch
        return new, metrics(intrinsic_reward=scaled.mean(), raw_intrinsic_reward=bonus.mean())

    extended = ppo.extend(
        base,
        networks={"icm": icm},
        trainable=("actor", "critic", "icm"),
        factory=make_train,
        loss_term=loss_term,
        shape_advantages=shape_advantages,
        minibatch_keys=(NEXT_OBS,),
    )
    build_extended = extended.build

    def build(key: Any, hyperparams: TensorDictBase) -> TensorDict:
        state = build_extended(key, hyperparams)
        dtype = state["data", "next", "reward"].dtype
        state["scratch", "icm"] = TensorDict(
            {"ret_moments": intrinsic.init_moments((), dtype), "carry": torch.zeros(E, dtype=dtype)},
            batch_size=[],
        )
        return state

    return dataclasses.replace(extended, build=build, name="ppo_icm")
