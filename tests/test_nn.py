"""frl.nn: pure networks against torch.nn references, initializer statistics, ensembles, the
module adapter, errors, and the four variants."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict

import frl.random as fr
from frl import nn
from frl.nn import initializers as init
from tests.variants import Case, check, variant_params

OBS, ACT, N_ACT = 5, 2, 3


def obs(i: int, batch: int = 4) -> torch.Tensor:
    return torch.randn(batch, OBS, generator=torch.Generator().manual_seed(100 + i))


def as_sequential(mlp: nn.MLP, params: TensorDict, act: torch.nn.Module) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    for i in range(mlp.num_layers):
        lin = torch.nn.Linear(mlp.sizes[i], mlp.sizes[i + 1])
        lin.weight.data.copy_(params[str(i), "weight"])
        lin.bias.data.copy_(params[str(i), "bias"])
        layers.append(lin)
        if i < mlp.num_layers - 1:
            layers.append(act)
    return torch.nn.Sequential(*layers)


# --------------------------------------------------------------------------------------
# Networks against torch.nn
# --------------------------------------------------------------------------------------


def test_mlp_equals_torch_sequential_and_is_pure_in_its_key():
    mlp = nn.MLP((OBS, 16, 8, 3), activation="tanh", output_scale=0.01)
    params = mlp.init(fr.key(0))
    reference = as_sequential(mlp, params, torch.nn.Tanh())
    x = obs(0)
    torch.testing.assert_close(mlp.apply(params, x), reference(x))
    assert (mlp.init(fr.key(0)) == params).all()
    assert not torch.equal(mlp.init(fr.key(1))["0", "weight"], params["0", "weight"])
    # output_scale shrinks the last layer: an orthogonal [3, 8] matrix times 0.01 has row norms 0.01
    torch.testing.assert_close(params["2", "weight"].norm(dim=1), torch.full((3,), 0.01))
    assert bool((params["0", "bias"] == 0).all())


def test_heads_shapes_and_semantics():
    key = fr.key(3)
    x = obs(0)
    q = nn.QNetwork(OBS, N_ACT)
    assert q.apply(q.init(key), x).shape == (4, N_ACT)
    v = nn.ValueNetwork(OBS)
    assert v.apply(v.init(key), x).shape == (4,)
    pi = nn.CategoricalPolicy(OBS, N_ACT)
    logits = pi.apply(pi.init(key), x)
    assert logits.shape == (4, N_ACT) and float(logits.abs().max()) < 0.1  # near-uniform at init
    cq = nn.ContinuousQNetwork(OBS, ACT)
    assert cq.apply(cq.init(key), x, torch.zeros(4, ACT)).shape == (4,)

    g = nn.GaussianPolicy(OBS, ACT, log_std_init=-0.5)
    mean, log_std = g.apply(g.init(key), x)
    assert mean.shape == log_std.shape == (4, ACT)
    torch.testing.assert_close(log_std, torch.full((4, ACT), -0.5))
    clamped = nn.GaussianPolicy(OBS, ACT, log_std_init=-9.0, log_std_bounds=(-5.0, 2.0))
    assert float(clamped.apply(clamped.init(key), x)[1].min()) == -5.0

    sac = nn.TanhGaussianPolicy(OBS, ACT, action_low=[-2.0, 0.0], action_high=[2.0, 1.0])
    p = sac.init(key)
    mean, log_std = sac.apply(p, 100 * x)
    assert bool((log_std >= -5).all() and (log_std <= 2).all())
    action = sac.mode(p, 100 * x)
    assert bool((action[:, 0].abs() <= 2).all() and (action[:, 1] >= 0).all() and (action[:, 1] <= 1).all())
    scale, bias = sac.action_scale_and_bias()
    torch.testing.assert_close(scale, torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(bias, torch.tensor([0.0, 0.5]))


# --------------------------------------------------------------------------------------
# Initializers
# --------------------------------------------------------------------------------------


def test_minatar_cnn_equals_torch_layers_on_channels_last_frames():
    """MinAtarCNN on ``[B, 10, 10, 4]`` frames equals Conv2d(4, 16, 3) -> ReLU -> Linear(1024, 128)
    -> ReLU on the channels-first frames; ConvNetwork adds a linear head (squeezed for values)."""
    net = nn.MinAtarCNN()
    params = net.init(fr.key(0))
    conv, fc = torch.nn.Conv2d(4, 16, 3), torch.nn.Linear(1024, 128)
    conv.weight.data.copy_(params["conv", "weight"])
    conv.bias.data.copy_(params["conv", "bias"])
    fc.weight.data.copy_(params["fc", "weight"])  # torch layout [out, in]
    fc.bias.data.copy_(params["fc", "bias"])
    frames = (torch.rand(2, 3, 10, 10, 4, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    reference = torch.relu(fc(torch.relu(conv(frames.flatten(0, 1).permute(0, 3, 1, 2))).flatten(1)))
    torch.testing.assert_close(net.apply(params, frames), reference.reshape(2, 3, 128))
    value = nn.ConvNetwork((10, 10, 4), 1, "minatar", squeeze=True)
    assert value.apply(value.init(fr.key(1)), frames).shape == (2, 3)
    with pytest.raises(ValueError, match=r"`x` must be \[..., 10, 10, 4\]"):
        net.apply(params, frames.permute(0, 1, 4, 2, 3))
    with pytest.raises(ValueError, match="`kind` must be 'nature' or 'minatar'"):
        nn.image_torso((10, 10, 4), "resnet")


def test_candidate_scorer_scores_each_candidate_with_one_network():
    """Scores follow their candidates: permuting the candidates permutes the scores, and each
    score is the shared MLP on ``concat(user, item)``."""
    net = nn.CandidateScorer(user_dim=2, item_dim=3, num_candidates=4, hidden=(8,))
    params = net.init(fr.key(0))
    g = torch.Generator().manual_seed(0)
    user, items = torch.randn(5, 2, generator=g), torch.randn(5, 4, 3, generator=g)
    scores = net.apply(params, torch.cat([user, items.flatten(1)], -1))
    assert scores.shape == (5, 4)
    alone = net.mlp.apply(params, torch.cat([user, items[:, 2]], -1)).squeeze(-1)
    torch.testing.assert_close(scores[:, 2], alone)
    perm = torch.tensor([3, 0, 2, 1])
    permuted = net.apply(params, torch.cat([user, items[:, perm].flatten(1)], -1))
    torch.testing.assert_close(permuted, scores[:, perm])
    no_user = nn.CandidateScorer(user_dim=0, item_dim=3, num_candidates=4)
    assert no_user.apply(no_user.init(fr.key(1)), items.flatten(1)).shape == (5, 4)
    with pytest.raises(ValueError, match="observations must end with 14 features"):
        net.apply(params, torch.zeros(5, 13))


@pytest.mark.parametrize(
    "name,initializer,variance",
    [
        ("lecun_uniform", init.lecun_uniform(), lambda fi, fo: 1 / fi),
        ("lecun_normal", init.lecun_normal(), lambda fi, fo: 1 / fi),
        ("he_uniform", init.he_uniform(), lambda fi, fo: 2 / fi),
        ("he_normal", init.he_normal(), lambda fi, fo: 2 / fi),
        ("glorot_uniform", init.glorot_uniform(), lambda fi, fo: 2 / (fi + fo)),
        ("glorot_normal", init.glorot_normal(), lambda fi, fo: 2 / (fi + fo)),
        ("normal", init.normal(0.3), lambda fi, fo: 0.09),
        ("uniform", init.uniform(-0.5, 0.5), lambda fi, fo: 1 / 12),
    ],
)
def test_initializer_variance(name, initializer, variance):
    fan_out, fan_in = 300, 200
    w = initializer(fr.key(0), (fan_out, fan_in))
    assert w.shape == (fan_out, fan_in) and w.dtype == torch.float32
    expected = variance(fan_in, fan_out)
    assert abs(float(w.var()) / expected - 1) < 0.03, f"{name}: var {float(w.var())} vs {expected}"
    if "normal" in name and name != "normal":  # truncated at two standard deviations
        assert float(w.abs().max()) <= 2 * math.sqrt(expected) / 0.87962566103423978 + 1e-6


@pytest.mark.parametrize("shape", [(8, 4), (4, 8), (6, 2, 3)])
def test_orthogonal(shape):
    w = init.orthogonal(math.sqrt(2))(fr.key(1), shape)
    flat = w.reshape(shape[0], -1)
    rows, cols = flat.shape
    gram = flat @ flat.T if rows <= cols else flat.T @ flat
    torch.testing.assert_close(gram, 2 * torch.eye(min(rows, cols)), atol=1e-5, rtol=0)
    assert init.orthogonal()(fr.key(1), (3, 3), torch.float64).dtype == torch.float64


def test_fans_and_constant_initializers():
    assert init.fans((16, 3, 5, 5)) == (75, 400)
    assert bool((init.zeros()(fr.key(0), (2, 3)) == 0).all())
    assert bool((init.constant(0.5)(fr.key(0), (4,)) == 0.5).all())


# --------------------------------------------------------------------------------------
# Ensembles
# --------------------------------------------------------------------------------------


def test_ensemble_members_equal_individual_networks():
    net = nn.MLP((OBS, 8, 2))
    ens = nn.Ensemble(net, num=4)
    params = ens.init(fr.key(7))
    assert params.batch_size == (4,)
    x = obs(0)
    out = ens.apply(params, x)
    keys = fr.split(fr.key(7), 4)
    for i in range(4):
        member = net.init(keys[i])
        assert (params[i] == member).all()
        torch.testing.assert_close(out[i], net.apply(member, x))
    per_member_x = torch.stack([obs(i) for i in range(4)])
    split_out = nn.ensemble_apply(net.apply, params, per_member_x, shared_inputs=False)
    for i in range(4):
        torch.testing.assert_close(split_out[i], net.apply(params[i], per_member_x[i]))
    stacked = nn.stack([net.init(k) for k in keys])
    assert (stacked == params).all()


def test_twin_critics_ensemble():
    critics = nn.Ensemble(nn.ContinuousQNetwork(OBS, ACT), num=2)
    params = critics.init(fr.key(0))
    q = critics.apply(params, obs(0), torch.ones(4, ACT))
    assert q.shape == (2, 4) and not torch.equal(q[0], q[1])


# --------------------------------------------------------------------------------------
# Adapter for a user's nn.Module
# --------------------------------------------------------------------------------------


class ScaledNet(torch.nn.Module):
    """A module with a buffer, to check buffers travel with the params."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(OBS, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        self.register_buffer("scale", torch.tensor([2.0, -1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * self.scale


