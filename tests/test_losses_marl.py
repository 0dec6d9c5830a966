"""frl.losses.marl, frl.nn.mixers, frl.nn.PerAgent and masked distributions: what the critic and the
actor see, parity with the single-agent PPO loss, per-agent params equal separately trained
agents, masks, QMIX's monotonicity, the value-decomposition target by hand, errors, four variants."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from tensordict import TensorDict

import frl.random as fr
from frl import distributions as D
from frl import losses, nn
from tests.variants import Case, check, variant_params

B, N, OBS, ACT, STATE = 6, 3, 5, 4, 7
ACTOR = nn.MLP((OBS, 16, ACT), "tanh")
LOCAL_CRITIC = nn.MLP((OBS, 16, 1), "tanh")
STATE_CRITIC = nn.MLP((STATE + N, 16, 1), "tanh")
JOINT_CRITIC = nn.MLP((N * OBS + N, 16, 1), "tanh")
TEAM_CRITIC = nn.MLP((N * OBS, 16, 1), "tanh")
QNET = nn.MLP((OBS, 16, ACT), "relu")
MIXER = nn.QMixer(N, STATE, embed_dim=8, hypernet_hidden=16)


def value_of(critic: nn.MLP):
    return lambda p, x: critic.apply(p, x).squeeze(-1)


def masks(key: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Random legal-action masks with at least one legal action per row."""
    legal = fr.bernoulli(k_legal := fr.fold_in(key, 0), 0.5, (*shape, ACT))
    keep = fr.randint(fr.fold_in(k_legal, 1), shape, 0, ACT)  # one action always legal, not always 0
    return legal | (torch.arange(ACT) == keep.unsqueeze(-1))


def on_policy_batch(i: int, *, masked: bool = False) -> TensorDict:
    k = fr.split(fr.key(100 + i), 7)
    mask = masks(k[6], (B, N))
    logits = D.mask_logits(fr.normal(k[1], (B, N, ACT)), mask) if masked else fr.normal(k[1], (B, N, ACT))
    action = D.Categorical().sample(k[2], logits)
    agents = {
        "observation": fr.normal(k[0], (B, N, OBS)),
        "action": action,
        "action_log_prob": D.Categorical().log_prob(logits, action) + 0.1 * fr.normal(k[3], (B, N)),
        "advantage": fr.normal(k[4], (B, N)),
        "value_target": fr.normal(k[5], (B, N)),
        "state_value": fr.normal(fr.fold_in(k[5], 1), (B, N)),
    }
    if masked:
        agents["action_mask"] = mask
    agents = TensorDict(agents, batch_size=[B, N])  # TorchRL's group layout: the agent dim is a batch dim
    return TensorDict({"agents": agents, "state": fr.normal(fr.fold_in(k[0], 1), (B, STATE))}, batch_size=[B])


def transition_batch(i: int, *, masked: bool = True) -> TensorDict:
    k = fr.split(fr.key(200 + i), 8)
    nxt = {
        "agents": {"observation": fr.normal(k[2], (B, N, OBS))},
        "state": fr.normal(k[3], (B, STATE)),
        "reward": fr.normal(k[4], (B,)),
        "terminated": fr.bernoulli(k[5], 0.3, (B,)),
    }
    if masked:
        nxt["agents"]["action_mask"] = masks(k[6], (B, N))
    return TensorDict(
        {
            "agents": {
                "observation": fr.normal(k[0], (B, N, OBS)),
                "action": fr.randint(k[1], (B, N), 0, ACT),
            },
            "state": fr.normal(k[7], (B, STATE)),
            "next": nxt,
        },
        batch_size=[B],
    )


def actor_critic(i: int, critic: nn.MLP = STATE_CRITIC) -> TensorDict:
    k_actor, k_critic = fr.split(fr.key(i))
    return TensorDict({"actor": ACTOR.init(k_actor), "critic": critic.init(k_critic)}, batch_size=[])


def q_params(i: int, mixer: bool = True) -> TensorDict:
    k_q, k_mix, k_tq, k_tmix = fr.split(fr.key(300 + i), 4)
    online = {"agent": QNET.init(k_q), **({"mixer": MIXER.init(k_mix)} if mixer else {})}
    target = {"agent": QNET.init(k_tq), **({"mixer": MIXER.init(k_tmix)} if mixer else {})}
    return TensorDict({"online": online, "target": target}, batch_size=[])


