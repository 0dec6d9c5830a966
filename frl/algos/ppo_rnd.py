"""PPO + random network distillation (Burda et al. 2019, "Exploration by random network
distillation", https://arxiv.org/abs/1810.12894), as RND's paper and CleanRL's
``ppo_rnd_envpool.py`` run it, on frl's PPO units (:func:`frl.algos.ppo.extend`).

Per iteration, after PPO's extrinsic GAE (``gamma``, episodic):

1. the next observations update running moments and are normalised and clipped to ``[-5, 5]``
   (:func:`frl.intrinsic.normalize_with`): the input of a fixed random ``target`` network and of
   the ``predictor`` trained to match it;
2. the intrinsic reward ``r_i = ||predictor(o') - target(o')||^2 / 2`` (:func:`frl.intrinsic.rnd_reward`)
   is divided by the running standard deviation of its discounted sum (RND's forward filter,
   :func:`frl.intrinsic.discounted_filter`, carried across iterations);
3. a second value head (``critic_int``) gives the intrinsic GAE (``int_gamma``, never cut by an
   episode end: novelty is non-episodic), and PPO's advantage becomes
   ``ext_coef A_ext + int_coef A_int``;
4. each sample enters the predictor's loss with probability ``update_proportion`` (a mask drawn
   once per iteration).

The update adds ``vf_coef`` times the intrinsic value loss and the predictor's loss
(:func:`frl.losses.rnd_loss`) to PPO's clipped loss. The running moments and the filter's carry
live in ``state["scratch"]["rnd"]``; the normalised observations and the mask in the segment.
Vector observations get MLPs; image observations (MinAtar's frames) get the convolutional
torso the actor uses for the predictor, the target and the intrinsic critic, and per-pixel
running moments.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase

from frl import intrinsic, nn, random
from frl.algos import ppo
from frl.algos.config import hyper, setting
from frl.algos.train import Train, WrapOptimizer
from frl.losses import rnd_loss, value_loss
from frl.returns import gae
from frl.tree import metrics

__all__ = ["Config", "make_train"]

OBS, NEXT_OBS, RND_OBS, MASK, TARGET_INT = (
    "observation",
    ("next", "observation"),
    "rnd_observation",
    "rnd_mask",
    "value_target_int",
)


@dataclass(frozen=True)
class Config(ppo.Config):
    """PPO+RND settings: PPO's (CleanRL's CartPole defaults; presets per environment) plus RND's
    coefficients from its paper (extrinsic 2, intrinsic 1, intrinsic discount 0.99, a quarter of
    the samples in the predictor's loss) and the predictor's and target's sizes."""

    agent: ClassVar[str] = "ppo_rnd"

    ext_coef: float = hyper(2.0, low=0.0)
    int_coef: float = hyper(1.0, low=0.0)
    int_gamma: float = hyper(0.99, low=0.0, high=1.0)
    update_proportion: float = hyper(0.25, low=0.0, high=1.0, low_open=True)
    rnd_hidden: tuple[int, ...] = setting((64, 64))
    rnd_features: int = setting(64, low=1)


def make_train(config: Config, env: Any = None, *, wrap_optimizer: WrapOptimizer = None) -> Train:
    """PPO+RND on ``config.env_id`` (or on ``env``): a :class:`~frl.algos.train.Train` (module
    docstring). Environments with float vector or image observations."""
    if not isinstance(config, Config):
        raise TypeError(f"ppo_rnd.make_train: expected a ppo_rnd.Config, got {type(config)!r}")
    base = ppo.make_train(config, env, wrap_optimizer=wrap_optimizer)
    env = base.env
    shape = tuple(env.observation_space.shape)
    image = bool(getattr(env, "pixels", False)) and len(shape) == 3
    float_obs = getattr(env, "obs_dtype", env.dtype) in (torch.float32, torch.float64)
    if not (len(shape) == 1 or image) or not float_obs:
        raise ValueError(
            f"ppo_rnd: RND normalises vector or image observations; {env.id} observes {list(shape)} "
            f"({getattr(env, 'obs_dtype', env.dtype)}): use ppo, or an environment with float vector "
            "or image observations"
        )
    E = config.num_envs
    if image:  # RND's convolutional target and predictor, on the actor's torso (env.torso)
        kind = getattr(env, "torso", "nature")
        critic_int: Any = nn.ConvNetwork(shape, 1, kind, squeeze=True)
        predictor, target = (nn.ConvNetwork(shape, config.rnd_features, kind) for _ in range(2))
    else:
        critic_int = nn.ValueNetwork(shape[0], hidden=config.hidden)
        sizes = (shape[0], *config.rnd_hidden, config.rnd_features)
        predictor, target = nn.MLP(sizes, "relu"), nn.MLP(sizes, "relu")

    def loss_term(hp: TensorDictBase):
        def term(params: TensorDictBase, batch: TensorDictBase):
            v_int = critic_int.apply(params["critic_int"], batch[OBS])
            value = hp["vf_coef"] * value_loss(v_int, batch[TARGET_INT])
            aux, rnd = rnd_loss(
                params["predictor"],
                batch,
                predictor_apply=predictor.apply,
                target_apply=target.apply,
                target_params=params["target"],
                observation_key=RND_OBS,
                mask_key=MASK,
            )
            return value + aux, metrics(predictor_loss=rnd["loss"], intrinsic_value_loss=value)

        return term

    def shape_advantages(state: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        seg, p, hp = state["data"].copy(), state["params"], state["hyperparams"]
        own = state["scratch", "rnd"]
        obs_moments = intrinsic.update_moments(own["obs_moments"], seg[NEXT_OBS])
        normed = intrinsic.normalize_with(obs_moments, seg[NEXT_OBS])
        bonus = intrinsic.rnd_reward(
            p["predictor"],
            p["target"],
            normed.reshape(-1, *shape),
            predictor_apply=predictor.apply,
            target_apply=target.apply,
        ).reshape(seg.batch_size)
        filtered, carry = intrinsic.discounted_filter(own["carry"], bonus, hp["int_gamma"])
        ret_moments = intrinsic.update_moments(own["ret_moments"], filtered)
        scaled = bonus / torch.sqrt(ret_moments["var"] + 1e-8)
        v, v_next = (critic_int.apply(p["critic_int"], seg[k]).detach() for k in (OBS, NEXT_OBS))
        never = torch.zeros_like(seg["next", "done"])
        adv_int, seg[TARGET_INT] = gae(
            scaled, v, v_next, never, never, gamma=hp["int_gamma"], lmbda=hp["gae_lambda"]
        )
        adv_ext = seg["advantage"]
        seg["advantage"] = hp["ext_coef"] * adv_ext + hp["int_coef"] * adv_int
        key, k_mask = random.split(state["key"])
        seg[MASK] = (random.uniform(k_mask, bonus.shape) < hp["update_proportion"]).to(bonus.dtype)
        seg[RND_OBS] = normed
        new = state.copy()
        new["data"], new["key"] = seg, key
        scratch = state["scratch"].copy()
        scratch["rnd"] = TensorDict(
            {"obs_moments": obs_moments, "ret_moments": ret_moments, "carry": carry}, batch_size=[]
        )
        new["scratch"] = scratch
        return new, metrics(
            intrinsic_reward=scaled.mean(), raw_intrinsic_reward=bonus.mean(), advantage_int=adv_int.mean()
        )

    extended = ppo.extend(
        base,
        networks={"critic_int": critic_int, "predictor": predictor, "target": target},
        trainable=("actor", "critic", "critic_int", "predictor"),  # the target stays as drawn
        factory=make_train,
        loss_term=loss_term,
        shape_advantages=shape_advantages,
        extra=(TARGET_INT, MASK),
        minibatch_keys=(TARGET_INT, MASK, RND_OBS),
    )
    build_extended = extended.build

    def build(key: Any, hyperparams: TensorDictBase) -> TensorDict:
        state = build_extended(key, hyperparams)
        dtype = state["data", "next", "observation"].dtype
        state["data", RND_OBS] = torch.zeros_like(state["data", "next", "observation"])
        state["scratch", "rnd"] = TensorDict(
            {
                "obs_moments": intrinsic.init_moments(shape, dtype),
                "ret_moments": intrinsic.init_moments((), dtype),
                "carry": torch.zeros(E, dtype=dtype),
            },
            batch_size=[],
        )
        return state

    return dataclasses.replace(extended, build=build, name="ppo_rnd")
