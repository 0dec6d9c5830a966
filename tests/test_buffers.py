"""frl.buffers: ring semantics, prioritized sampling, n-step folding, TorchRL adapters, variants."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, TensorDictReplayBuffer
from torchrl.data.postprocs import MultiStep

import frl
from frl import buffers, random
from frl.losses import dqn_loss
from frl.nn import QNetwork
from tests.variants import Case, check, variant_params


def example(obs_dim: int = 3) -> TensorDict:
    flag = torch.zeros((), dtype=torch.bool)
    return TensorDict(
        {
            "observation": torch.zeros(obs_dim),
            "action": torch.zeros((), dtype=torch.int64),
            "next": {
                "observation": torch.zeros(obs_dim),
                "reward": torch.zeros(()),
                "terminated": flag,
                "truncated": flag.clone(),
                "done": flag.clone(),
            },
        },
        batch_size=[],
    )


def transitions(start: int, stop: int, obs_dim: int = 3, done_every: int = 0) -> TensorDict:
    """Transitions numbered ``start..stop-1``: observation ``i``, action ``i % 2``, reward ``i``."""
    i = torch.arange(start, stop)
    n = stop - start
    done = (i % done_every == done_every - 1) if done_every else torch.zeros(n, dtype=torch.bool)
    obs = i.float()[:, None].expand(n, obs_dim).clone()
    return TensorDict(
        {
            "observation": obs,
            "action": i % 2,
            "next": {
                "observation": obs + 1,
                "reward": i.float(),
                "terminated": done,
                "truncated": torch.zeros(n, dtype=torch.bool),
                "done": done.clone(),
            },
        },
        batch_size=[n],
    )


# -- the ring -----------------------------------------------------------------------------


def test_capacity_wrap_overwrites_oldest_and_keeps_order():
    state = buffers.init(example(), 5)
    state = buffers.add(state, transitions(0, 3))
    assert int(state["size"]) == 3 and int(state["position"]) == 3
    state = buffers.add(state, transitions(3, 7))
    assert int(state["size"]) == 5 and int(state["position"]) == 2
    # slots 0, 1 were overwritten by 5, 6
    assert state["data", "action"].tolist() == [1, 0, 0, 1, 0]
    assert state["data", "next", "reward"].tolist() == [5.0, 6.0, 2.0, 3.0, 4.0]
    assert buffers.stored(state)["next", "reward"].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]


def test_uniform_sampling_draws_only_stored_and_uniformly():
    state = buffers.add(buffers.init(example(), 100), transitions(0, 4))
    draw = buffers.sample(state, random.key(0), 40_000)
    counts = torch.bincount(draw["next", "reward"].long(), minlength=4).double()
    assert counts.shape == (4,)  # nothing beyond the 4 stored
    expected = 10_000.0
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 16.3  # chi-square, 3 dof, p = 0.001
    assert "_weight" not in draw and "index" not in draw


def test_prioritized_frequencies_match_priorities():
    alpha = 0.7
    state = buffers.init(example(), 8, prioritized=True, alpha=alpha, eps=0.0)
    state = buffers.add(state, transitions(0, 6))
    raw = torch.tensor([4.0, 0.5, 1.0, 2.0, 0.1, 3.0])
    state = buffers.update_priorities(state, torch.arange(6), raw)
    n = 200_000
    draw = buffers.sample(state, random.key(1), n)
    counts = torch.bincount(draw["index"], minlength=8).double()
    p = raw.double() ** alpha / (raw.double() ** alpha).sum()
    assert counts[6:].sum() == 0  # empty slots are never drawn
    sigma = torch.sqrt(n * p * (1 - p))
    assert torch.all((counts[:6] - n * p).abs() < 5 * sigma), (counts[:6] / n, p)


def test_importance_weights_follow_the_formula():
    alpha, beta = 0.6, 0.4
    state = buffers.init(example(), 4, prioritized=True, alpha=alpha, eps=1e-6)
    state = buffers.add(state, transitions(0, 4))
    raw = torch.tensor([1.0, 2.0, 5.0, 0.2])
    state = buffers.update_priorities(state, torch.arange(4), raw)
    draw = buffers.sample(state, random.key(2), 64, beta=beta)
    q = (raw.double() + 1e-6) ** alpha
    prob = q / q.sum()
    w = (4 * prob) ** -beta
    expected = (w / w.max())[draw["index"]].float()
    torch.testing.assert_close(draw["_weight"], expected, rtol=1e-5, atol=1e-6)
    # the rows come from the indexed slots
    assert torch.equal(draw["next", "reward"], draw["index"].float())


def test_new_transitions_get_the_largest_priority_seen():
    state = buffers.init(example(), 6, prioritized=True, alpha=1.0, eps=0.0)
    state = buffers.add(state, transitions(0, 2))
    assert state["priority"][:2].tolist() == [1.0, 1.0]
    state = buffers.update_priorities(state, torch.tensor([0, 1]), torch.tensor([7.0, 0.5]))
    state = buffers.add(state, transitions(2, 4))
    assert state["priority"][:4].tolist() == [7.0, 0.5, 7.0, 7.0]
    assert float(state["max_priority"]) == 7.0


def test_sampling_is_a_function_of_the_key():
    state = buffers.add(buffers.init(example(), 50, prioritized=True), transitions(0, 30))
    a = buffers.sample(state, random.key(3), 16)
    b = buffers.sample(state, random.key(3), 16)
    c = buffers.sample(state, random.key(4), 16)
    assert torch.equal(a["index"], b["index"]) and not torch.equal(a["index"], c["index"])


@pytest.mark.parametrize("prioritized", [False, True])
def test_add_in_place_equals_add_and_writes_into_the_ring(prioritized):
    pure = buffers.init(example(), 5, prioritized=prioritized)
    donated = buffers.init(example(), 5, prioritized=prioritized)
    ring = donated["data", "next", "observation"]
    for start, stop in [(0, 3), (3, 7), (7, 8)]:  # the second add wraps
        pure = buffers.add(pure, transitions(start, stop))
        before = donated
        donated = buffers.add_(donated, transitions(start, stop))
        # the old state's position and size are its own; its ring is shared (donated)
        assert int(before["position"]) != int(donated["position"])
        assert donated["data", "next", "observation"] is ring
    assert (pure == donated).all()
    assert buffers.stored(donated)["next", "reward"].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]


def test_add_in_place_under_vmap_writes_each_members_ring():
    states = torch.stack([buffers.init(example(), 6) for _ in range(3)])
    batches = torch.stack([transitions(10 * i, 10 * i + 4) for i in range(3)])
    ring = states["data", "observation"]
    out = torch.func.vmap(buffers.add_)(states, batches)
    assert out["data", "observation"].data_ptr() == ring.data_ptr()
    for i in range(3):
        assert buffers.stored(out[i])["next", "reward"].tolist() == [10.0 * i + j for j in range(4)]


def test_add_in_place_refuses_a_ring_shared_by_members():
    # constant zeros come out of vmap as one broadcast view: writing into it would give every
    # member the last member's transitions, silently
    states = torch.func.vmap(lambda k: buffers.init(example(), 6))(torch.arange(3))
    assert states["data", "observation"].stride(0) == 0
    batches = torch.stack([transitions(10 * i, 10 * i + 4) for i in range(3)])
    with pytest.raises(ValueError, match=r"'observation'.*shared between members"):
        torch.func.vmap(buffers.add_)(states, batches)
    # allocated `like` a per-member tensor, each member owns its ring
    owned = torch.func.vmap(lambda k: buffers.init(example(), 6, prioritized=True, like=k))(torch.arange(3))
    assert owned["data", "observation"].stride(0) != 0 and owned["priority"].stride(0) != 0
    out = torch.func.vmap(buffers.add_)(owned, batches)
    for i in range(3):
        assert buffers.stored(out[i])["next", "reward"].tolist() == [10.0 * i + j for j in range(4)]


@pytest.mark.compile
def test_add_in_place_compiled_keeps_the_write_in_place():
    add = frl.compile(torch.func.vmap(buffers.add_))
    states = torch.stack([buffers.init(example(), 6) for _ in range(2)])
    ring = states["data", "observation"]
    for start in (0, 4):  # the second call wraps
        batches = torch.stack([transitions(start + 10 * i, start + 10 * i + 4) for i in range(2)])
        states = add(states, batches)
        assert states["data", "observation"].data_ptr() == ring.data_ptr()
    assert buffers.stored(states[1])["next", "reward"].tolist() == [12.0, 13.0, 14.0, 15.0, 16.0, 17.0]


def _filled(capacity: int, upto: int) -> TensorDict:
    state = buffers.init(example(), capacity)
    return buffers.add_(state, transitions(0, upto)) if upto else state


@pytest.mark.parametrize("before", [0, 3, 9])  # empty; part full; the staged adds wrap the ring
def test_a_staged_buffer_samples_and_commits_what_adding_in_place_gives(before):
    direct, staged = _filled(10, before), buffers.stage(_filled(10, before), 6)
    ring = staged["data", "observation"]
    for i, (start, stop) in enumerate([(100, 102), (102, 104), (104, 106)]):
        direct = buffers.add_(direct, transitions(start, stop))
        staged = buffers.add_(staged, transitions(start, stop))
        assert int(staged["staged_count"]) == 2 * (i + 1)
        assert staged["data", "observation"] is ring  # the ring is only read until the commit
        for k in range(3):  # every draw reads the transition the ring would hold
            a, b = buffers.sample(direct, random.key(k), 64), buffers.sample(staged, random.key(k), 64)
            assert (a == b).all()
    committed = buffers.commit_(staged)
    assert not buffers.is_staged(committed) and committed["data", "observation"] is ring
    assert (committed == direct).all()
    assert buffers.stored(committed)["next", "reward"].tolist()[-6:] == [100.0 + j for j in range(6)]


def test_a_partly_filled_staging_area_commits_only_what_was_staged():
    staged = buffers.add_(buffers.stage(_filled(8, 5), 4), transitions(50, 52))
    committed = buffers.commit_(staged)
    assert (committed == buffers.add_(_filled(8, 5), transitions(50, 52))).all()
    assert committed["data", "next", "reward"].tolist() == [0, 1, 2, 3, 4, 50, 51, 0]


def test_a_staged_buffer_under_vmap_keeps_each_members_transitions():
    states = torch.stack(
        [buffers.add_(buffers.init(example(), 6), transitions(10 * i, 10 * i + 5)) for i in range(3)]
    )
    batches = torch.stack([transitions(10 * i + 5, 10 * i + 8) for i in range(3)])

    def staged_round(state, batch):
        state = buffers.add_(buffers.stage(state, 3), batch)
        return buffers.sample(state, random.key(0), 32), buffers.commit_(state)

    drawn, out = torch.func.vmap(staged_round)(states, batches)
    for i in range(3):
        want = list(range(10 * i + 2, 10 * i + 8))  # the ring wrapped: the oldest two went
        assert buffers.stored(out[i])["next", "reward"].tolist() == want
        assert set(drawn[i]["next", "reward"].tolist()) <= set(want)


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda: buffers.stage(buffers.init(example(), 4, prioritized=True), 2), "prioritized"),
        (
            lambda: buffers.stage(buffers.init(example(), 4), 5),
            r"`slots` must be an int in \[1, capacity=4\]",
        ),
        (lambda: buffers.stage(buffers.init(example(), 4), 0), "`slots`"),
        (lambda: buffers.stage(buffers.stage(buffers.init(example(), 4), 2), 2), "staged already"),
        (lambda: buffers.commit_(buffers.init(example(), 4)), "no staging area"),
    ],
)
def test_staging_refuses_what_it_cannot_do(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda s: buffers.add(s, transitions(0, 11)), "at most 10"),
        (lambda s: buffers.add_(s, transitions(0, 2, obs_dim=4)), r"add_: `batch\['observation'\]`"),
        (lambda s: buffers.add(s, transitions(0, 2, obs_dim=4)), r"observation.*\[B, 3\]"),
        (lambda s: buffers.add(s, transitions(0, 2).exclude("action")), r"missing \['action'\]"),
        (lambda s: buffers.sample(s, random.key(0), 0), "batch_size"),
        (lambda s: buffers.update_priorities(s, torch.arange(2), torch.ones(2)), "prioritized=False"),
    ],
)
def test_bad_input_names_the_field(bad, match):
    state = buffers.init(example(), 10)
    with pytest.raises(ValueError, match=match):
        bad(state)


def test_init_rejects_bad_arguments():
    with pytest.raises(ValueError, match="capacity"):
        buffers.init(example(), 0)
    with pytest.raises(ValueError, match="one transition"):
        buffers.init(transitions(0, 2), 4)
    with pytest.raises(ValueError, match="alpha"):
        buffers.init(example(), 4, prioritized=True, alpha=-1.0)


# -- n-step --------------------------------------------------------------------------------


def _nstep_by_hand(seg: TensorDict, n: int, gamma: float) -> tuple[list[float], list[int], list[float]]:
    reward = seg["next", "reward"].tolist()
    done = seg["next", "done"].tolist()
    nxt = seg["next", "observation"][:, 0].tolist()
    T = len(reward)
    out_r, out_m, out_obs = [], [], []
    for t in range(T):
        total, m = 0.0, 0
        for k in range(n):
            if t + k >= T:
                break
            total += gamma**k * reward[t + k]
            m += 1
            if done[t + k]:
                break
        out_r.append(total)
        out_m.append(m)
        out_obs.append(nxt[t + m - 1])
    return out_r, out_m, out_obs


@pytest.mark.parametrize("n", [1, 3, 5])
def test_nstep_matches_a_hand_loop(n):
    seg = transitions(0, 12, done_every=4)
    out = buffers.nstep(seg, n, 0.9)
    r, m, obs = _nstep_by_hand(seg, n, 0.9)
    torch.testing.assert_close(out["next", "reward"], torch.tensor(r))
    assert out["steps_to_next_obs"].tolist() == m
    assert out["next", "observation"][:, 0].tolist() == obs
    # flags come from the last folded step: an episode end is never crossed
    assert out["next", "done"].tolist() == [bool(seg["next", "done"][t + k - 1]) for t, k in enumerate(m)]


def test_nstep_matches_torchrl_multistep():
    """Same rewards, next observations and step counts as TorchRL's MultiStep on a [B, T] batch."""
    gamma, n = 0.95, 3
    segs = torch.stack([transitions(0, 10, done_every=4), transitions(20, 30, done_every=6)])
    ours = buffers.nstep(segs, n, gamma)
    trl = segs.clone()
    for key in ("reward", "done", "terminated", "truncated"):
        trl["next", key] = trl["next", key].unsqueeze(-1)
    theirs = MultiStep(gamma=gamma, n_steps=n)(trl)
    torch.testing.assert_close(ours["next", "reward"], theirs["next", "reward"].squeeze(-1))
    torch.testing.assert_close(ours["next", "observation"], theirs["next", "observation"])
    assert torch.equal(ours["steps_to_next_obs"], theirs["steps_to_next_obs"].squeeze(-1).long())


