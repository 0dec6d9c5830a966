"""frl.launch: the environment the ``frl`` command restarts itself in (glibc's tcache count)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from frl import launch

SETTING = f"glibc.malloc.tcache_count={launch.TCACHE_COUNT}"


@pytest.fixture
def glibc(monkeypatch):
    monkeypatch.setattr(launch, "_glibc", lambda: True)


def test_environ_adds_the_count_after_the_tunables_already_set(glibc):
    assert launch.environ({"PATH": "/bin"}) == {"PATH": "/bin", "GLIBC_TUNABLES": SETTING}
    env = launch.environ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"})
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.mmap_threshold=65536:{SETTING}"
    assert launch.tuned(env) == str(launch.TCACHE_COUNT)


def test_environ_keeps_a_count_set_and_obeys_the_switch(glibc):
    mine = {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1:glibc.malloc.tcache_count=12"}
    assert launch.environ(mine) == mine
    assert launch.tuned(mine) == "12"
    off = {"FRL_GLIBC_TUNABLES": "0", "PATH": "/bin"}
    assert launch.environ(off) == off
    assert launch.tuned(off) is None


def test_environ_changes_nothing_off_glibc(monkeypatch):
    monkeypatch.setattr(launch, "_glibc", lambda: False)
    assert launch.environ({"PATH": "/bin"}) == {"PATH": "/bin"}


@pytest.mark.skipif(not launch._glibc(), reason="glibc's tunables: Linux with glibc only")
@pytest.mark.parametrize("switch,expected", [(None, str(launch.TCACHE_COUNT)), ("0", "default")])
def test_the_command_restarts_itself_once_with_the_count(switch, expected):
    """``frl --version`` started without the tunable runs (after one restart) with it, and says so;
    ``FRL_GLIBC_TUNABLES=0`` keeps glibc's default."""
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "FRL_GLIBC_TUNABLES")}
    if switch is not None:
        env["FRL_GLIBC_TUNABLES"] = switch
    done = subprocess.run(
        [sys.executable, "-m", "frl.cli", "--version"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"malloc tcache: {expected})"), done.stdout


@pytest.mark.skipif(not launch._glibc(), reason="glibc's tunables: Linux with glibc only")
def test_a_script_that_calls_main_is_not_started_again():
    """Only the ``frl`` command restarts: a script calling ``frl.cli.main()`` would run twice."""
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "FRL_GLIBC_TUNABLES")}
    script = "import sys; from frl.cli import main; print('once'); sys.argv = ['x', '--version']; main()"
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("once") == 1 and done.stdout.strip().endswith("malloc tcache: default)")
