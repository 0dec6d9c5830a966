"""The benchmark suites ``frl bench SUITE`` runs: tasks, the algorithms run on each, budgets and the
published references that anchor the normalised scores.

A task's score is normalised so that a uniformly random policy scores 0 (measured by the suite
on frl's own environment, :func:`frl.bench.runner.random_returns`) and the task's stated
reference scores 1. References are published results where they exist, each with its source;
where none is published the reference is the task's optimal return, stated as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SUITES", "Reference", "Suite", "Task", "get_suite"]


@dataclass(frozen=True)
class Reference:
    """A return to read a task's results against: ``value`` by ``label`` (e.g. "CleanRL ppo.py,
    500k steps"), with ``source`` (where it is published)."""

    value: float
    label: str
    source: str


@dataclass(frozen=True)
class Task:
    """One environment of a suite: ``algos`` each trained for ``steps`` environment steps per seed.

    ``reference`` is the normalisation's 1 (and a line on the curves); ``others`` are more
    published results, drawn as lines only. ``random`` overrides the measured random-policy
    return (for environments frl cannot roll out itself). ``configs`` sets Config fields of an
    algorithm on this task (``{"sac": {"hidden": (64, 64)}}``), under the user's ``--set``."""

    env: str
    algos: tuple[str, ...]
    steps: int
    reference: Reference
    others: tuple[Reference, ...] = ()
    random: float | None = None
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    """A named list of tasks. ``needs`` names what the suite requires of the machine (``"cuda"``)
    or an extra (``"mujoco"``): checked before anything runs. ``opt_in`` suites are not part of
    ``all``."""

    name: str
    description: str
    tasks: tuple[Task, ...]
    needs: tuple[str, ...] = field(default=())
    opt_in: bool = False

    def cells(self) -> list[tuple[str, str, int]]:
        """``(algo, env, steps)`` for every algorithm of every task, in order."""
        return [(algo, task.env, task.steps) for task in self.tasks for algo in task.algos]

    def task(self, env: str) -> Task:
        return next(t for t in self.tasks if t.env == env)


_CLEANRL_PPO = "https://docs.cleanrl.dev/rl-algorithms/ppo/ (ppo.py, classic control, 500k steps)"
_CLEANRL_DQN = "https://docs.cleanrl.dev/rl-algorithms/dqn/ (dqn.py, classic control, 500k steps)"
_ZOO = "https://github.com/DLR-RM/rl-baselines3-zoo/blob/master/benchmark.md (one trained agent)"

CLASSIC = Suite(
    "classic",
    "gymnasium's classic control on frl's pure torch environments: DQN, PPO, REINFORCE and A2C on "
    "the discrete tasks (200k steps per seed); SAC (64x64), PPO, REINFORCE and A2C on Pendulum (20k)",
    (
        Task(
            "CartPole-v1",
            ("dqn", "ppo", "reinforce", "a2c"),
            200_000,
            Reference(492.40, "CleanRL ppo.py (500k steps)", _CLEANRL_PPO),
            (Reference(488.69, "CleanRL dqn.py (500k steps)", _CLEANRL_DQN),),
        ),
        Task(
            "Acrobot-v1",
            ("dqn", "ppo", "reinforce", "a2c"),
            200_000,
            Reference(-89.93, "CleanRL ppo.py (500k steps)", _CLEANRL_PPO),
            (Reference(-91.54, "CleanRL dqn.py (500k steps)", _CLEANRL_DQN),),
        ),
        Task(
            "MountainCar-v0",
            ("dqn", "ppo", "reinforce", "a2c"),
            200_000,
            # CleanRL's figures (-194.95 DQN, -200 PPO) sit at the random policy's -200: no scale.
            Reference(-100.85, "rl-baselines3-zoo DQN (120k steps)", _ZOO),
            (Reference(-194.95, "CleanRL dqn.py (500k steps)", _CLEANRL_DQN),),
        ),
        Task(
            "Pendulum-v1",
            ("sac", "ppo", "reinforce", "a2c"),
            20_000,  # rl-baselines3-zoo's SAC budget
            Reference(-157.00, "rl-baselines3-zoo SAC (20k steps)", _ZOO),
            (Reference(-172.23, "rl-baselines3-zoo PPO (100k steps)", _ZOO),),
            # CleanRL's 256x256 SAC costs 0.55 GFLOP per update: 8 seeds x 20k steps took 1,730 s
            # here (benchmarks/bench_learning.py); 64x64 networks are 16x cheaper
            configs={"sac": {"hidden": (64, 64)}},
        ),
    ),
)