def test_nstep_rejects_bad_input():
    with pytest.raises(ValueError, match="`n`"):
        buffers.nstep(transitions(0, 4), 0, 0.9)
    with pytest.raises(ValueError, match=r"next\.done"):
        buffers.nstep(transitions(0, 4).exclude(("next", "done")), 2, 0.9)


# -- TorchRL adapters ------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["tensor", "memmap"])
@pytest.mark.parametrize("prioritized", [False, True])
def test_torchrl_round_trip(storage, prioritized, tmp_path):
    state = buffers.init(example(), 6, prioritized=prioritized, alpha=0.5)
    state = buffers.add(state, transitions(0, 4))
    state = buffers.add(state, transitions(4, 9))  # wraps: holds 3..8, oldest at slot 3
    if prioritized:
        state = buffers.update_priorities(state, torch.tensor([0, 4]), torch.tensor([3.0, 0.25]))
    rb = buffers.to_torchrl(state, storage=storage, scratch_dir=tmp_path / "rb", batch_size=4)
    assert isinstance(rb.storage, LazyMemmapStorage if storage == "memmap" else LazyTensorStorage)
    assert len(rb) == 6
    back = buffers.from_torchrl(rb)
    assert buffers.is_prioritized(back) == prioritized
    a, b = buffers.stored(state), buffers.stored(back)
    assert a["next", "reward"].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    for key in a.keys(include_nested=True, leaves_only=True):
        torch.testing.assert_close(b[key], a[key], msg=str(key))
    if prioritized:
        assert float(back["max_priority"]) == float(state["max_priority"]) == 3.0


