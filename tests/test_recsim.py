"""RecSim's interest-evolution environment (frl.envs.recsim): the equations by hand, the choice
model's frequencies, batching and compiling, the baselines' lesson, bad settings, and PPO
learning a slate policy that beats the myopic recommender."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from tensordict import TensorDict
from torch.func import vmap

import frl
from frl import envs, random
from frl.envs import recsim as R
from frl.envs.spaces import Slate

ENV_ID = "RecSim-InterestEvolution-v0"


def _physics(env, interests, budget, topics, quality):
    return torch.cat(
        [
            torch.tensor(interests, dtype=torch.float32),
            torch.tensor([budget], dtype=torch.float32),
            torch.tensor(topics, dtype=torch.float32),
            torch.tensor(quality, dtype=torch.float32),
        ]
    )


def test_spaces_reset_and_observation_layout():
    env = envs.make(ENV_ID)
    assert env.action_space == Slate.of(20, 3) and env.observation_space.shape == (200,)
    obs, state = env.reset(random.key(0), num_envs=64)
    assert obs.shape == (64, 200) and obs.dtype == torch.float32
    interests, budget, topics, quality = env.unpack(state["physics"])
    assert interests.abs().max() <= 1 and budget.eq(60.0).all()
    assert topics.min() >= 0 and topics.max() < 10
    # quality ~ N(mu_topic, 0.1): trashy topics (0..6) below 0.5, nutritious ones (7..9) above -0.5
    means = env.quality_means()
    assert (quality - means[topics]).abs().max() < 0.6
    # the observation is the candidates' topics one-hot, in candidate order
    assert torch.equal(obs.reshape(64, 20, 10).argmax(-1), topics)
    seen = envs.make(ENV_ID, observable_interests=True)
    obs, state = seen.reset(random.key(0))
    assert obs.shape == (210,) and torch.equal(obs[:10], state["physics"][:10])


def test_topic_qualities_and_appeal():
    env = envs.make(ENV_ID)
    means = env.quality_means()
    torch.testing.assert_close(means[:7], torch.linspace(-3, 0, 7))
    torch.testing.assert_close(means[7:], torch.linspace(0, 3, 3))
    appeal = env.appeal(env.default_params())
    assert appeal[:7].eq(1.0).all() and appeal[7:].eq(0.0).all()


@pytest.mark.parametrize("choice_model", ["mnl", "cascade"])
def test_click_probabilities_by_hand(choice_model):
    env = envs.make(ENV_ID, num_candidates=4, slate_size=3, num_topics=4, choice_model=choice_model)
    params = env.default_params()  # 3 trashy topics (appeal 1), 1 nutritious
    physics = _physics(env, [0.5, -0.2, 0.1, 0.9], 30.0, [3, 0, 1, 2], [2.0, -1.0, -2.0, -0.5])
    slate = torch.tensor([1, 0, 3])  # topics 0, 3, 2
    scores = [0.5 + 1.0, 0.9, 0.1 + 1.0]
    scores = [s - params.position_bias * j for j, s in enumerate(scores)]
    if choice_model == "mnl":
        z = math.exp(params.no_click_score) + sum(math.exp(s) for s in scores)
        expected = [math.exp(s) / z for s in scores]
    else:
        p = [1 / (1 + math.exp(-(s - params.no_click_score))) for s in scores]
        expected = [p[0], (1 - p[0]) * p[1], (1 - p[0]) * (1 - p[1]) * p[2]]
    got = env.click_probabilities(physics, slate, params)
    torch.testing.assert_close(got, torch.tensor(expected), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("choice_model", ["mnl", "cascade"])
def test_clicks_follow_the_choice_model(choice_model):
    """20,000 users in one state: click frequencies per slate position (and no click) within 4
    standard errors of the model's probabilities."""
    env = envs.make(ENV_ID, num_candidates=5, slate_size=3, num_topics=4, choice_model=choice_model)
    params = env.default_params()
    physics = _physics(env, [0.2, -0.6, 0.4, 0.8], 50.0, [0, 1, 3, 2, 3], [-2.0, -1.0, 2.5, -0.5, 3.0])
    slate = torch.tensor([2, 0, 4])
    n = 20_000
    batch = physics.expand(n, -1).clone()
    nxt, watch, _ = env.transition(batch, slate.expand(n, -1), params, random.key(7))
    # the clicked position, told by the budget change (the slate's qualities all differ)
    gained = env.unpack(nxt)[1] - (batch[:, 4] - params.step_penalty - watch)
    quality = gained / (params.budget_gain * watch.clamp(min=1e-6))
    slate_q = torch.tensor([2.5, -2.0, 3.0])
    position = torch.where(watch > 0, (quality.unsqueeze(-1) - slate_q).abs().argmin(-1), 3)
    freq = torch.bincount(position, minlength=4).double() / n
    p = env.click_probabilities(physics, slate, params).double()
    expected = torch.cat([p, 1 - p.sum(-1, keepdim=True)])
    se = torch.sqrt(expected * (1 - expected) / n)
    assert ((freq - expected).abs() <= 4 * se).all(), (freq, expected)


