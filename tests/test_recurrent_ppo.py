"""Recurrent PPO (frl.algos.recurrent_ppo) and the memory tasks (frl.envs.memory): the carries
collection stores and resets, the update replaying the behaviour policy exactly, next values that
continue the history, the loss's four variants, a reduced learning test, and bad input."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

import frl
from frl import envs, losses, random
from frl.algos import recurrent_ppo
from frl.distributions import Categorical
from tests.variants import Case, check, variant_params


def _train(env_id: str = "MemoryLength-4-v0", **settings):
    base = dict(num_envs=4, num_steps=16, num_minibatches=2, update_epochs=2, hidden=(8,), memory_size=6)
    return recurrent_ppo.make_train(recurrent_ppo.Config(env_id=env_id, **{**base, **settings}))


def _collected(train, seed: int = 0):
    state = train.init(random.key(seed))
    unit = train.collect[0]
    for _ in range(unit.repeats * 2):  # two segments: the second starts from carried memory
        state, _ = unit.fn(state)
    return state


def test_memory_length_hides_the_context_after_the_first_step():
    env = envs.make("MemoryLength-5-v0")
    assert env.id == "MemoryLength-5-v0" and envs.make("MemoryLength-v0").length == 10
    obs, state = env.reset(random.key(3), num_envs=64)
    bits = state["physics"][:, 1]
    assert torch.equal(obs[:, 1], (2 * bits - 1).float()) and 0 < int(bits.sum()) < 64
    total = torch.zeros(64)
    for t in range(5):
        obs, state, reward, terminated, _, _ = env.step(random.key(t), state, bits)  # the right answer
        total += reward
        if t < 4:  # no trace of the context: both contexts observe the same thing
            assert torch.all(obs[:, 1] == 0) and torch.allclose(obs[:, 0], torch.full((64,), 1 - (t + 1) / 5))
    assert torch.all(terminated) and torch.all(total == 1.0)
    _, _, wrong, _, _, _ = env.step(random.key(9), env.reset(random.key(3), num_envs=64)[1], 1 - bits)
    assert torch.all(wrong == 0)  # only the last step pays
    no_vel = envs.make("CartPoleNoVelocity-v1")
    obs, state = no_vel.reset(random.key(0))
    assert torch.equal(obs, state["physics"][[0, 2]])


def test_collection_stores_the_carries_each_step_was_taken_from_zeroed_at_episode_starts():
    train = _train()
    state = _collected(train)
    seg = state["data"]
    starts = seg["is_init"]
    # MemoryLength-4: an episode starts every 4 steps, and the very first step of the run
    assert torch.equal(starts[:, 0::4], torch.ones(4, 4, dtype=torch.bool)) and int(starts.sum()) == 16
    for name in ("actor", "critic"):
        carries = seg["recurrent_state", name]
        assert torch.all(carries[starts] == 0) and bool((carries[~starts].abs() > 0).any())
    # the memory after the segment is the actor's carry after its last step
    actor = train.parts["actor"]
    _, replayed = actor.sequence(
        state["params", "actor"], seg["observation"], seg["recurrent_state", "actor"][:, 0], starts
    )
    torch.testing.assert_close(state["env", "memory", "actor"], replayed[:, -1])


@pytest.mark.parametrize("bptt_len", [0, 4, 8])
def test_the_first_update_replays_the_behaviour_policy_exactly(bptt_len):
    """Every sequence replayed from its stored carries gives the log-probabilities collection
    stored (ratio 1): a cut at any ``bptt_len`` loses no reset."""
    train = _train("CartPoleNoVelocity-v1", bptt_len=bptt_len, num_steps=16)
    state = _collected(train, seed=1)
    state, _ = train.learn[0].fn(state)
    config, seg = train.config, state["data"]
    L = config.sequence_length
    sequences = seg.select("observation", "action", "action_log_prob", "is_init", "recurrent_state").reshape(
        -1, L
    )
    actor, dist = train.parts["actor"], train.parts["dist"]
    logits, _ = actor.sequence(
        state["params", "actor"],
        sequences["observation"],
        sequences["recurrent_state", "actor"][:, 0],
        sequences["is_init"],
    )
    torch.testing.assert_close(
        dist.log_prob(logits, sequences["action"]), sequences["action_log_prob"], rtol=1e-5, atol=1e-6
    )
    _, metrics = train.learn[1].fn(state)
    assert abs(float(metrics["approx_kl"])) < 1e-6 and float(metrics["clip_fraction"]) == 0.0


def test_next_values_continue_the_history_and_bootstrap_only_truncations():
    train = _train("CartPoleNoVelocity-v1", num_steps=16)
    state = _collected(train, seed=2)
    state, _ = train.learn[0].fn(state)
    seg, critic = state["data"], train.parts["critic"]
    p = state["params", "critic"]
    value, carries = critic.sequence(
        p, seg["observation"], seg["recurrent_state", "critic"][:, 0], seg["is_init"]
    )
    next_value, _ = critic.step(p, seg["next", "observation"], carries)
    inside = ~seg["next", "done"][:, :-1]  # the next observation is the next step's
    torch.testing.assert_close(next_value[:, :-1][inside], value[:, 1:][inside], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(seg["state_value"], value)
    gamma, lmbda = train.config.gamma, train.config.gae_lambda
    expected, _ = frl.returns.gae(
        seg["next", "reward"],
        value,
        next_value,
        seg["next", "terminated"],
        seg["next", "done"],
        gamma=gamma,
        lmbda=lmbda,
    )
    torch.testing.assert_close(seg["advantage"], expected, rtol=1e-5, atol=1e-6)


def test_recurrent_ppo_learns_memory_length_where_the_context_is_gone():
    config = recurrent_ppo.Config.preset("MemoryLength-5-v0", total_timesteps=24_576)
    result = frl.run(
        recurrent_ppo.make_train(config), seeds=1, compile=False, progress=False, eval_episodes=64
    )
    assert min(result.eval_returns) > 0.9, result.eval_returns  # a feed-forward policy returns 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(bptt_len=5), r"`bptt_len` \(5\) must divide `num_steps` \(16\)"),
        (
            dict(bptt_len=8, num_minibatches=16),
            r"`num_minibatches` \(16\) must divide the number of sequences",
        ),
        (dict(cell="rnn"), r"`cell` must be one of \['gru', 'lstm'\], got 'rnn'"),
    ],
)
def test_settings_that_would_cut_sequences_inconsistently_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        _train(**settings)


def test_environments_it_cannot_carry_memory_through_are_refused():
    with pytest.raises(ValueError, match="recurrent_ppo: takes vector observations; Breakout-MinAtar"):
        _train("Breakout-MinAtar")
    with pytest.raises(
        ValueError, match="recurrent_ppo is a single-agent algorithm; MicroCombat-3m-v0 is a multi-agent"
    ):
        _train("MicroCombat-3m-v0")


def _loss_case() -> Case:
    actor = frl.nn.RecurrentNetwork(3, 2, hidden=(4,), memory_size=3, cell="lstm")
    critic = frl.nn.RecurrentNetwork(3, 1, hidden=(4,), memory_size=3, squeeze=True)

    def make_args(i: int):
        g = torch.Generator().manual_seed(i)
        B, L = 2, 5
        batch = TensorDict(
            {
                "observation": torch.randn(B, L, 3, generator=g),
                "action": torch.randint(0, 2, (B, L), generator=g),
                "action_log_prob": -torch.rand(B, L, generator=g),
                "advantage": torch.randn(B, L, generator=g),
                "value_target": torch.randn(B, L, generator=g),
                "state_value": torch.randn(B, L, generator=g),
                "is_init": torch.rand(B, L, generator=g) < 0.3,
                "recurrent_state": {
                    "actor": torch.randn(B, L, actor.state_size, generator=g),
                    "critic": torch.randn(B, L, critic.state_size, generator=g),
                },
            },
            batch_size=[B, L],
        )
        return actor.init(random.key(i)), critic.init(random.key(100 + i)), batch

    def fn(actor_params, critic_params, batch):
        loss, metrics = losses.recurrent_ppo_loss(
            actor_params,
            critic_params,
            batch,
            policy_apply=lambda p, o, c, s: actor.sequence(p, o, c, s)[0],
            value_apply=lambda p, o, c, s: critic.sequence(p, o, c, s)[0],
            dist=Categorical(),
            value_clip_eps=0.2,
            entropy_coef=0.01,
        )
        return loss, metrics["approx_kl"]

    return Case("recurrent_ppo_loss", fn, make_args, grad_argnums=(0, 1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case, variant", variant_params([_loss_case()]))
def test_loss_variants(case, variant):
    check(case, variant)


def test_the_loss_names_a_batch_that_is_not_sequences():
    case = _loss_case()
    actor_params, critic_params, batch = case.make_args(0)
    with pytest.raises(ValueError, match=r"recurrent_ppo_loss: `batch` must hold sequences \[B, L\]"):
        case.fn(actor_params, critic_params, batch.reshape(-1))
