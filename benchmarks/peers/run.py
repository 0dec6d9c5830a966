"""frl and the libraries people pick instead, side by side on one machine, one algorithm a run.

Every peer runs in its own virtual environment with pinned versions (``requirements/*.txt``,
built under ``.cache/peers`` by ``--setup``), in a fresh process, pinned to one CPU
(``taskset``) with one thread (``OMP_NUM_THREADS``, XLA's single-threaded Eigen), at frl's
default settings for the algorithm (CleanRL's):

* PPO on CartPole-v1 (4 envs x 128 steps, 4 epochs x 4 minibatches, 64x64 tanh): ``jax``, a
  purejaxrl-style PPO on gymnax written here, the whole run one ``jit(vmap(train))``
  (``jax_ppo.py``); ``sb3``, Stable-Baselines3's ``PPO``; ``cleanrl``, single-file PyTorch after
  CleanRL's ``ppo.py``; ``torchrl``, TorchRL's ``Collector`` + ``GAE`` + ``ClipPPOLoss``;
* DQN on CartPole-v1: ``jax`` (``jax_dqn.py``, written here the same way) and ``sb3``
  (``sb3_dqn.py``);
* PPO on MinAtar Breakout (``--algo ppo-minatar``, frl's MinAtar preset and CNN, no sticky
  actions: gymnax has none): ``jax`` (``jax_ppo_minatar.py``, written here the same way);
* SAC on Pendulum-v1: ``jax`` (``jax_sac.py``), ``sb3`` (``sb3_sac.py``) and ``torchrl``,
  TorchRL's ``Collector`` + ``ReplayBuffer`` + ``SACLoss`` (``torchrl_sac.py``); learning starts
  after 5k random steps, so give SAC runs well past that (every peer skips learning before);
* ``frl`` (``frl_agent.py``, this project's environment): ``frl.run`` compiled for each seed count,
  a rerun of the one-seed run with other hyper-parameter values (the warm start; only where
  ``--seeds`` includes 1), and eager on one seed; each in the environment the ``frl`` command
  starts in (:func:`frl.launch.environ`: glibc's tcache count raised), the peers at their defaults.

The one-seed-per-process peers run one seed: on one pinned core N seeds run N times as long.
The table gives every row's env-steps/s (compile excluded where a peer compiles), compile and
whole-run wall seconds, and frl's ratio to the row at the same seed count.

    python benchmarks/peers/run.py --setup                         # build the environments once
    python benchmarks/peers/run.py --seeds 1 32 --steps 500000     # PPO, ~15 min on 2 cores
    python benchmarks/peers/run.py --algo dqn --seeds 1 --steps 100000 --torch-steps 100000
    python benchmarks/peers/run.py --algo sac --seeds 1 --steps 15000 --torch-steps 15000
    python benchmarks/peers/run.py --seeds 1 --peers frl torchrl --rounds 5  # eager vs TorchRL, 5 rounds
    python benchmarks/peers/run.py --algo ppo-minatar --seeds 8 --steps 300000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENVS = ROOT / ".cache" / "peers"
PEERS = {  # algorithm: {peer: (virtual environment or None for this project's, script)}
    "ppo": {
        "jax": ("jax", "jax_ppo.py"),
        "sb3": ("sb3", "sb3_ppo.py"),
        "cleanrl": ("torch", "cleanrl_ppo.py"),
        "torchrl": ("torch", "torchrl_ppo.py"),
    },
    "dqn": {"jax": ("jax", "jax_dqn.py"), "sb3": ("sb3", "sb3_dqn.py")},
    "ppo-minatar": {"jax": ("jax", "jax_ppo_minatar.py")},
    "sac": {
        "jax": ("jax", "jax_sac.py"),
        "sb3": ("sb3", "sb3_sac.py"),
        "torchrl": ("torch", "torchrl_sac.py"),
    },
}
MULTI_SEED = ("jax",)  # peers that vmap seeds in one process; the others run one seed each
RERUN = {  # other hyper-parameter values for the warm-start row
    "ppo": ["--hyper", "learning_rate=3e-4", "--hyper", "clip_coef=0.25"],
    "dqn": ["--hyper", "learning_rate=1e-3", "--hyper", "gamma=0.98"],
    "sac": ["--hyper", "q_lr=3e-4", "--hyper", "tau=0.01"],
}
ENVS = {
    "ppo": "CartPole-v1",
    "dqn": "CartPole-v1",
    "sac": "Pendulum-v1",
    "ppo-minatar": "Breakout-MinAtar (no sticky actions)",
}


def setup() -> None:
    """Build each peer's virtual environment from its pinned requirements (skipped when built)."""
    for venv in sorted({venv for peers in PEERS.values() for venv, _ in peers.values()}):
        path = VENVS / venv
        if (path / ".built").exists():
            continue
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        requirements = HERE / "requirements" / f"{venv}.txt"
        pip = [str(path / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "-r", str(requirements)], check=True)
        (path / ".built").write_text(requirements.read_text())
        print(f"built {path}", flush=True)