def test_from_torchrl_reads_a_wrapped_torchrl_buffer_in_insertion_order():
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(4), batch_size=2)
    batch = transitions(0, 7)
    for key in ("reward", "done", "terminated", "truncated"):
        batch["next", key] = batch["next", key].unsqueeze(-1)  # TorchRL's [B, 1]
    rb.extend(batch)
    state = buffers.from_torchrl(rb)
    assert buffers.stored(state)["next", "reward"].tolist() == [3.0, 4.0, 5.0, 6.0]
    assert state["data", "next", "reward"].shape == (4,)
    assert "index" not in state["data"]


def test_either_buffer_feeds_the_same_loss():
    """A TorchRL sample (through torchrl_batch) and a pure sample give dqn_loss the same batch layout."""
    q = QNetwork(3, 2, hidden=(8,))
    online = q.init(random.key(0))
    params = TensorDict({"online": online, "target": online.clone()}, batch_size=[])
    state = buffers.add(buffers.init(example(), 16, prioritized=True), transitions(0, 16))
    rb = buffers.to_torchrl(state, batch_size=8)
    ours = buffers.sample(state, random.key(5), 8)
    theirs = buffers.torchrl_batch(rb.sample())
    assert set(ours.keys(include_nested=True)) == set(theirs.keys(include_nested=True))
    for batch in (ours, theirs):
        loss, _metrics = dqn_loss(params["online"], params["target"], batch, q_apply=q.apply, gamma=0.99)
        assert math.isfinite(float(loss))
    # every index TorchRL drew points at the row it returned
    assert torch.equal(theirs["next", "reward"], theirs["index"].float())