_OPTIMAL = "the task's optimal return (analytic)"

_FRL_README = "frl's README (a measured baseline of this project: benchmarks/bench_applications.py, 8 seeds)"

MINATAR = Suite(
    "minatar",
    "frl's pure torch MinAtar games (Young and Tian 2019) with MinAtar's CNN: PPO and DQN",
    (
        Task(
            "Breakout-MinAtar",
            ("ppo", "dqn"),
            300_000,
            Reference(7.41, "frl DQN, 300k steps (no published figure at this budget)", _FRL_README),
        ),
        Task(
            "SpaceInvaders-MinAtar",
            ("ppo", "dqn"),
            300_000,
            Reference(34.41, "frl DQN, 300k steps (no published figure at this budget)", _FRL_README),
        ),
    ),
)

EXPLORATION = Suite(
    "exploration",
    "sparse rewards and memory: DeepSea (PPO, PPO+RND, PPO+ICM) and a recall task (PPO, recurrent PPO)",
    (
        Task("DeepSea-10-v0", ("ppo", "ppo_rnd", "ppo_icm"), 100_000, Reference(0.99, "optimal", _OPTIMAL)),
        Task("MemoryLength-10-v0", ("ppo", "recurrent_ppo"), 300_000, Reference(1.0, "optimal", _OPTIMAL)),
    ),
)

APPLICATIONS = Suite(
    "applications",
    "the book's applications on frl's pure torch environments: a recommender (PPO) and driving (SAC, PPO)",
    (
        Task(
            "RecSim-InterestEvolution-v0",
            ("ppo",),
            200_000,
            Reference(134.0, "quality oracle (reads the latent quality), frl's baseline", _FRL_README),
        ),
        Task(
            "Highway-v0",
            ("sac", "ppo"),
            60_000,
            Reference(113.6, "hand-tuned controller (PID lanes, IDM speed), frl's baseline", _FRL_README),
        ),
    ),
)

MARL = Suite(
    "marl",
    "multi-agent: MAPPO and IPPO on the StarCraft-like micro-combat map 3m (team return)",
    (
        Task(
            "MicroCombat-3m-v0",
            ("mappo", "ippo"),
            400_000,
            Reference(2.0, "the maximum team return (all enemy health, and the win bonus)", _OPTIMAL),
        ),
    ),
)

MUJOCO = Suite(
    "mujoco",
    "MuJoCo through gymnasium (opt-in; pip install 'frl[bench]'): SAC and PPO",
    (
        Task(
            "gym:HalfCheetah-v5",
            ("sac", "ppo"),
            1_000_000,
            Reference(9535.45, "rl-baselines3-zoo SAC on HalfCheetah-v3 (1M steps)", _ZOO),
            random=-280.0,
        ),
    ),
    needs=("mujoco",),
    opt_in=True,
)

ATARI = Suite(
    "atari",
    "Atari 2600 through ale-py (GPU only): DQN and PPO with the Nature CNN",
    (
        Task(
            "ALE/Breakout-v5",
            ("dqn", "ppo"),
            10_000_000,
            Reference(358.33, "rl-baselines3-zoo DQN on BreakoutNoFrameskip-v4 (10M steps)", _ZOO),
            random=1.7,  # Mnih et al. 2015 (Nature), Extended Data Table 2, random play
        ),
    ),
    needs=("cuda",),
    opt_in=True,
)

SUITES: dict[str, Suite] = {
    s.name: s for s in (CLASSIC, MINATAR, APPLICATIONS, MARL, EXPLORATION, MUJOCO, ATARI)
}
"""Every suite by name."""


def get_suite(name: str) -> Suite:
    """The suite called ``name`` (a ValueError listing the suites otherwise)."""
    try:
        return SUITES[name]
    except KeyError:
        raise ValueError(f"unknown suite {name!r}; suites: {', '.join(SUITES)}") from None
