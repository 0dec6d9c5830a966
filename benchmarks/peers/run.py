"""frl and the libraries people pick instead, side by side on one machine: PPO on CartPole-v1.

Every peer runs in its own virtual environment with pinned versions (``requirements/*.txt``,
built under ``.cache/peers`` by ``--setup``), in a fresh process, pinned to one CPU
(``taskset``) with one thread (``OMP_NUM_THREADS``, XLA's single-threaded Eigen), with the same
settings (CleanRL's: 4 envs x 128 steps, 4 epochs x 4 minibatches, 64x64 tanh networks):

* ``jax``: purejaxrl-style PPO on gymnax, the whole run one ``jit(vmap(train))`` (``jax_ppo.py``);
* ``sb3``: Stable-Baselines3's ``PPO`` (``sb3_ppo.py``);
* ``cleanrl``: single-file PyTorch after CleanRL's ``ppo.py`` (``cleanrl_ppo.py``);
* ``torchrl``: TorchRL's ``Collector`` + ``GAE`` + ``ClipPPOLoss`` (``torchrl_ppo.py``);
* ``frl``: ``frl.run`` compiled (and eager), plus a rerun with other hyper-parameter values on a
  warm compile cache (``frl_ppo.py``, in this project's environment).

The one-seed-per-process peers (sb3, cleanrl, torchrl) run one seed: on one pinned core N seeds
run N times as long. The table gives every row's env-steps/s (compile excluded where a peer
compiles), compile and whole-run wall seconds, and frl's ratio to the row at the same seed count.

    python benchmarks/peers/run.py --setup                       # build the environments once
    python benchmarks/peers/run.py --seeds 1 32 --steps 500000   # ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENVS = ROOT / ".cache" / "peers"
PEERS = {  # name: (virtual environment or None for this project's, script)
    "jax": ("jax", "jax_ppo.py"),
    "sb3": ("sb3", "sb3_ppo.py"),
    "cleanrl": ("torch", "cleanrl_ppo.py"),
    "torchrl": ("torch", "torchrl_ppo.py"),
    "frl": (None, "frl_ppo.py"),
}
SINGLE_SEED = ("sb3", "cleanrl", "torchrl")


def setup(names: list[str]) -> None:
    """Build each peer's virtual environment from its pinned requirements (skipped when built)."""
    for venv in sorted({PEERS[n][0] for n in names if PEERS[n][0]}):
        path = VENVS / venv
        if (path / ".built").exists():
            continue
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        requirements = HERE / "requirements" / f"{venv}.txt"
        pip = [str(path / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "-r", str(requirements)], check=True)
        (path / ".built").write_text(requirements.read_text())
        print(f"built {path}", flush=True)


def python_of(name: str) -> str:
    venv = PEERS[name][0]
    if venv is None:
        return sys.executable
    python = VENVS / venv / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"peers: no environment for {name!r}; run with --setup first")
    return str(python)


def run_peer(name: str, args: list[str], cpu: int | None) -> dict:
    """One peer in a fresh pinned, single-threaded process: its ``RESULT`` row."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(ROOT),
        "TORCHINDUCTOR_CACHE_DIR": os.environ.get(
            "TORCHINDUCTOR_CACHE_DIR", str(ROOT / ".cache" / "inductor")
        ),
        "TORCHINDUCTOR_VEC_ISA_OK": "1",
        "TORCH_EXTENSIONS_DIR": os.environ.get(
            "TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions")
        ),
    }
    pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    command = [*pin, python_of(name), str(HERE / PEERS[name][1]), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"peers: {name} failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--setup", action="store_true", help="build the peers' environments")
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 32])
    parser.add_argument("--steps", type=int, default=500_000, help="steps per seed (jax, frl)")
    parser.add_argument(
        "--torch-steps", type=int, default=51_200, help="steps of sb3/cleanrl/torchrl/frl eager"
    )
    parser.add_argument("--cpu", type=int, default=1, help="the CPU every run is pinned to")
    args = parser.parse_args()
    if args.setup:
        setup(args.peers)
        return
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import print_table, write_json

    rows: list[dict] = []

    def record(label: str, name: str, peer_args: list[str]) -> None:
        row = {"row": label, **run_peer(name, peer_args, args.cpu)}
        rows.append(row)
        print(
            f"{label}: {row['env_steps_per_s']:,.0f} env-steps/s, compile {row['compile_s']:.1f} s, "
            f"wall {row['wall_s']:.1f} s, return {row['final_return']}",
            flush=True,
        )

    for n in args.seeds:
        scale = ["--seeds", str(n), "--steps", str(args.steps)]
        if "jax" in args.peers:
            record("jax", "jax", scale)
        if "frl" in args.peers:
            record("frl", "frl", scale)
    if "frl" in args.peers:
        rerun = ["--seeds", "1", "--steps", str(args.steps), "--learning-rate", "3e-4", "--clip-coef", "0.25"]
        record("frl rerun, other lr and clip (warm cache)", "frl", rerun)
        record("frl eager", "frl", ["--seeds", "1", "--steps", str(args.torch_steps), "--eager"])
    for name in SINGLE_SEED:
        if name in args.peers:
            record(name, name, ["--steps", str(args.torch_steps)])

    frl_rate = {r["seeds"]: r["env_steps_per_s"] for r in rows if r["row"] == "frl"}
    table = []
    for r in rows:
        ratio = frl_rate.get(r["seeds"])
        table.append(
            [
                r["row"],
                r["seeds"],
                r["steps_per_seed"],
                f"{r['env_steps_per_s']:,.0f}",
                f"{r['compile_s']:.1f}",
                f"{r['wall_s']:.1f}",
                "-" if r["final_return"] is None else f"{r['final_return']:.0f}",
                "-" if ratio is None or r["row"].startswith("frl") else f"{ratio / r['env_steps_per_s']:.2f}",
            ]
        )
    title = (
        f"PPO CartPole-v1 (4 envs x 128 steps, 4 x 4 minibatches), one thread pinned to CPU {args.cpu}, "
        f"{cpu_model()}"
    )
    columns = [
        "row",
        "seeds",
        "steps/seed",
        "env-steps/s",
        "compile s",
        "wall s",
        "final return",
        "frl / row",
    ]
    print_table(title, columns, table)
    write_json(
        "peers",
        {
            "cpu": cpu_model(),
            "pinned_cpu": args.cpu,
            "rows": rows,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )


if __name__ == "__main__":
    main()
