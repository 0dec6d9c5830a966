"""Smoke test of an installed frl wheel, run with no C++ compiler on the PATH (by .ci/wheel).

Checks that random bits come from the operator compiled into the wheel (no build at first use),
that its caching host allocator loads and its oneDNN product is registered (and says whether
compiled graphs would use it on this machine),
that the command line answers (``frl --version``, ``frl list``), and trains PPO on two seeds at
a tiny budget, eagerly (Inductor's CPU code generation would need the compiler). Prints the
seconds from the start of this process to the first training step, and with the install time
passed as the first argument, from ``pip install`` to the first step.
"""

import shutil
import subprocess
import sys
import tempfile
import time

start = time.perf_counter()

import frl  # noqa: E402
import frl.host_memory  # noqa: E402
import frl.random  # noqa: E402
from frl.algos import ppo  # noqa: E402

for compiler in ("c++", "g++", "gcc", "cc"):
    assert shutil.which(compiler) is None, f"{compiler} is on the PATH: the smoke test must run without one"
backend = frl.random.native_backend()
assert backend == "extension", f"random bits come from {backend!r}, not the wheel's compiled operator"
assert frl.host_memory.available(), "the wheel's extension lacks the caching host allocator"
train = ppo.make_train(ppo.Config(total_timesteps=1024))
state = train.init(frl.random.key(0))
state, _ = train.step(state)
first_step = time.perf_counter() - start
print(f"frl {frl.__version__}: threefry from the compiled extension; first PPO step {first_step:.1f} s")
if len(sys.argv) > 1:
    print(f"from pip install to the first step: {float(sys.argv[1]) + first_step:.1f} s")

import torch  # noqa: E402

from frl import _inductor  # noqa: E402

assert hasattr(torch.ops.frl_native, "onednn_matmul"), "the wheel's extension lacks the oneDNN product"
assert hasattr(torch.ops.frl_native, "stable_order"), "the wheel's extension lacks the radix sort"
assert hasattr(torch.ops.frl_native, "small_rows_bmm"), "the wheel's extension lacks the small-rows product"
assert hasattr(torch.ops.frl_native, "small_mm"), "the wheel's extension lacks the small-products kernel"
onednn = "yes" if _inductor.onednn_ready() else "no (the probe declined)"
print(f"oneDNN products in compiled graphs: {onednn}")
small_rows = "yes" if _inductor.small_rows_ready() else "no (no AVX-512)"
print(f"small-rows products in compiled graphs: {small_rows}")
small_mm = "yes" if _inductor.small_mm_ready() else "no (no AVX-512)"
print(f"small products (frl_native::small_mm) in compiled graphs: {small_mm}")

frl_cmd = shutil.which("frl")
version = subprocess.run([frl_cmd, "--version"], capture_output=True, text=True, check=True).stdout.strip()
assert version.startswith(f"frl {frl.__version__}"), version
print(version)
listing = subprocess.run([frl_cmd, "list"], capture_output=True, text=True, check=True).stdout
assert "ppo" in listing and "CartPole-v1" in listing
with tempfile.TemporaryDirectory() as out:
    run = subprocess.run(
        [frl_cmd, "train", "ppo", "--seeds", "2", "--steps", "1024", "--no-compile", "--out", out],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
print("frl train ppo --seeds 2 --steps 1024 --no-compile: ok")