def q_apply(params, obs):
    return QNET.apply(params["agent"], obs)


def mixer_apply(params, q, state):
    return MIXER.apply(params["mixer"], q, state)


def mappo(critic_input: str, value_apply, dist=None, **settings):
    """``mappo_loss`` bound to the shared actor and a critic (entropy coefficient 0.01)."""
    return losses.bind(
        losses.mappo_loss,
        "actor",
        "critic",
        policy_apply=ACTOR.apply,
        value_apply=value_apply,
        dist=dist or D.Categorical(),
        critic_input=critic_input,
        entropy_coef=0.01,
        **settings,
    )


MAPPO_TEAM = mappo("team", value_of(TEAM_CRITIC))
MAPPO = mappo("state", value_of(STATE_CRITIC), D.MaskedCategorical(), value_clip_eps=0.2)
VDN = losses.bind(losses.value_decomposition_loss, "online", "target", q_apply=q_apply, gamma=0.9)
QMIX = losses.bind(
    losses.value_decomposition_loss, "online", "target", q_apply=q_apply, mixer_apply=mixer_apply, gamma=0.9
)


# -- what the critic and the actor see --------------------------------------------------------


def test_centralised_critic_sees_every_agent_and_the_shared_actor_only_its_own_observation():
    params = actor_critic(0, JOINT_CRITIC)
    obs = on_policy_batch(0)["agents", "observation"]
    moved = obs.clone()
    moved[:, 2] += 1.0  # agent 2's observation changes
    joint = value_of(JOINT_CRITIC)
    v0, v1 = (joint(params["critic"], losses.critic_observation("joint", o)) for o in (obs, moved))
    assert (v0[:, 0] - v1[:, 0]).abs().min() > 1e-4, "agent 0's centralised value must see agent 2"
    local = value_of(LOCAL_CRITIC)
    p_local = LOCAL_CRITIC.init(fr.key(1))
    assert torch.equal(local(p_local, obs)[:, :2], local(p_local, moved)[:, :2])
    # one actor for every agent: no agent dim in its params, and agent i's logits are the actor on o_i
    assert all(p.shape[0] != N or p.dim() == 1 for p in params["actor"].values(True, True))
    logits = ACTOR.apply(params["actor"], moved)
    assert torch.equal(logits[:, 0], ACTOR.apply(params["actor"], obs)[:, 0])
    for i in range(N):
        torch.testing.assert_close(logits[:, i], ACTOR.apply(params["actor"], moved[:, i]))
    # the state critic: [s, onehot(i)]
    state = torch.randn(B, STATE)
    c = losses.critic_observation("state", obs, state)
    assert c.shape == (B, N, STATE + N)
    assert torch.equal(c[:, 1, :STATE], state) and torch.equal(c[:, 1, STATE:], torch.eye(N)[1].expand(B, N))
    # the shared actor gets gradient from every agent's samples
    grads = torch.func.grad(lambda p: MAPPO(p, on_policy_batch(0, masked=True))[0])(actor_critic(0))
    assert float(grads["actor"].apply(torch.abs).sum(reduce=True)) > 0


def test_team_critic_is_one_value_of_every_agents_observation_that_the_agents_share():
    params = actor_critic(0, TEAM_CRITIC)
    batch = on_policy_batch(0)
    obs = batch["agents", "observation"]
    team = value_of(TEAM_CRITIC)
    c = losses.critic_observation("team", obs)
    assert c.shape == (B, 1, N * OBS)
    value = losses.critic_values("team", team, params["critic"], obs)
    assert value.shape == (B, N)
    expected = TEAM_CRITIC.apply(params["critic"], obs.reshape(B, N * OBS)).squeeze(-1)
    for i in range(N):
        torch.testing.assert_close(value[:, i], expected)
    moved = obs.clone()
    moved[:, 2] += 1.0
    changed = losses.critic_values("team", team, params["critic"], moved)
    assert (changed[:, 0] - value[:, 0]).abs().min() > 1e-4, "the team value must see agent 2"

    # the loss equals the "joint" path with a critic that ignores the agent's identity (the same
    # value for every agent, computed n times): the same loss, metrics and gradients
    def blind(p, joint_input):
        return team(p, joint_input[..., : N * OBS])

    joint = mappo("joint", blind)
    got, want = MAPPO_TEAM(params, batch), joint(params, batch)
    torch.testing.assert_close(got[0], want[0])
    for name, metric in want[1].items():
        torch.testing.assert_close(got[1][name], metric)
    g_team = torch.func.grad(lambda p: MAPPO_TEAM(p, batch)[0])(params)
    g_joint = torch.func.grad(lambda p: joint(p, batch)[0])(params)
    for k, g in g_joint.items(True, True):
        torch.testing.assert_close(g_team[k], g, msg=str(k))
    assert float(g_team["critic"].apply(torch.abs).sum(reduce=True)) > 0.0