def test_proportional_sampler_matches_priorities_in_torchrl():
    sampler = buffers.ProportionalSampler(4, alpha=1.0, beta=0.5, eps=0.0)
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(4), sampler=sampler, batch_size=50_000)
    index = rb.extend(transitions(0, 4))
    rb.update_priority(index, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    draw = rb.sample()
    freq = torch.bincount(draw["index"], minlength=4).double() / 50_000
    torch.testing.assert_close(
        freq, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64), atol=0.01, rtol=0
    )
    w = draw["priority_weight"][draw["index"] == 3][0]
    torch.testing.assert_close(float(w), (4.0 / 1.0) ** -0.5)


# -- the four variants -------------------------------------------------------------------------


def _add_sample(prioritized: bool, add=buffers.add):
    def fn(state, batch, key):
        state = add(state, batch)
        if prioritized:
            draw = buffers.sample(state, key, 4, beta=0.5)
            state = buffers.update_priorities(state, draw["index"], draw["next", "reward"] + 1.0)
        else:
            draw = buffers.sample(state, key, 4)
        return state, draw

    return fn


def _args(prioritized: bool):
    def make(i: int):
        state = buffers.init(example(), 8, prioritized=prioritized)
        state = buffers.add(state, transitions(10 * i, 10 * i + 5))
        return state, transitions(100 + i, 104 + i), random.key(i)

    return make


CASES = [
    Case("add_sample_uniform", _add_sample(False), _args(False)),
    Case("add_sample_prioritized", _add_sample(True), _args(True)),
    Case("add_in_place_sample_prioritized", _add_sample(True, buffers.add_), _args(True)),
    Case(
        "nstep",
        lambda seg, gamma: buffers.nstep(seg, 3, gamma),
        lambda i: (transitions(i, i + 9, done_every=4), torch.tensor(0.9 - 0.1 * i)),
    ),
]


@pytest.mark.parametrize("case,variant", variant_params(CASES))
def test_variants(case, variant):
    check(case, variant)
