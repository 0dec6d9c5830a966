"""frl.losses against TorchRL's LossModules on identical parameters, batches and noise (1e-5).

Each test copies frl's params into plain ``torch.nn`` modules wrapped as TorchRL expects, feeds
TorchRL the same batch in its own layout (per-step scalars as ``[B, 1]``) and compares every loss
term and, for DQN, PPO and REINFORCE, the gradients. Convention map:

* TorchRL's ``"l2"`` distance is ``(x - y)^2``; frl's value losses are ``(x - y)^2 / 2`` (CleanRL),
  so frl's ``value_loss`` equals half of TorchRL's ``loss_critic`` / ``loss_value``.
* SAC noise: TorchRL draws its two reparameterised actions from torch's generator (next
  observation first, then the current one); the test replaces ``Normal.rsample`` for that call
  with the same standard-normal noise frl receives.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.data import Categorical as CategoricalSpec
from torchrl.modules import IndependentNormal, ProbabilisticActor, QValueActor, TanhNormal, ValueOperator
from torchrl.objectives import ClipPPOLoss, DQNLoss, ReinforceLoss, SACLoss

import frl.random as fr
from tests import loss_setup as S

TOL = dict(rtol=1e-5, atol=1e-5)
SCALAR_KEYS = (("next", "reward"), ("next", "terminated"), ("next", "done"), ("next", "truncated"))


def torchrl_layout(batch: TensorDict, extra: tuple[str, ...] = ()) -> TensorDict:
    out = batch.clone()
    for key in (*SCALAR_KEYS, *extra):
        out.set(key, out.get(key).unsqueeze(-1))
    return out


def linear(params: TensorDict) -> torch.nn.Linear:
    w = params["weight"]
    layer = torch.nn.Linear(w.shape[1], w.shape[0])
    layer.weight.data.copy_(w)
    layer.bias.data.copy_(params["bias"])
    return layer


def sequential(mlp_params: TensorDict, activation: type[torch.nn.Module]) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    n = len(list(mlp_params.keys()))
    for i in range(n):
        layers.append(linear(mlp_params[str(i)]))
        if i < n - 1:
            layers.append(activation())
    return torch.nn.Sequential(*layers)


def grads_of(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad for p in module.parameters()]


def frl_grads(grads: TensorDict) -> list[torch.Tensor]:
    """frl MLP grads in torch.nn.Sequential parameter order (weight, bias per layer)."""
    return [grads[str(i), name] for i in range(len(list(grads.keys()))) for name in ("weight", "bias")]


def assert_all_close(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("double", [False, True], ids=["dqn", "double_dqn"])
@pytest.mark.parametrize("n_step", [False, True], ids=["one_step", "n_step"])
def test_dqn_matches_dqnloss(double, n_step):
    params, batch = S.dqn_params(0), S.transitions(0)
    if n_step:
        batch["steps_to_next_obs"] = fr.randint(fr.key(5), (S.BATCH,), 1, 4)
    online = sequential(params["online"], torch.nn.ReLU)
    actor = QValueActor(online, in_keys=["observation"], spec=CategoricalSpec(S.N_ACT))
    reference = DQNLoss(
        actor, loss_function="l2", delay_value=True, double_dqn=double, action_space="categorical"
    )
    reference.make_value_estimator(gamma=0.99)
    target = QValueActor(
        sequential(params["target"], torch.nn.ReLU), in_keys=["observation"], spec=CategoricalSpec(S.N_ACT)
    )
    reference.target_value_network_params.update_(TensorDict.from_module(target))
    theirs = reference(torchrl_layout(batch))["loss"]
    theirs.backward()

    ours = S.DQN(params, batch, double=double)[0]
    torch.testing.assert_close(ours, theirs.detach(), **TOL)
    grads = torch.func.grad(lambda p: S.DQN(p, batch, double=double)[0])(params)
    their_grads = [g for g in reference.value_network_params.grad.values(True, True)]
    assert_all_close(frl_grads(grads["online"]), their_grads)


class GaussianModule(torch.nn.Module):
    """frl's GaussianPolicy (one hidden layer, free log-std) as a torch module: (loc, scale)."""

    def __init__(self, params: TensorDict) -> None:
        super().__init__()
        self.torso = torch.nn.Sequential(linear(params["torso", "0"]), torch.nn.Tanh())
        self.mean = linear(params["mean"])
        self.log_std = torch.nn.Parameter(params["log_std"].clone())

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc = self.mean(self.torso(obs))
        return loc, self.log_std.exp().expand_as(loc)