def test_a_certain_click_follows_the_budget_and_interest_equations():
    env = envs.make(ENV_ID, num_candidates=3, slate_size=2, num_topics=3)
    params = dataclasses.replace(env.default_params(), no_click_score=-60.0, position_bias=40.0)
    physics = _physics(env, [0.3, -0.5, 0.0], 30.0, [2, 1, 0], [2.5, -1.0, -3.0])
    slate = torch.tensor([0, 1])  # position 0 (topic 2, quality 2.5) is clicked for sure
    nxt, watch, terminated = env.transition(physics, slate, params, random.key(3))
    interests, budget, _, _ = env.unpack(nxt)
    L = params.document_length
    assert float(watch) == L and not bool(terminated)
    expected_budget = 30.0 - params.step_penalty - L + params.budget_gain * L * 2.5
    assert float(budget) == pytest.approx(expected_budget, abs=1e-5)
    moved = interests - physics[:3]
    assert moved[0] == 0 and moved[1] == 0  # only the watched topic moves
    assert float(moved[2].abs()) == pytest.approx(params.interest_rate * (1.0 - 0.0), abs=1e-6)
    # a short budget: the watch is cut to what is left and the session ends
    short = _physics(env, [0.3, -0.5, 0.0], 1.5, [2, 1, 0], [-3.0, -1.0, -3.0])
    nxt, watch, terminated = env.transition(short, slate, params, random.key(3))
    assert float(watch) == 1.5 and bool(terminated)


def test_no_click_costs_the_step_penalty_only():
    env = envs.make(ENV_ID, num_candidates=3, slate_size=2, num_topics=3)
    params = dataclasses.replace(env.default_params(), no_click_score=60.0)
    physics = _physics(env, [0.3, -0.5, 0.0], 30.0, [2, 1, 0], [2.5, -1.0, -3.0])
    nxt, watch, _ = env.transition(physics, torch.tensor([0, 1]), params, random.key(3))
    interests, budget, _, _ = env.unpack(nxt)
    assert float(watch) == 0.0 and float(budget) == 30.0 - params.step_penalty
    assert torch.equal(interests, physics[:3])


def test_vmap_over_sessions_matches_a_loop():
    env = envs.make(ENV_ID, num_candidates=6, slate_size=2, num_topics=4)
    n = 4
    _, state_b = envs.reset_batch(env, random.key(1), n)
    states = [env.reset(k)[1] for k in random.split(random.key(1), n)]
    key = random.key(2)
    for _ in range(60):  # past several session ends (auto-reset)
        key, ka, ks = random.split(key, 3)
        actions = torch.topk(random.uniform(ka, (n, 6)), 2, dim=-1).indices
        out_b = envs.step_batch(env, ks, state_b, actions)
        keys = random.split(ks, n)
        outs = [env.step(keys[i], states[i], actions[i]) for i in range(n)]
        for j in (0, 2, 3, 4):
            torch.testing.assert_close(out_b[j], torch.stack([o[j] for o in outs]), rtol=1e-6, atol=1e-6)
        state_b, states = out_b[1], [o[1] for o in outs]


