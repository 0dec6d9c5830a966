"""frl.algos.spec: every agent's state follows the written spec, and a state that breaks it gets an
error naming the entry."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tensordict import TensorDict

from frl import random
from frl.algos import AGENTS, Segments, a2c, check_state, dqn, ppo
from frl.algos.spec import REQUIRED, TRANSITION_KEYS, episode_step

SMALL = {
    "a2c": dict(hidden=(8,), total_timesteps=400),
    "dqn": dict(hidden=(8,), buffer_size=64, total_timesteps=640),
    "ppo": dict(hidden=(8,), num_envs=2, num_steps=16, total_timesteps=64),
    "ppo_icm": dict(
        hidden=(8,), num_envs=2, num_steps=16, total_timesteps=64, icm_hidden=(8,), icm_features=4
    ),
    "ppo_rnd": dict(
        hidden=(8,), num_envs=2, num_steps=16, total_timesteps=64, rnd_hidden=(8,), rnd_features=4
    ),
    "recurrent_ppo": dict(
        hidden=(8,), memory_size=4, num_envs=2, num_steps=16, num_minibatches=2, total_timesteps=64
    ),
    "reinforce": dict(hidden=(8,), num_envs=2, num_steps=16, total_timesteps=64),
    "sac": dict(hidden=(8,), buffer_size=64),
    "slateq": dict(hidden=(8,), buffer_size=64, learning_starts=0, total_timesteps=640),
    "tabular": dict(num_envs=2),
    "ippo": dict(hidden=(8,), num_envs=2, num_steps=16, rollout_chunk=8, total_timesteps=64),
    "mappo": dict(hidden=(8,), num_envs=2, num_steps=16, rollout_chunk=8, total_timesteps=64),
    "qmix": dict(hidden=(8,), buffer_size=64, learning_starts=0, total_timesteps=640, embed_dim=4),
    "vdn": dict(hidden=(8,), buffer_size=64, learning_starts=0, total_timesteps=640),
}
MULTI_AGENT_KEYS = (
    ("agents", "observation"),
    ("agents", "action_mask"),
    ("agents", "action"),
    "state",
    ("next", "agents", "observation"),
    ("next", "state"),
    *TRANSITION_KEYS[3:],
)
"""TorchRL's group layout (a multi-agent environment's transitions; the team's reward and flags)."""


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_every_agent_state_follows_the_spec(name):
    train = AGENTS[name].make_train(AGENTS[name].config(**SMALL[name]))
    state = train.init(random.key(0))  # init checks it
    assert set(REQUIRED) <= set(state.keys()) <= {*REQUIRED, "scratch"}
    assert set(state["hyperparams"].keys()) == set(train.config.hyperparam_names())
    for value in state["hyperparams"].values():
        assert value.dtype == torch.float64 and value.shape == ()
    transitions = state["data"] if train.consumes.kind == "segments" else state["data", "data"]
    multi = getattr(train.config, "multi_agent", False)
    for key in MULTI_AGENT_KEYS if multi else TRANSITION_KEYS:
        assert key in transitions.keys(include_nested=True), key
    if train.consumes.kind == "segments":  # time last: [E, T]
        assert state["data"].batch_size == (train.consumes.num_envs, train.consumes.num_steps)
    stepped, _ = train.step(state)
    train.check(stepped)  # one iteration keeps it


def _ppo():
    return ppo.make_train(ppo.Config(**SMALL["ppo"]))


def _broken(edit):
    train = _ppo()
    state = train.init(random.key(0))
    edit(state)
    return train, state