@pytest.mark.parametrize("continuous", [False, True], ids=["categorical", "gaussian"])
@pytest.mark.parametrize("value_clip", [None, 0.1], ids=["plain", "value_clip"])
def test_ppo_matches_clipppoloss(continuous, value_clip):
    params, batch = S.actor_critic_params(0, continuous=continuous), S.on_policy(0, continuous=continuous)
    if continuous:
        module = TensorDictModule(
            GaussianModule(params["actor"]), in_keys=["observation"], out_keys=["loc", "scale"]
        )
        actor = ProbabilisticActor(
            module, in_keys=["loc", "scale"], distribution_class=IndependentNormal, return_log_prob=True
        )
    else:
        module = TensorDictModule(
            sequential(params["actor"], torch.nn.Tanh), in_keys=["observation"], out_keys=["logits"]
        )
        actor = ProbabilisticActor(
            module,
            in_keys=["logits"],
            distribution_class=torch.distributions.Categorical,
            return_log_prob=True,
        )
    critic = ValueOperator(sequential(params["critic"], torch.nn.Tanh), in_keys=["observation"])
    reference = ClipPPOLoss(
        actor,
        critic,
        clip_epsilon=0.2,
        entropy_coeff=0.01,
        critic_coeff=1.0,
        loss_critic_type="l2",
        normalize_advantage=False,
        clip_value=value_clip,
    )
    reference.set_keys(sample_log_prob="action_log_prob")
    out = reference(torchrl_layout(batch, ("advantage", "value_target", "state_value")))
    fn = S.PPO_CONTINUOUS if continuous else S.PPO
    _, metrics = fn(params, batch, normalize_advantage=False, entropy_coef=0.01, value_clip_eps=value_clip)
    torch.testing.assert_close(metrics["policy_loss"], out["loss_objective"].detach(), **TOL)
    torch.testing.assert_close(metrics["entropy"], out["entropy"].detach(), **TOL)
    torch.testing.assert_close(2 * metrics["value_loss"], out["loss_critic"].detach(), **TOL)
    torch.testing.assert_close(metrics["clip_fraction"], out["clip_fraction"], **TOL)
    torch.testing.assert_close(metrics["explained_variance"], out["explained_variance"].reshape(()), **TOL)
    if not continuous:  # gradients of the policy term
        out["loss_objective"].backward()
        grads = torch.func.grad(lambda p: fn(p, batch, normalize_advantage=False, value_coef=0.0)[0])(params)
        assert_all_close(
            frl_grads(grads["actor"]), list(reference.actor_network_params.grad.values(True, True))
        )


def test_reinforce_matches_reinforceloss():
    params, batch = S.actor_critic_params(1), S.on_policy(1)
    module = TensorDictModule(
        sequential(params["actor"], torch.nn.Tanh), in_keys=["observation"], out_keys=["logits"]
    )
    actor = ProbabilisticActor(
        module, in_keys=["logits"], distribution_class=torch.distributions.Categorical, return_log_prob=True
    )
    critic = ValueOperator(sequential(params["critic"], torch.nn.Tanh), in_keys=["observation"])
    reference = ReinforceLoss(actor, critic, loss_critic_type="l2")
    baseline = S.VALUE.apply(params["critic"], batch["observation"]).detach()
    theirs_batch = torchrl_layout(batch)
    theirs_batch["advantage"] = (batch["value_target"] - baseline).unsqueeze(-1)
    theirs_batch["value_target"] = batch["value_target"].unsqueeze(-1)
    out = reference(theirs_batch)
    _, metrics = S.REINFORCE(params, batch)
    torch.testing.assert_close(metrics["policy_loss"], out["loss_actor"].detach(), **TOL)
    torch.testing.assert_close(2 * metrics["value_loss"], out["loss_value"].detach(), **TOL)
    out["loss_actor"].backward()
    grads = torch.func.grad(lambda p: S.REINFORCE(p, batch, value_coef=0.0)[0])(params)
    assert_all_close(frl_grads(grads["actor"]), list(reference.actor_network_params.grad.values(True, True)))