@pytest.mark.compile
def test_compiled_vmapped_step_matches_eager():
    env = envs.make(ENV_ID, num_candidates=4, slate_size=2, num_topics=3)
    _, state = envs.reset_batch(env, random.key(0), 3)
    action = torch.tensor([[0, 1], [3, 2], [1, 3]])
    keys = random.split(random.key(1), 3)
    step = vmap(env.step)
    eager = step(keys, state, action)
    compiled = frl.compile(step)(keys, state, action)
    for a, b in zip(eager, compiled, strict=True):
        for x, y in zip(a.values(), b.values(), strict=True) if isinstance(a, dict) else [(a, b)]:
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def test_the_baselines_show_the_myopic_lesson():
    """Greedy (highest immediate click probability) clicks most and watches least; the quality
    oracle watches > 2.5x longer; random lies in between on click-through."""
    env = envs.make(ENV_ID)
    out = {
        name: R.rollout_sessions(env, policy, random.key(0), 400)
        for name, policy in (
            ("greedy", R.greedy_slate),
            ("quality", R.quality_slate),
            ("random", R.random_slate),
        )
    }
    watch = {k: float(v["watch_time"].mean()) for k, v in out.items()}
    ctr = {k: float(v["ctr"].mean()) for k, v in out.items()}
    assert watch["quality"] > 2.5 * watch["greedy"]
    assert ctr["greedy"] > ctr["random"] > ctr["quality"]
    assert all(v["length"].min() >= 1 for v in out.values())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"slate_size": 21}, "`slate_size` \\(21\\) must not exceed `num_candidates` \\(20\\)"),
        ({"slate_size": 0}, "`slate_size` must be an int >= 1"),
        ({"num_topics": 1}, "`num_topics` must be an int >= 2"),
        ({"choice_model": "logit"}, "`choice_model` must be one of mnl, cascade"),
        ({"trashy_fraction": 1.0}, "`trashy_fraction` must lie in"),
    ],
)
def test_bad_settings_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        envs.make(ENV_ID, **kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"time_budget": -5.0}, "`time_budget` must be a finite number > 0"),
        ({"step_penalty": -1.0}, "`step_penalty` must be a finite number >= 0"),
        ({"interest_rate": 2.0}, "`interest_rate` must lie in"),
        ({"no_click_score": math.nan}, "`no_click_score` must be a finite number"),
    ],
)
def test_bad_params_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        R.InterestEvolutionParams(**kwargs)


def test_bad_slates_are_refused():
    env = envs.make(ENV_ID)
    _, state = env.reset(random.key(0))
    with pytest.raises(ValueError, match="`action` must be a slate"):
        env.step(random.key(1), state, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="`action` must be a slate"):
        env.step(random.key(1), state, torch.tensor([0.0, 1.0, 2.0]))
    assert Slate.of(5, 2).contains(torch.tensor([4, 0]))
    assert not Slate.of(5, 2).contains(torch.tensor([3, 3]))
    with pytest.raises(ValueError, match="slate size `k` must lie in"):
        Slate.of(3, 4)


def test_q_learning_agents_refuse_slates():
    from frl.algos import dqn, sac

    with pytest.raises(ValueError, match=r"Slate\(3 of 20\) actions, which need a ranking"):
        dqn.make_train(dqn.Config(env_id=ENV_ID))
    with pytest.raises(ValueError, match=r"sac needs Box actions"):
        sac.make_train(sac.Config(env_id=ENV_ID))


def test_ppo_learns_slates_that_beat_the_myopic_recommender():
    """PPO (Plackett-Luce over per-candidate scores, eager, reduced budget: 2 seeds x 49k steps)
    watches >= 2x greedy's watch time per session in its final evaluation (measured: 3x)."""
    from frl.algos import ppo

    torch.manual_seed(0)
    env = envs.make(ENV_ID)
    greedy = float(R.rollout_sessions(env, R.greedy_slate, random.key(5), 400)["watch_time"].mean())
    config = ppo.Config.preset(ENV_ID, total_timesteps=49_152)
    result = frl.run(ppo.make_train(config), seeds=2, compile=False, eval_episodes=20, progress=False)
    assert min(result.eval_returns) >= 2.0 * greedy, (result.eval_returns, greedy)


