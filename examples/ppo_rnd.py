"""PPO + random network distillation (Burda et al. 2019): a second value head and an auxiliary loss
on PPO's own pieces; the bonus is a predictor's error against a fixed random network, its GAE joins
the extrinsic advantages. ``python examples/ppo_rnd.py [steps] [seeds]``: PPO+RND beside PPO."""

import dataclasses
import sys
from typing import ClassVar

import torch

import frl
from frl import losses, nn
from frl.algos import hyper, ppo
from frl.returns import gae

OBS, NEXT_OBS = "observation", ("next", "observation")


@dataclasses.dataclass(frozen=True)
class Config(ppo.Config):
    agent: ClassVar[str] = "ppo_rnd"
    intrinsic_coef: float = hyper(1.0, low=0.0)  # hyper-parameters: they live in the state
    intrinsic_gamma: float = hyper(0.99, low=0.0, high=1.0)


def make_train(config: Config, env=None, **kw):
    base = ppo.make_train(config, env, **kw)  # collection, networks, loss, optimizer and units
    obs_dim = base.env.observation_space.shape[0]
    value_int, predictor = nn.ValueNetwork(obs_dim, hidden=config.hidden), nn.MLP((obs_dim, 64, 16))

    def novelty(params, obs):  # the predictor's squared error against the fixed random network
        guess, truth = (predictor.apply(params[k], obs) for k in ("predictor", "random"))
        return ((guess - truth.detach()) ** 2).mean(-1)

    def loss_term(hp):  # the intrinsic value head's loss and the predictor's (auxiliary) loss
        def term(params, batch):
            v_int = value_int.apply(params["critic_int"], batch[OBS])
            aux = novelty(params, batch[NEXT_OBS]).mean()
            value = hp["vf_coef"] * losses.value_loss(v_int, batch["value_target_int"])
            return value + aux, frl.tree.metrics(novelty=aux, intrinsic_value_loss=value)

        return term

    def shape_advantages(state):  # the intrinsic GAE (never terminating) added to PPO's
        seg, p, hp = state["data"].copy(), state["params"], state["hyperparams"]
        bonus = novelty(p, seg[NEXT_OBS]).detach()
        bonus = bonus / (bonus.std() + 1e-8)
        v, v_next = (value_int.apply(p["critic_int"], seg[k]).detach() for k in (OBS, NEXT_OBS))
        never = torch.zeros_like(seg["next", "done"])
        adv, seg["value_target_int"] = gae(
            bonus, v, v_next, never, never, gamma=hp["intrinsic_gamma"], lmbda=1.0
        )
        seg["advantage"] = seg["advantage"] + hp["intrinsic_coef"] * adv
        return state.set("data", seg), frl.tree.metrics(bonus=bonus.mean())

    return ppo.extend(
        base,
        networks={"critic_int": value_int, "predictor": predictor, "random": predictor},
        trainable=("actor", "critic", "critic_int", "predictor"),  # "random" stays as drawn
        factory=make_train,
        loss_term=loss_term,
        shape_advantages=shape_advantages,
        extra=("value_target_int",),
        minibatch_keys=("value_target_int", NEXT_OBS),
    )


def main(steps: int = 200_000, seeds: int = 4, env_id: str = "MountainCar-v0") -> dict:
    best = {}
    for name, make, cls in (("ppo", ppo.make_train, ppo.Config), ("ppo+rnd", make_train, Config)):
        train = make(cls.preset(env_id, total_timesteps=steps, num_envs=8, ent_coef=0.0))
        history = frl.run(train, seeds=seeds, progress=False, eval_every=steps // 4).history
        evals = [r["eval_return_per_member"] for r in history if "eval_return_per_member" in r]
        best[name] = [max(col) for col in zip(*evals)]
        print(f"{name:8s} best evaluation per seed: {[round(x, 1) for x in best[name]]}", flush=True)
    return best


if __name__ == "__main__":
    main(*map(int, sys.argv[1:3]))