class SacActorModule(torch.nn.Module):
    """frl's TanhGaussianPolicy (one hidden layer) as a torch module: (loc, scale)."""

    def __init__(self, params: TensorDict, bounds: tuple[float, float]) -> None:
        super().__init__()
        self.torso = torch.nn.Sequential(linear(params["torso", "0"]), torch.nn.ReLU())
        self.mean, self.log_std = linear(params["mean"]), linear(params["log_std"])
        self.bounds = bounds

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.torso(obs)
        lo, hi = self.bounds
        log_std = lo + 0.5 * (hi - lo) * (torch.tanh(self.log_std(h)) + 1.0)
        return self.mean(h), log_std.exp()


class CriticModule(torch.nn.Module):
    def __init__(self, params: TensorDict) -> None:
        super().__init__()
        self.net = sequential(params, torch.nn.ReLU)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], dim=-1))


def as_torchrl_critics(stacked: TensorDict) -> TensorDict:
    layers = {"0": stacked["0"], "2": stacked["1"]}  # Sequential indices around the ReLU
    return TensorDict({"module": {"net": layers}}, batch_size=stacked.batch_size)


@contextmanager
def fixed_normal_noise(noise: list[torch.Tensor]):
    """Make ``Normal.rsample`` return ``loc + scale * eps`` with ``eps`` taken from ``noise`` in order."""
    queue = list(noise)
    original = torch.distributions.Normal.rsample

    def rsample(self, sample_shape=()):
        eps = queue.pop(0)
        assert eps.shape == self.loc.shape
        return self.loc + self.scale * eps

    torch.distributions.Normal.rsample = rsample
    try:
        yield
    finally:
        torch.distributions.Normal.rsample = original
    assert not queue, "TorchRL drew fewer samples than expected"


def test_sac_matches_sacloss():
    params, batch = S.sac_params(0), S.transitions(0, continuous=True)
    module = TensorDictModule(
        SacActorModule(params["actor"], (-5.0, 2.0)), in_keys=["observation"], out_keys=["loc", "scale"]
    )
    actor = ProbabilisticActor(
        module,
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
    )
    qvalue = ValueOperator(
        CriticModule(params["critic"][0]), in_keys=["observation", "action"], out_keys=["state_action_value"]
    )
    reference = SACLoss(
        actor,
        qvalue,
        num_qvalue_nets=2,
        loss_function="l2",
        alpha_init=float(params["log_alpha"].exp()),
        target_entropy=-2.0,
        delay_qvalue=True,
    )
    reference.make_value_estimator(gamma=0.99)
    reference.qvalue_network_params.data.copy_(as_torchrl_critics(params["critic"]))
    reference.target_qvalue_network_params.data.copy_(as_torchrl_critics(params["target_critic"]))
    noise = [fr.normal(fr.key(1), (S.BATCH, S.ACT_DIM)), fr.normal(fr.key(2), (S.BATCH, S.ACT_DIM))]
    with fixed_normal_noise(noise):  # TorchRL samples the next action first, then the current one
        out = reference(torchrl_layout(batch))
    _, metrics = S.SAC(params, batch, noise=tuple(noise))
    for ours, theirs in (
        ("critic_loss", "loss_qvalue"),
        ("actor_loss", "loss_actor"),
        ("alpha_loss", "loss_alpha"),
        ("alpha", "alpha"),
        ("entropy", "entropy"),
    ):
        torch.testing.assert_close(metrics[ours], out[theirs].detach(), **TOL, msg=ours)