def _set(key, value):
    return lambda s: s.set(key, value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.del_("counters"), "`counters` is missing"),
        (lambda s: s.del_(("episodes", "count")), "`episodes` must hold exactly"),
        (_set("trajectory", torch.zeros(3)), "`trajectory` is not part of the spec"),
        (_set(("hyperparams", "gamma"), torch.tensor(0.99)), "`hyperparams.gamma` must be torch.float64"),
        (
            _set(("hyperparams", "gamma"), torch.full((3,), 0.99, dtype=torch.float64)),
            "`hyperparams.gamma` must have shape []",
        ),
        (
            _set(("hyperparams", "epsilon"), torch.tensor(0.1, dtype=torch.float64)),
            "`hyperparams.epsilon` is not a hyper-parameter",
        ),
        (lambda s: s.del_(("hyperparams", "clip_coef")), "`hyperparams.clip_coef` is missing"),
        (_set(("counters", "env_steps"), torch.tensor(0.0)), "`counters.env_steps` must be torch.int64"),
        (_set("key", torch.zeros(3, dtype=torch.int64)), "`key` must have shape [2]"),
        (_set(("env", "observation"), torch.zeros(3, 4)), "`env.observation` must have shape [2, 4]"),
        (
            _set(("params", "actor", "0", "weight"), torch.zeros(8, 4, dtype=torch.int64)),
            "`params.actor.0.weight` must be floating",
        ),
        (
            lambda s: s.set("data", s["data"].transpose(0, 1).contiguous()),
            "`data` must be a segment with batch_size [2, 16]",
        ),
        (
            lambda s: s.set(("data", "next", "done"), torch.zeros(2, 16)),
            "`data.next.done` must be one bool per step",
        ),
        (lambda s: s.del_(("data", "action_log_prob")), "`data.action_log_prob` is missing"),
    ],
)
def test_a_state_that_breaks_the_spec_names_the_entry(edit, message):
    train, state = _broken(edit)
    with pytest.raises(
        ValueError, match="training state: " + message.replace("[", r"\[").replace("]", r"\]")
    ):
        train.check(state)


def test_an_agent_whose_init_breaks_the_spec_fails_at_init():
    train = a2c.make_train(a2c.Config(**SMALL["a2c"]))

    def build(key, hyperparams):
        state = train.build(key, hyperparams)
        return state.exclude(("counters", "env_steps"))

    broken = dataclasses.replace(train, build=build)
    with pytest.raises(ValueError, match=r"training state: `counters\.env_steps` is missing"):
        broken.init(random.key(0))


def test_a_replay_buffer_of_the_wrong_capacity_is_named():
    train = dqn.make_train(dqn.Config(**SMALL["dqn"]))
    state = train.init(random.key(0))
    state["data", "data"] = state["data", "data"][:10]
    with pytest.raises(ValueError, match=r"`data.data` must hold 64 transitions"):
        train.check(state)


def test_check_state_is_usable_on_its_own():
    """A user's own agent checks its state against the spec without a Train."""
    consumes = Segments(num_envs=2, num_steps=16, chunk=16)
    state = _ppo().init(random.key(1))
    check_state(
        state,
        consumes=dataclasses.replace(consumes, extra=("state_value", "advantage", "value_target")),
        observation_shape=(4,),
        hyperparam_names=ppo.Config.hyperparam_names(),
    )
    with pytest.raises(ValueError, match="must be a TensorDict"):
        check_state({"params": {}}, consumes=consumes, observation_shape=(4,), hyperparam_names=())
    with pytest.raises(ValueError, match=r"one member's state has batch_size \[\]"):
        check_state(
            TensorDict({}, batch_size=[3]), consumes=consumes, observation_shape=(4,), hyperparam_names=()
        )


def test_episode_step_moves_ended_episodes_and_is_the_same_eagerly_and_traced():
    """Known values over three steps of three environments; eagerly (where a step with no episode
    ended skips the moves) and under vmap (every move traced) the results are equal."""

    def counters(ret, length, last_return, last_length, count) -> dict[str, torch.Tensor]:
        keys = ("return", "length", "last_return", "last_length", "count")
        values = (ret, length, last_return, last_length, count)
        return {k: torch.tensor(v) for k, v in zip(keys, values, strict=True)}

    episodes = counters([1.0, 2.0, 0.5], [1, 2, 3], [9.0, 8.0, 7.0], [9, 8, 7], 4)
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.5, 2.0, 1.0], [1.0, 1.0, 1.0]])
    dones = torch.tensor([[False, False, False], [False, True, False], [True, True, False]])

    def three_steps(eps, rewards, dones):
        for reward, done in zip(rewards, dones, strict=True):
            eps = episode_step(eps, reward, done)
        return eps

    eager = three_steps(episodes, rewards, dones)
    expected = counters([0.0, 0.0, 3.5], [0, 0, 6], [3.5, 1.0, 7.0], [4, 1, 7], 7)
    traced = torch.func.vmap(three_steps, in_dims=(None, None, 0))(episodes, rewards, dones[None])
    for k, want in expected.items():
        assert torch.equal(eager[k], want), k
        assert torch.equal(traced[k][0], want), k
