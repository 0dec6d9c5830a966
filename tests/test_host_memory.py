"""frl.host_memory: freed CPU blocks serve the next request of their size inside ``caching``,
within the limit; outside it torch's allocator is back and nothing stays cached; values never
change (a run with the cache equals one without, bit for bit)."""

from __future__ import annotations

import dataclasses
import os
import threading

import pytest
import torch
from torch.utils import _pytree as pytree

from frl import host_memory
from frl.run import run

pytestmark = pytest.mark.skipif(not host_memory.available(), reason="frl's C++ extension is not built here")


def test_a_freed_block_serves_the_next_request_of_its_size_and_is_released_on_exit() -> None:
    with host_memory.caching() as owner:
        assert owner and host_memory.stats().enabled
        x = torch.empty(1000)
        where = x.data_ptr()
        del x
        held = host_memory.stats()
        assert held.cached_bytes == 4032  # 4000 bytes rounded up to 64
        y = torch.empty(999)  # the same size class
        after = host_memory.stats()
        assert y.data_ptr() == where and after.hits == held.hits + 1
        assert after.cached_bytes == 0
        assert where % 64 == 0  # aligned as torch's own allocator aligns
    outside = host_memory.stats()
    assert not outside.enabled and outside.cached_bytes == 0
    del y  # allocated inside, freed outside: back to the system
    assert host_memory.stats().cached_bytes == 0


def test_blocks_past_the_limit_go_back_to_the_system() -> None:
    with host_memory.caching(limit_mib=1):
        big, small = torch.empty(2 << 20, dtype=torch.uint8), torch.empty(16)
        del big
        assert host_memory.stats().cached_bytes == 0
        del small
        assert host_memory.stats().cached_bytes == 64
        assert host_memory.stats().limit_bytes == 1 << 20


def test_an_inner_block_leaves_the_outer_ones_cache_on_and_zero_means_off() -> None:
    with host_memory.caching() as outer:
        with host_memory.caching() as inner:
            assert outer and not inner
        assert host_memory.stats().enabled
    assert not host_memory.stats().enabled
    with host_memory.caching(limit_mib=0) as owner:
        assert not owner and not host_memory.stats().enabled


@pytest.mark.parametrize("bad", [-1, 1.5, True, "64"])
def test_a_bad_limit_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="limit_mib must be a whole number >= 0"), host_memory.caching(bad):  # type: ignore[arg-type]
        pass


@pytest.mark.parametrize(("value", "limit"), [("", 256), ("0", 0), (" 64 ", 64)])
def test_the_limit_is_read_from_frl_host_cache(
    monkeypatch: pytest.MonkeyPatch, value: str, limit: int
) -> None:
    monkeypatch.setenv("FRL_HOST_CACHE", value)
    assert host_memory.limit_from_env() == limit


@pytest.mark.parametrize("value", ["-1", "1.5", "lots"])
def test_a_bad_frl_host_cache_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FRL_HOST_CACHE", value)
    with pytest.raises(ValueError, match=f"FRL_HOST_CACHE: expected a limit in MiB .* got '{value}'"):
        host_memory.limit_from_env()
    with pytest.raises(ValueError, match="FRL_HOST_CACHE"):  # before anything is traced or written
        run(_tiny(), seeds=1, compile=False, progress=False, eval_episodes=1)


def test_threads_allocating_at_once_get_distinct_blocks_and_right_values() -> None:
    errors: list[str] = []

    def work(seed: int) -> None:
        for i in range(300):
            a = torch.full((37 + i % 5,), float(seed))
            b = a * 2.0 + 1.0
            if not torch.equal(b, torch.full_like(a, 2.0 * seed + 1.0)):
                errors.append(f"thread {seed}, step {i}")

    with host_memory.caching():
        threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def _in_thread(fn):
    """``fn()`` run on a new thread: its result, or the exception it raised."""
    out: list[object] = []

    def target() -> None:
        try:
            out.append(fn())
        except Exception as e:  # handed back to the test
            out.append(e)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    return out[0]


def test_other_threads_share_locked_lists_under_the_same_limit() -> None:
    """The thread that switched the cache on keeps lists of its own (no lock); a block another
    thread frees goes to the shared lists, serves another thread's request of its size, counts
    against the one limit, and everything is released on exit."""
    with host_memory.caching(limit_mib=1):
        mine = torch.empty(160_000)  # 640,000 bytes
        where = mine.data_ptr()
        del mine
        assert host_memory.stats().cached_bytes == 640_000
        theirs = _in_thread(lambda: torch.empty(102_400))  # a block from the system
        del theirs  # freed here, by the owner: 409,600 more would pass the 1 MiB limit
        assert host_memory.stats().cached_bytes == 640_000
        freed_there = _in_thread(lambda: torch.empty(51_200).data_ptr())  # freed by its thread
        assert host_memory.stats().cached_bytes == 640_000 + 204_800
        hits = host_memory.stats().hits
        assert _in_thread(lambda: torch.empty(51_200).data_ptr()) == freed_there  # the shared list
        assert torch.empty(160_000).data_ptr() == where  # the owner's list
        assert host_memory.stats().hits == hits + 2
    assert host_memory.stats().cached_bytes == 0


def test_only_the_thread_that_switched_the_cache_on_switches_it_off() -> None:
    ops = torch.ops.frl_native
    with host_memory.caching() as owner:
        assert owner
        error = _in_thread(ops.host_cache_disable)
        assert isinstance(error, RuntimeError)
        assert "switched off by the thread that switched it on" in str(error)
        assert host_memory.stats().enabled
    assert not host_memory.stats().enabled


def test_a_forked_child_allocates_through_the_cache() -> None:
    with host_memory.caching():
        held = torch.empty(100)
        del held  # a cached block in the parent
        pid = os.fork()
        if pid == 0:  # the child: a fresh mutex, the parent's free lists
            try:
                x = torch.arange(100.0)
                ok = float(x.sum()) == 4950.0 and host_memory.stats().enabled
            finally:
                os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


def _tiny():
    from frl.algos import ppo

    config = ppo.Config(num_envs=2, num_steps=16, num_minibatches=2, update_epochs=2, hidden=(8,))
    return ppo.make_train(dataclasses.replace(config, total_timesteps=64))


def test_a_run_with_the_cache_equals_one_without_and_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRL_HOST_CACHE", "0")
    off = run(_tiny(), seeds=2, compile=False, progress=False, eval_episodes=2, on_nonfinite="off")
    monkeypatch.setenv("FRL_HOST_CACHE", "64")
    hits = host_memory.stats().hits
    on = run(_tiny(), seeds=2, compile=False, progress=False, eval_episodes=2, on_nonfinite="off")
    assert host_memory.stats().hits > hits + 100 and not host_memory.stats().enabled
    for a, b in zip(pytree.tree_leaves(off.state), pytree.tree_leaves(on.state), strict=True):
        assert torch.equal(a, b)
    assert off.eval_returns == on.eval_returns