def test_log_sessions_records_propensities_and_discounted_returns():
    env = envs.make(ENV_ID, num_candidates=8, slate_size=2, num_topics=4)
    behaviour = R.softmax_greedy(0.5)
    logs = R.log_sessions(env, behaviour, random.key(3), 6, gamma=0.9)
    summary = R.rollout_sessions(env, behaviour, random.key(3), 6)  # the same sessions
    assert logs.batch_size == (int(summary["length"].sum()),)
    assert logs["observation"].shape[-1] == 32 and logs["action"].shape[-1] == 2
    assert bool((logs["action_log_prob"] < 0).all()) and bool(torch.isfinite(logs["action_log_prob"]).all())
    first = int(summary["length"][0])
    reward = logs["next", "reward"][:first]
    expected = [sum(0.9**j * float(r) for j, r in enumerate(reward[t:])) for t in range(first)]
    torch.testing.assert_close(logs["value_target"][:first], torch.tensor(expected), rtol=1e-5, atol=1e-4)
    assert float(reward.sum()) == pytest.approx(float(summary["watch_time"][0]), rel=1e-5)
    with pytest.raises(ValueError, match="`temperature` must be a number > 0"):
        R.softmax_greedy(0.0)
    with pytest.raises(ValueError, match="`sessions` must be a positive int"):
        R.log_sessions(env, behaviour, random.key(3), 0)


def test_learning_from_logged_feedback_beats_the_logger():
    """Off-policy REINFORCE with clipped importance weights on 500 sessions a stochastic greedy
    recommender logged, no online step: the learned slate policy watches longer than the logger
    (measured: 49.8 against 39.5 minutes per session)."""
    from frl.algos import ppo
    from frl.algos.logged import pretrain_from_logs

    env = envs.make(ENV_ID)
    behaviour = R.softmax_greedy(0.5)
    logs = R.log_sessions(env, behaviour, random.key(0), 500)
    train = ppo.make_train(ppo.Config.preset(ENV_ID))
    params, history = pretrain_from_logs(train, logs, key=random.key(1))
    assert history[-1]["policy_loss"] < history[0]["policy_loss"]
    assert 0 < history[-1]["importance_weight"] <= 10.0

    def learned(env, physics, p, key):
        return train.policy(params, env.observe(physics))

    watch = {
        name: float(R.rollout_sessions(env, policy, random.key(9), 400)["watch_time"].mean())
        for name, policy in (("learned", learned), ("logger", behaviour))
    }
    assert watch["learned"] >= 1.15 * watch["logger"], watch


def test_starting_from_starts_every_member_from_the_given_params():
    from frl.algos import ppo
    from frl.algos.logged import pretrain_from_logs, starting_from

    train = ppo.make_train(ppo.Config.preset(ENV_ID, total_timesteps=2048))
    params = train.init(random.key(42))["params"].apply(lambda x: x + 0.5)
    warm = starting_from(train, params)
    for seed in (0, 1):
        state = warm.init(random.key(seed))
        for name, value in params.items(include_nested=True, leaves_only=True):
            assert torch.equal(state["params", name], value)
    result = frl.run(warm, seeds=2, compile=False, progress=False, eval_episodes=2)
    assert result.state["params", "actor"].batch_size[0] == 2
    with pytest.raises(ValueError, match=r"params entry .* must be torch.float32"):
        starting_from(train, params.exclude(("actor", "0")))
    logs = R.log_sessions(envs.make(ENV_ID), R.softmax_greedy(), random.key(0), 2)
    with pytest.raises(ValueError, match="`logs` must be a TensorDict of batch \\[N\\] with"):
        pretrain_from_logs(train, logs.exclude("value_target"), key=random.key(0))
    with pytest.raises(ValueError, match="`max_importance_weight` must be a positive float"):
        pretrain_from_logs(train, logs, key=random.key(0), max_importance_weight=0.0)