def run_peer(venv: str | None, script: str, args: list[str], cpu: int | None) -> dict:
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
    if venv is None:  # frl, as its command starts
        from frl import launch

        env = launch.environ(env)
    pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    python = sys.executable if venv is None else str(VENVS / venv / "bin" / "python")
    if not Path(python).exists():
        raise SystemExit(f"peers: no environment {venv!r}; run with --setup first")
    command = [*pin, python, str(HERE / script), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"peers: {script} failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--setup", action="store_true", help="build the peers' environments")
    parser.add_argument("--algo", default="ppo", choices=list(PEERS))
    parser.add_argument("--peers", nargs="*", default=None, help="default: all of the algorithm's and frl")
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 32])
    parser.add_argument("--steps", type=int, default=500_000, help="steps per seed (vmapped peers, frl)")
    parser.add_argument(
        "--torch-steps", type=int, default=51_200, help="steps of one-seed-per-process peers and frl eager"
    )
    parser.add_argument("--cpu", type=int, default=1, help="the CPU every run is pinned to")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds of the one-seed-per-process rows (frl eager and the peers that do not vmap), "
        "interleaved; prints frl eager / each peer per round and the median",
    )
    parser.add_argument(
        "--into",
        default=None,
        metavar="BENCH_DIR",
        help="also write the rows into BENCH_DIR/peers/ALGO.json (frl bench's report shows them)",
    )
    args = parser.parse_args()
    if args.setup:
        setup()
        return
    if args.rounds < 1:
        parser.error(f"--rounds: at least 1, got {args.rounds}")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import print_table, write_json

    from frl.bench.runner import cpu_model

    peers = PEERS[args.algo]
    chosen = args.peers if args.peers is not None else [*peers, "frl"]
    for name in chosen:
        if name != "frl" and name not in peers:
            parser.error(f"--peers: {args.algo} has peers {', '.join([*peers, 'frl'])}, not {name!r}")
    frl = (None, "frl_agent.py")
    rows: list[dict] = []

    def record(label: str, peer: tuple[str | None, str], peer_args: list[str]) -> None:
        row = {"row": label, **run_peer(*peer, peer_args, args.cpu)}
        rows.append(row)
        print(
            f"{label}: {row['env_steps_per_s']:,.0f} env-steps/s, compile {row['compile_s']:.1f} s, "
            f"wall {row['wall_s']:.1f} s, return {row['final_return']}",
            flush=True,
        )

    for n in args.seeds:
        scale = ["--seeds", str(n), "--steps", str(args.steps)]
        for name in MULTI_SEED:
            if name in chosen and name in peers:
                record(name, peers[name], scale)
        if "frl" in chosen:
            record("frl", frl, ["--algo", args.algo, *scale])
    eager = "frl" in chosen and args.algo in RERUN
    if eager and 1 in args.seeds:  # a rerun of the one-seed run above: otherwise nothing is warm
        rerun = ["--algo", args.algo, "--seeds", "1", "--steps", str(args.steps), *RERUN[args.algo]]
        record("frl rerun, other hyper-parameters (warm start)", frl, rerun)
    one_seed = [name for name in peers if name in chosen and name not in MULTI_SEED]
    for round_ in range(args.rounds):  # interleaved, so that a machine's drift reaches every row
        suffix = "" if args.rounds == 1 else f" (round {round_ + 1})"
        if eager:
            steps = ["--steps", str(args.torch_steps), "--eager"]
            record("frl eager" + suffix, frl, ["--algo", args.algo, "--seeds", "1", *steps])
        for name in one_seed:
            record(name + suffix, peers[name], ["--steps", str(args.torch_steps)])

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
                "-" if r["final_return"] is None else f"{r['final_return']:.4g}",
                "-" if ratio is None or r["row"].startswith("frl") else f"{ratio / r['env_steps_per_s']:.2f}",
            ]
        )
    title = f"{args.algo} {ENVS[args.algo]}, defaults, one thread pinned to CPU {args.cpu}, {cpu_model()}"
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
    if eager and args.rounds > 1:
        rate = {r["row"]: r["env_steps_per_s"] for r in rows}
        for name in one_seed:
            rounds = range(1, args.rounds + 1)
            ratios = [rate[f"frl eager (round {i})"] / rate[f"{name} (round {i})"] for i in rounds]
            listed = ", ".join(f"{x:.2f}" for x in ratios)
            print(f"frl eager / {name}, round by round: {listed} (median {statistics.median(ratios):.2f})")
    payload = {"algo": args.algo, "cpu": cpu_model(), "pinned_cpu": args.cpu, "rows": rows}
    write_json(f"peers_{args.algo}", {**payload, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    if args.into is not None:
        dest = Path(args.into) / "peers"
        dest.mkdir(parents=True, exist_ok=True)
        algo = args.algo.split("-")[0]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        into = {**payload, "algo": algo, "env": ENVS[args.algo], "time": stamp}
        (dest / f"{args.algo}.json").write_text(json.dumps(into, indent=2) + "\n")
        print(f"wrote {dest / (args.algo + '.json')}")


if __name__ == "__main__":
    main()