def test_module_adapter_matches_module_forward_and_backward():
    torch.manual_seed(0)
    module = ScaledNet()
    params, net = nn.from_module(module)
    keys = {k if isinstance(k, tuple) else (k,) for k in params.keys(True, True)}
    assert keys == {("scale",), *((("body", i, n)) for i in ("0", "2") for n in ("weight", "bias"))}
    x = obs(0)
    torch.testing.assert_close(net.apply(params, x), module(x))
    grads = torch.func.grad(lambda p: net.apply(p, x).square().sum())(params)
    module(x).square().sum().backward()
    torch.testing.assert_close(grads["body", "0", "weight"], module.body[0].weight.grad)
    # the module's own tensors are untouched by apply with other params
    other = params.apply(torch.zeros_like)
    assert bool((net.apply(other, x) == 0).all())
    assert not bool((module.body[0].weight == 0).all())


def test_live_module_params_train_with_torch_optim_like_frl_optim():
    """The torch.optim recipe (``copy=False``: the module's own parameters) takes the same steps
    as the pure recipe (detached copies, ``torch.func.grad`` and ``frl.optim.adam``)."""
    from frl import distributions, losses, optim

    torch.manual_seed(1)
    actor, critic = (
        ScaledNet(),
        torch.nn.Sequential(torch.nn.Linear(OBS, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)),
    )
    batch = TensorDict(
        {
            "observation": obs(0),
            "action": torch.arange(obs(0).shape[0]) % 2,
            "action_log_prob": torch.full((obs(0).shape[0],), -0.7),
            "advantage": torch.linspace(-1.0, 1.0, obs(0).shape[0]),
            "value_target": torch.linspace(0.0, 2.0, obs(0).shape[0]),
        },
        batch_size=[obs(0).shape[0]],
    )

    def value_apply(net):
        return lambda p, x: net.apply(p, x).squeeze(-1)

    def loss_of(actor_params, critic_params, actor_net, critic_net):
        return losses.ppo_loss(
            actor_params,
            critic_params,
            batch,
            policy_apply=actor_net.apply,
            value_apply=value_apply(critic_net),
            dist=distributions.Categorical(),
        )[0]

    (pa, na), (pc, nc) = nn.from_module(actor), nn.from_module(critic)  # copies, before any step
    pure = TensorDict({"actor": pa.exclude("scale"), "critic": pc}, batch_size=[])
    scale = pa["scale"]
    tx = optim.adam(1e-2)
    opt_state = tx.init(pure)
    for _ in range(3):
        grads = torch.func.grad(
            lambda p: loss_of(p["actor"].clone(recurse=False).set("scale", scale), p["critic"], na, nc)
        )(pure)
        updates, opt_state = tx.update(grads, opt_state, pure)
        pure = optim.apply_updates(pure, updates)

    (live_a, net_a), (live_c, net_c) = nn.from_module(actor, copy=False), nn.from_module(critic, copy=False)
    assert live_a["body", "0", "weight"] is actor.body[0].weight
    torch_opt = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=1e-2)
    for _ in range(3):
        torch_opt.zero_grad()
        loss_of(live_a, live_c, net_a, net_c).backward()
        torch_opt.step()
    torch.testing.assert_close(
        actor.body[0].weight.detach(), pure["actor", "body", "0", "weight"], rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(critic[2].weight.detach(), pure["critic", "2", "weight"], rtol=1e-5, atol=1e-6)
    assert not torch.equal(actor.body[0].weight.detach(), pa["body", "0", "weight"])  # the module moved


def test_module_adapter_init_is_deterministic_in_the_key():
    _, net = nn.from_module(ScaledNet())
    a, b, c = net.init(fr.key(1)), net.init(fr.key(1)), net.init(fr.key(2))
    assert (a == b).all()
    assert not torch.equal(a["body", "0", "weight"], c["body", "0", "weight"])
    torch.testing.assert_close(a["scale"], torch.tensor([2.0, -1.0]))  # buffers keep their values


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: nn.MLP((4,)), ValueError, "`sizes`"),
        (lambda: nn.MLP((4, 0, 2)), ValueError, "`sizes`"),
        (lambda: nn.MLP((4, 2), activation="swishy"), ValueError, "activation"),
        (
            lambda: nn.MLP((4, 2)).apply(nn.MLP((4, 2)).init(fr.key(0)), torch.zeros(3, 5)),
            ValueError,
            r"\[\.\.\., 4\]",
        ),
        (lambda: nn.QNetwork(0, 2), ValueError, "`obs_dim`"),
        (lambda: nn.GaussianPolicy(3, 2, log_std_bounds=(1.0, -1.0)), ValueError, "`log_std_bounds`"),
        (lambda: nn.TanhGaussianPolicy(3, 2, action_low=1.0, action_high=1.0), ValueError, "`action_low`"),
        (lambda: nn.Ensemble(nn.MLP((2, 2)), num=0), ValueError, "`num`"),
        (
            lambda: nn.ContinuousQNetwork(3, 2).apply(
                nn.ContinuousQNetwork(3, 2).init(fr.key(0)), torch.zeros(4, 3), torch.zeros(5, 2)
            ),
            ValueError,
            "leading dims",
        ),
        (lambda: nn.from_module("not a module"), TypeError, "torch.nn.Module"),
        (lambda: init.orthogonal()(fr.key(0), (4,)), ValueError, "2 dims"),
        (lambda: init.variance_scaling(1.0, "fan_mid", "uniform"), ValueError, "`mode`"),
    ],
)
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --------------------------------------------------------------------------------------
# Four variants
# --------------------------------------------------------------------------------------