def test_ippo_with_shared_params_equals_the_single_agent_ppo_loss_on_the_flattened_batch():
    params = actor_critic(3, LOCAL_CRITIC)
    batch = on_policy_batch(3)
    kwargs = dict(dist=D.Categorical(), clip_eps=0.2, value_clip_eps=0.2, entropy_coef=0.01)
    multi, m_metrics = losses.mappo_loss(
        params["actor"],
        params["critic"],
        batch,
        policy_apply=ACTOR.apply,
        value_apply=value_of(LOCAL_CRITIC),
        critic_input="local",
        **kwargs,
    )
    single, s_metrics = losses.ppo_loss(
        params["actor"],
        params["critic"],
        batch["agents"].reshape(B * N),
        policy_apply=ACTOR.apply,
        value_apply=value_of(LOCAL_CRITIC),
        **kwargs,
    )
    torch.testing.assert_close(multi, single)
    for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"):
        torch.testing.assert_close(m_metrics[name], s_metrics[name])


def test_per_agent_params_equal_agents_trained_separately():
    """IPPO with one actor and critic per agent (PerAgent) trained jointly by gradient descent equals
    each agent trained alone on its own slice of the data with the single-agent PPO loss."""
    actor, critic = nn.PerAgent(ACTOR, N), nn.PerAgent(LOCAL_CRITIC, N)
    joint = TensorDict({"actor": actor.init(fr.key(5)), "critic": critic.init(fr.key(6))}, batch_size=[])
    kwargs = dict(dist=D.Categorical(), clip_eps=0.2, entropy_coef=0.01, normalize_advantage=False)
    loss = losses.bind(
        losses.mappo_loss,
        "actor",
        "critic",
        policy_apply=actor.apply,
        value_apply=lambda p, x: critic.apply(p, x).squeeze(-1),
        critic_input="local",
        **kwargs,
    )
    single = losses.bind(
        losses.ppo_loss,
        "actor",
        "critic",
        policy_apply=ACTOR.apply,
        value_apply=value_of(LOCAL_CRITIC),
        **kwargs,
    )
    alone = [TensorDict({"actor": joint["actor"][i], "critic": joint["critic"][i]}, []) for i in range(N)]
    lr = 0.05
    for step in range(4):
        batch = on_policy_batch(10 + step)
        g = torch.func.grad(lambda p, b=batch: loss(p, b)[0])(joint)
        joint = joint.apply(lambda p, d: p - lr * N * d, g)  # the joint loss averages over the N agents
        for i in range(N):
            gi = torch.func.grad(lambda p, b=batch["agents"][:, i]: single(p, b)[0])(alone[i])
            alone[i] = alone[i].apply(lambda p, d: p - lr * d, gi)
    for i in range(N):
        for name in ("actor", "critic"):
            torch.testing.assert_close(joint[name][i], alone[i][name], rtol=1e-5, atol=1e-6)
    # and the agents did move apart: their params differ from one another
    assert not torch.allclose(joint["actor"][0]["0", "weight"], joint["actor"][1]["0", "weight"])


# -- masks ------------------------------------------------------------------------------------


