"""Warm starts (frl.driver.warm): a rerun with other hyper-parameter values loads the saved
compilation instead of tracing, and trains exactly as a fresh compile of those values would."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils import _pytree as pytree

import frl
from frl.algos import ppo
from frl.driver import warm
from frl.driver.members import init_states, members_of
from frl.driver.warm import run_key

CONFIG = dict(num_envs=2, num_steps=32, num_minibatches=2, update_epochs=2, total_timesteps=256)

SCRIPT = """
import sys, torch, frl
from frl.algos import ppo
from frl.driver.helper import CompileHelper
torch.set_num_threads(1)
config = ppo.Config(**{config!r}, learning_rate=float(sys.argv[1]), clip_coef=float(sys.argv[2]))
result = frl.run(ppo.make_train(config), seeds=2, progress=False, eval_episodes=2, warm_start=True)
hits = torch._dynamo.utils.counters["dynamo_cache"]["dynamo_cache_hit"]
helped = CompileHelper.wanted([torch.zeros(1)])  # this process could fork a compile helper
out = {{"state": result.state, "compile_s": result.compile_s, "hits": hits, "helped": helped}}
torch.save(out, sys.argv[3])
"""


def _key(config: ppo.Config, seeds: int = 2) -> str | None:
    train = ppo.make_train(config)
    return run_key(train, seeds > 1, init_states(train, members_of(train, seeds, None), seeds > 1))


def test_the_key_ignores_hyperparameter_values_and_sees_settings_and_members():
    base = ppo.Config(**CONFIG)
    key = _key(base)
    assert key is not None and key == _key(dataclasses.replace(base, learning_rate=1e-2, gamma=0.9))
    assert key != _key(dataclasses.replace(base, num_steps=64))  # a setting shapes the program
    assert key != _key(dataclasses.replace(base, norm_adv=False))
    assert key != _key(base, seeds=3)


def test_the_key_sees_whether_products_go_to_onednn(monkeypatch):
    """A run saved where the pass calls oneDNN is not loaded where it would not (or the reverse)."""
    from frl import _inductor

    base = ppo.Config(**CONFIG)
    monkeypatch.setattr(_inductor, "_ONEDNN", [True])
    with_onednn = _key(base)
    monkeypatch.setattr(_inductor, "_ONEDNN", [False])
    assert with_onednn is not None and with_onednn != _key(base)


def test_a_hand_built_agent_gets_no_key():
    train = ppo.make_train(ppo.Config(**CONFIG))
    own = dataclasses.replace(train, factory=lambda config, env: train)
    state = init_states(own, members_of(own, 1, None), False)
    assert run_key(own, False, state) is None


@pytest.mark.compile
def test_a_rerun_with_other_hyperparameters_loads_the_compilation_and_trains_the_same(tmp_path):
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}  # a cold cache of its own
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(config=CONFIG))
    train = [sys.executable, str(script)]
    subprocess.run([*train, "1e-3", "0.1", str(tmp_path / "first.pt")], env=env, check=True)
    # the saved compilation holds every graph: the run's two saves and the helper's update
    (saved,) = (tmp_path / "cache" / "frl-warm").glob("*.bin")
    kinds = [warm.read_artifacts(part) for part in warm.unpack(saved.read_bytes())]
    assert sum(len(k.get("precompile", [])) for k in kinds) == 4  # collect, advantages, update, eval
    subprocess.run([*train, "3e-4", "0.3", str(tmp_path / "rerun.pt")], env=env, check=True)
    first, rerun = (torch.load(tmp_path / f, weights_only=False) for f in ("first.pt", "rerun.pt"))
    # on two cores a forked helper compiles the update (frl.driver.helper): the first run loads it
    assert first["hits"] == int(first["helped"]) and first["compile_s"] > 1.0, first["hits"]
    # every unit and the evaluation chunk come from the saved compilation: no tracing; compile_s
    # still counts the loading of the saved artifacts (Inductor's imports, the shared objects)
    assert rerun["hits"] >= 4, rerun["hits"]
    assert rerun["compile_s"] < 0.25 * first["compile_s"], (rerun["compile_s"], first["compile_s"])
    for result, (lr, clip) in ((first, (1e-3, 0.1)), (rerun, (3e-4, 0.3))):
        config = ppo.Config(**CONFIG, learning_rate=lr, clip_coef=clip)
        alone = frl.run(ppo.make_train(config), seeds=2, compile=False, progress=False, eval_episodes=2)
        for a, b in zip(pytree.tree_leaves(result["state"]), pytree.tree_leaves(alone.state), strict=True):
            if a.dtype.is_floating_point:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
            else:
                assert torch.equal(a, b)


def test_pruning_removes_old_compilations_with_their_precompile_entries_only(tmp_path):
    saved, dynamo = tmp_path / "frl-warm", tmp_path / "dynamo"
    saved.mkdir()
    for i, key in enumerate(("old", "mid", "new")):
        (saved / f"{key}.bin").write_bytes(b"x")
        (saved / f"{key}.json").write_text(json.dumps({"wrappers": [f"frl_collect_{key}"]}))
        (dynamo / warm._dynamo_entry(f"frl_collect_{key}")).mkdir(parents=True)
        os.utime(saved / f"{key}.bin", (1_000 + i, 1_000 + i))
    (dynamo / "someone-elses").mkdir()
    warm._prune(saved, keep=2)
    assert sorted(p.name for p in saved.iterdir()) == ["mid.bin", "mid.json", "new.bin", "new.json"]
    left = {p.name for p in dynamo.iterdir()}
    assert left == {
        "someone-elses",
        warm._dynamo_entry("frl_collect_mid"),
        warm._dynamo_entry("frl_collect_new"),
    }


def test_the_precompile_entry_name_is_torchs():
    from torch._dynamo.package import CompilePackage

    from frl._compile import named

    wrapper = named("frl_unit_abc", lambda x: x)
    assert warm._dynamo_entry("frl_unit_abc") == CompilePackage.source_id_from_fn(wrapper)


def test_each_named_wrapper_has_its_own_code_and_a_source_file():
    # torch < 2.13 wraps a function without a source file in dynamo's one shared `inner` frame:
    # every compiled unit then shared one code cache (recompile limit, a 2.11 guard crash)
    import inspect

    from frl._compile import named

    first, second = named("frl_unit_one", lambda x: x + 1), named("frl_unit_two", lambda x: x * 2)
    assert first.__code__ is not second.__code__
    assert inspect.getsourcefile(first) == "<frl._compiled.frl_unit_one>"
    assert "return _fn(*args)" in inspect.getsource(second)
    assert (first(1), second(3)) == (2, 6)


def test_an_inlined_functions_source_record_is_read_once_and_equals_torchs(monkeypatch):
    import inspect

    from torch._dynamo.package import SourceInfo

    def inlined(x):
        return x + 1

    reads = []
    getsourcelines = inspect.getsourcelines
    monkeypatch.setattr(inspect, "getsourcelines", lambda obj: reads.append(obj) or getsourcelines(obj))
    warm._memoize_inlined_sources()
    warm._memoize_inlined_sources()  # idempotent: one layer
    first, second = SourceInfo(inlined_sources=set()), SourceInfo(inlined_sources=set())
    for record in (first, first, second):
        record.add_code(inlined.__code__)
    assert [obj for obj in reads if obj is inlined.__code__] == [inlined.__code__]  # not 3
    assert not getattr(SourceInfo.add_code.__wrapped__, "_frl_memo", False)
    torchs = SourceInfo(inlined_sources=set())
    SourceInfo.add_code.__wrapped__(torchs, inlined.__code__)
    assert first.inlined_sources == second.inlined_sources == torchs.inlined_sources
    (entry,) = torchs.inlined_sources
    assert entry.firstlineno == inlined.__code__.co_firstlineno and "return x + 1" in entry.content


def test_a_saved_compilation_packs_its_parts_and_refuses_a_damaged_file():
    parts = [b"run", b"", b"helper" * 100]
    assert warm.unpack(warm.pack(parts)) == parts
    with pytest.raises(ValueError, match="truncated"):
        warm.unpack(warm.pack(parts)[:-1])
    with pytest.raises(ValueError, match="not a saved frl compilation"):
        warm.unpack(b"TORCH" + warm.pack(parts))