def test_slate_value_decomposes_through_the_choice_model_by_hand():
    from frl.algos.slateq import slate_value, top_k_slate

    item_q = torch.tensor([[1.0, 4.0, 2.0, 8.0]])
    probs = torch.tensor([[0.5, 0.2]])
    slate = torch.tensor([[3, 0]])
    expected = 0.5 * 8.0 + 0.2 * 1.0 + 0.3 * 5.0
    torch.testing.assert_close(
        slate_value(item_q, torch.tensor([5.0]), probs, slate), torch.tensor([expected])
    )
    scores = torch.tensor([[0.0, 0.0, math.log(3.0), -10.0]])  # v (Qbar - 0.5) = 0.5, 3.5, 4.5, ~0
    assert top_k_slate(item_q, torch.tensor([0.5]), scores, 2).tolist() == [[2, 1]]
    # against a no-click value of 3, item 1 (4) adds more than item 2 (v 3, gain -1 x 3)
    assert top_k_slate(item_q, torch.tensor([3.0]), scores, 2).tolist() == [[1, 3]]


def test_slateq_loss_is_the_item_level_td_error_by_hand():
    """Written out per transition with the networks and the environment's choice model: a click
    regresses every shown item toward ``y`` weighted by the posterior that it was the clicked one,
    no click regresses the no-click value; ``y`` from the target params' top-k slate; no gradient
    reaches the target."""
    from frl.algos import slateq

    train = slateq.make_train(slateq.Config(num_envs=2, learning_starts=0, buffer_size=64, batch_size=4))
    env, parts = train.env, train.parts
    items, null, scores_of, choice = parts["items"], parts["null"], parts["scores_of"], parts["choice"]
    params = train.init(random.key(0))["params"]
    params["target"] = params["target"].apply(lambda x: x * 1.5)
    n = 16
    obs, state = env.reset(random.key(1), num_envs=n)
    slate = torch.topk(random.uniform(random.key(3), (n, 20)), 3, dim=-1).indices
    next_obs, _, reward, terminated, _, _ = env.step(random.key(2), state, slate)
    assert bool((reward > 0).any()) and bool((reward == 0).any())  # both kinds of step
    next_part = {"observation": next_obs, "reward": reward, "terminated": terminated}
    batch = TensorDict({"observation": obs, "action": slate, "next": next_part}, batch_size=[n])

    online, tgt = params["online"], params["target"]
    next_items, next_null = items.apply(tgt["items"], next_obs), null.apply(tgt["null"], next_obs)
    next_slate = slateq.top_k_slate(next_items, next_null, scores_of(next_obs), 3)
    next_q = slateq.slate_value(next_items, next_null, choice(scores_of(next_obs), next_slate), next_slate)
    y = reward + 0.9 * (~terminated).float() * next_q
    q_items, q_null, probs = (
        items.apply(online["items"], obs),
        null.apply(online["null"], obs),
        choice(scores_of(obs), slate),
    )
    terms = []
    for i in range(n):
        if reward[i] > 0:
            post = probs[i] / probs[i].sum()
            terms.append(sum(post[j] * (q_items[i, slate[i, j]] - y[i]) ** 2 for j in range(3)))
        else:
            terms.append((q_null[i] - y[i]) ** 2)
    expected = 0.5 * torch.stack(terms).mean()
    loss, metrics = parts["loss"](params, batch, gamma=torch.tensor(0.9))
    torch.testing.assert_close(loss, expected)
    grads = torch.func.grad(lambda p: parts["loss"](p, batch, gamma=torch.tensor(0.9))[0])(params)
    assert all(float(g.abs().max()) == 0 for g in grads["target"].values(True, True))
    assert float(metrics["td_error"]) > 0


def test_slateq_refuses_what_it_cannot_learn():
    from frl.algos import slateq

    with pytest.raises(ValueError, match="hides them: use RecSim-InterestEvolution-Observed-v0"):
        slateq.make_train(slateq.Config(env_id=ENV_ID))
    with pytest.raises(ValueError, match="slateq needs a recommender environment"):
        slateq.make_train(slateq.Config(env_id="CartPole-v1"))
    with pytest.raises(ValueError, match="not observable with latent interests"):
        envs.make(ENV_ID).observed_scores(torch.zeros(200), R.InterestEvolutionParams())