def test_masked_actions_are_never_sampled_chosen_or_given_probability():
    dist = D.MaskedCategorical()
    k_mask, k_logits, k_draw = fr.split(fr.key(11), 3)
    mask = masks(k_mask, (512,))
    logits = 5.0 * fr.normal(k_logits, (512, ACT))
    logits = torch.where(mask, logits, logits + 50.0)  # masked actions look best
    draws = dist.sample(k_draw, (logits.expand(40, 512, ACT), mask.expand(40, 512, ACT)))
    legal = torch.gather(mask.expand(40, 512, ACT), -1, draws.unsqueeze(-1)).squeeze(-1)
    assert bool(legal.all()), "a masked action was sampled"
    assert bool(torch.gather(mask, -1, dist.mode((logits, mask)).unsqueeze(-1)).all())
    probs = dist.probs((logits, mask))
    assert float(probs[~mask].abs().max()) == 0.0
    torch.testing.assert_close(probs.sum(-1), torch.ones(512))
    entropy = dist.entropy((logits, mask))
    assert bool(torch.isfinite(entropy).all()) and bool(
        (entropy <= torch.log(mask.sum(-1).float()) + 1e-5).all()
    )
    # gradients through masked entries are finite (a -inf mask would give nan)
    g = torch.func.grad(lambda z: dist.entropy((z, mask)).sum() + dist.log_prob((z, mask), draws[0]).sum())(
        logits
    )
    assert bool(torch.isfinite(g).all())
    # epsilon-greedy with a mask: neither the random nor the greedy action is ever masked
    for eps in (0.0, 1.0, 0.5):
        acts = D.epsilon_greedy(fr.key(12), logits.expand(20, 512, ACT), eps, mask.expand(20, 512, ACT))
        assert bool(torch.gather(mask.expand(20, 512, ACT), -1, acts.unsqueeze(-1)).all()), eps
    uniform = D.epsilon_greedy(
        fr.key(13), logits.expand(2000, 512, ACT)[:, :1], 1.0, mask[:1].expand(2000, 1, ACT)
    )
    counts = torch.bincount(uniform.flatten(), minlength=ACT).float()
    legal_n = int(mask[0].sum())
    assert torch.allclose(counts[mask[0]] / 2000, torch.full((legal_n,), 1.0 / legal_n), atol=0.04)


def test_mappo_refuses_masks_with_an_unmasked_family_and_the_reverse():
    params, batch = actor_critic(0), on_policy_batch(0, masked=True)
    kwargs = dict(policy_apply=ACTOR.apply, value_apply=value_of(STATE_CRITIC))
    with pytest.raises(TypeError, match="MaskedCategorical"):
        losses.mappo_loss(params["actor"], params["critic"], batch, dist=D.Categorical(), **kwargs)
    with pytest.raises(KeyError, match="no action mask"):
        losses.mappo_loss(
            params["actor"], params["critic"], on_policy_batch(0), dist=D.MaskedCategorical(), **kwargs
        )


# -- value decomposition -----------------------------------------------------------------------


def test_qmix_mixer_is_monotonic_in_every_agents_value():
    """dQ_tot/dQ_i >= 0 for every agent, state and value, for any params (here: scaled at random,
    so hypernetwork outputs of both signs are exercised), and Q_tot rises with each Q_i."""
    for seed in range(5):
        params = MIXER.init(fr.key(seed)).apply(lambda x: x * (1 + 3 * torch.rand_like(x)))
        q = 10.0 * fr.normal(fr.key(50 + seed), (256, N))
        s = 3.0 * fr.normal(fr.key(60 + seed), (256, STATE))
        jac = torch.func.vmap(torch.func.jacrev(lambda q_, s_, p=params: MIXER.apply(p, q_, s_)))(q, s)
        assert jac.shape == (256, N)
        assert float(jac.min()) >= 0.0, float(jac.min())
        for i in range(N):
            up = q.clone()
            up[:, i] += 1.0
            assert bool((MIXER.apply(params, up, s) >= MIXER.apply(params, q, s) - 1e-5).all())
    assert torch.equal(nn.vdn_mix(torch.tensor([[1.0, 2.0, 3.0]])), torch.tensor([6.0]))