MLP = nn.MLP((OBS, 8, 8, 3), activation="tanh")
HEADS = {
    "q": nn.QNetwork(OBS, N_ACT, hidden=(8,)),
    "v": nn.ValueNetwork(OBS, hidden=(8,)),
    "pi": nn.CategoricalPolicy(OBS, N_ACT, hidden=(8,)),
    "cq": nn.ContinuousQNetwork(OBS, ACT, hidden=(8,)),
    "gauss": nn.GaussianPolicy(OBS, ACT, hidden=(8,)),
    "sac": nn.TanhGaussianPolicy(OBS, ACT, hidden=(8,)),
}
ENSEMBLE = nn.Ensemble(nn.MLP((OBS, 8, 2)), num=3)
_MODULE_PARAMS, MODULE = nn.from_module(ScaledNet())


def heads_init(i: int) -> TensorDict:
    keys = fr.split(fr.key(50 + i), len(HEADS))
    return TensorDict({name: head.init(k) for (name, head), k in zip(HEADS.items(), keys)}, batch_size=[])


def heads_apply(params: TensorDict, x: torch.Tensor):
    action = torch.tanh(x[..., :ACT])
    return (
        HEADS["q"].apply(params["q"], x),
        HEADS["v"].apply(params["v"], x),
        HEADS["pi"].apply(params["pi"], x),
        HEADS["cq"].apply(params["cq"], x, action),
        HEADS["gauss"].apply(params["gauss"], x),
        HEADS["sac"].apply(params["sac"], x),
        HEADS["sac"].mode(params["sac"], x),
    )


