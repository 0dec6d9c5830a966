"""frl.algos.qmix (VDN and QMIX agents): the replay in TorchRL's group layout, legal exploration,
targets that move only on schedule, what each variant learns (mixer or not), seeds in a vmapped
batch equal seeds alone, bad input."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest
import torch

from frl import buffers, random
from frl.algos import qmix
from frl.envs.micro_combat import MicroCombat

SMALL = dict(
    total_timesteps=2_000,
    num_envs=4,
    buffer_size=512,
    batch_size=32,
    learning_starts=64,
    target_network_frequency=8,
    hidden=(16,),
    embed_dim=8,
    hypernet_hidden=8,
)


def run(train, state, iterations):
    for _ in range(iterations):
        state, metrics = train.step(state)
    return state, metrics


def test_replay_holds_group_transitions_with_legal_actions():
    train = qmix.make_train(qmix.Config(**SMALL))
    state, _ = run(train, train.init(random.key(0)), 30)
    storage = state["data", "data"]
    size = int(state["data", "size"])
    assert size == 30 * 4
    env = train.env
    assert storage["agents", "observation"].shape == (512, env.n_agents, env.obs_dim)
    assert storage["next", "state"].shape == (512, env.state_dim) and storage["next", "reward"].shape == (
        512,
    )
    mask, action = storage["agents", "action_mask"][:size], storage["agents", "action"][:size]
    assert bool(torch.gather(mask, -1, action.unsqueeze(-1)).all()), "an exploring agent sent a masked action"


def test_targets_move_on_schedule_and_the_mixer_learns_with_the_agents():
    train = qmix.make_train(qmix.Config(**SMALL))
    state, _ = run(train, train.init(random.key(1)), 16)  # 64 steps: learning starts
    assert int(state["counters", "updates"]) == 1
    before = state["params"].clone()
    state, _ = run(train, state, 1)  # update 2: not a multiple of the period (8 // 1 = 8 updates)
    assert torch.equal(
        state["params", "target", "mixer", "v", "0", "weight"], before["target", "mixer", "v", "0", "weight"]
    )
    assert not torch.equal(
        state["params", "online", "mixer", "v", "0", "weight"], before["online", "mixer", "v", "0", "weight"]
    )
    assert not torch.equal(
        state["params", "online", "agent", "0", "weight"], before["online", "agent", "0", "weight"]
    )
    state, _ = run(train, state, 6)  # update 8: the targets copy the online networks (tau = 1)
    assert int(state["counters", "updates"]) == 8
    torch.testing.assert_close(state["params", "target"], state["params", "online"])


def test_a_fixed_batch_is_fitted():
    """Gradient steps on one replayed batch shrink its TD error (the loss reaches every network)."""
    for config in (qmix.Config(**SMALL), qmix.VDNConfig(**SMALL)):
        train = qmix.make_train(config)
        state, _ = run(train, train.init(random.key(2)), 40)
        batch = buffers.sample(state["data"], random.key(3), 64)
        loss = train.parts["loss"]
        params = state["params"]
        start = float(loss(params, batch, gamma=0.0)[0])
        online = params["online"].apply(lambda x: x.detach().requires_grad_())
        opt = torch.optim.Adam(list(online.values(True, True)), lr=1e-2)
        for _ in range(200):
            opt.zero_grad()
            value, _ = loss(params.set("online", online), batch, gamma=0.0)
            value.backward()
            opt.step()
        assert float(value.detach()) < 0.05 * start, (config.agent, start, float(value.detach()))


def test_vdn_has_no_mixer_and_qmix_refuses_an_environment_without_state():
    vdn = qmix.make_train_vdn(qmix.VDNConfig(**SMALL))
    assert set(vdn.init(random.key(0))["params", "online"].keys()) == {"agent"}

    @dataclasses.dataclass(frozen=True)
    class Stateless(MicroCombat):
        has_state: ClassVar[bool] = False

    with pytest.raises(ValueError, match="qmix: the mixer reads a global state"):
        qmix.make_train(qmix.Config(**SMALL), Stateless())
    with pytest.raises(TypeError, match="vdn Config"):
        qmix.make_train_vdn(qmix.Config(**SMALL))
    with pytest.raises(ValueError, match="multi-agent algorithm; CartPole-v1"):
        qmix.make_train(qmix.Config(env_id="CartPole-v1"))


def test_a_seed_in_a_vmapped_batch_equals_the_seed_alone():
    train = qmix.make_train(qmix.VDNConfig(**{**SMALL, "learning_starts": 8}))

    def two_steps(key):
        state = train.init(key)
        state, _ = train.step(state)
        return train.step(state)[0]

    keys = random.split(random.key(4), 2)
    batched = torch.func.vmap(two_steps, randomness="error")(keys)
    for i in range(2):
        alone = two_steps(keys[i])
        torch.testing.assert_close(batched["params"][i], alone["params"], rtol=1e-5, atol=1e-6)