def test_value_decomposition_targets_by_hand():
    params, batch = q_params(0), transition_batch(0)
    on, tg = params["online"], params["target"]
    agents = batch["agents"]
    q_sa = torch.gather(
        QNET.apply(on["agent"], agents["observation"]), -1, agents["action"].unsqueeze(-1)
    ).squeeze(-1)
    nxt = batch["next"]
    legal = nxt["agents", "action_mask"]
    online_next = QNET.apply(on["agent"], nxt["agents", "observation"]).masked_fill(~legal, -1e9)
    best = online_next.argmax(-1)
    target_next = torch.gather(
        QNET.apply(tg["agent"], nxt["agents", "observation"]), -1, best.unsqueeze(-1)
    ).squeeze(-1)
    for mixed, loss in ((False, VDN), (True, QMIX)):
        if mixed:
            q_tot = MIXER.apply(on["mixer"], q_sa, batch["state"])
            next_tot = MIXER.apply(tg["mixer"], target_next, nxt["state"])
        else:
            q_tot, next_tot = q_sa.sum(-1), target_next.sum(-1)
        y = nxt["reward"] + 0.9 * (~nxt["terminated"]).float() * next_tot
        value, metrics = loss(params, batch)
        torch.testing.assert_close(value, ((q_tot - y) ** 2).mean())
        torch.testing.assert_close(metrics["target"], y.mean())
    # the target params get no gradient; the online agent net and mixer both do
    grads = torch.func.grad(lambda p: QMIX(p, batch)[0])(params)
    assert float(grads["target"].apply(torch.abs).sum(reduce=True)) == 0.0
    assert float(grads["online", "mixer"].apply(torch.abs).sum(reduce=True)) > 0.0
    assert float(grads["online", "agent"].apply(torch.abs).sum(reduce=True)) > 0.0


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: QMIX(q_params(0), transition_batch(0).exclude("state")), KeyError, "no `state`"),
        (
            lambda: VDN(
                q_params(0, mixer=False),
                transition_batch(0)
                .exclude(("next", "reward"))
                .set(("next", "agents", "reward"), torch.zeros(B, N)),
            ),
            KeyError,
            "team reward",
        ),
        (
            lambda: VDN(
                q_params(0, mixer=False), transition_batch(0).set(("next", "reward"), torch.zeros(B, 1))
            ),
            ValueError,
            r"`next.reward` must have the batch shape \[6\]",
        ),
        (lambda: losses.critic_observation("global", torch.zeros(2, N, OBS)), ValueError, "one of"),
        (
            lambda: losses.critic_values(
                "team", lambda p, c: c.sum(-1).expand(2, N), None, torch.zeros(2, N, OBS)
            ),
            ValueError,
            r"one value per sample, shape \[2, 1\], got \[2, 3\]",
        ),
        (lambda: losses.critic_observation("state", torch.zeros(2, N, OBS)), ValueError, "global state"),
        (
            lambda: losses.critic_observation("state", torch.zeros(2, N, OBS), torch.zeros(3, STATE)),
            ValueError,
            r"\[2, state_dim\]",
        ),
        (
            lambda: nn.PerAgent(ACTOR, N).apply(
                nn.PerAgent(ACTOR, N).init(fr.key(0)), torch.zeros(2, N + 1, OBS)
            ),
            ValueError,
            "n_agents=3",
        ),
        (
            lambda: MIXER.apply(MIXER.init(fr.key(0)), torch.zeros(2, N), torch.zeros(3, STATE)),
            ValueError,
            "batch dims",
        ),
        (lambda: nn.QMixer(0, STATE), ValueError, "n_agents"),
        (lambda: D.mask_logits(torch.zeros(2, ACT), torch.ones(2, ACT)), TypeError, "bool"),
    ],
)
def test_bad_input_names_the_field(make, error, match):
    with pytest.raises(error, match=match):
        make()


# -- four variants, vmapped over 8 seeds --------------------------------------------------------

CASES = [
    Case("mappo_masked", MAPPO, lambda i: (actor_critic(i), on_policy_batch(i, masked=True))),
    Case("mappo_team", MAPPO_TEAM, lambda i: (actor_critic(i, TEAM_CRITIC), on_policy_batch(i))),
    Case("vdn", VDN, lambda i: (q_params(i, mixer=False), transition_batch(i))),
    Case("qmix", QMIX, lambda i: (q_params(i), transition_batch(i))),
    Case(
        "per_agent_actor",
        partial(nn.PerAgent(ACTOR, N).apply),
        lambda i: (nn.PerAgent(ACTOR, N).init(fr.key(i)), fr.normal(fr.key(70 + i), (B, N, OBS))),
    ),
]
for _case in CASES:
    _case.batch_size = 8
    _case.grad_argnums = 0
    _case.rtol = _case.atol = 1e-5
    _case.compile_rtol = _case.compile_atol = 1e-4


@pytest.mark.parametrize("case,variant", variant_params(CASES))
def test_variants(case, variant):
    check(case, variant)