INITIALIZERS = [
    init.lecun_normal(),
    init.lecun_uniform(),
    init.he_normal(),
    init.he_uniform(),
    init.glorot_normal(),
    init.glorot_uniform(),
    init.variance_scaling(0.5, "fan_out", "normal"),
    init.normal(0.1),
    init.uniform(-0.2, 0.3),
    init.constant(0.5),
    init.zeros(),
    init.orthogonal(2.0),
]


def init_all(k: torch.Tensor):
    keys = fr.split(k, len(INITIALIZERS) + 1)
    weights = tuple(initializer(kk, (4, 3)) for initializer, kk in zip(INITIALIZERS, keys[1:]))
    return (MLP.init(keys[0]), *weights)


CASES = [
    Case("mlp", MLP.apply, lambda i: (MLP.init(fr.key(i)), obs(i)), grad_argnums=(0, 1)),
    Case("heads", heads_apply, lambda i: (heads_init(i), obs(i)), grad_argnums=(0, 1)),
    Case("ensemble", ENSEMBLE.apply, lambda i: (ENSEMBLE.init(fr.key(i)), obs(i)), grad_argnums=(0, 1)),
    Case("module", MODULE.apply, lambda i: (MODULE.init(fr.key(i)), obs(i)), grad_argnums=(0, 1)),
    Case("init", init_all, lambda i: (fr.key(i),), atol=1e-5, compile_atol=1e-4),
]


@pytest.mark.parametrize("case,variant", variant_params(CASES))
def test_variants(case, variant):
    check(case, variant)
