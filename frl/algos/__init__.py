"""Complete agents as pure functions: ``make_train(config) -> Train``.

Every agent's state follows one spec (:mod:`frl.algos.spec`), every Config declares its
hyper-parameters (kept in the state) and settings (:mod:`frl.algos.config`), and the registry
(:mod:`frl.algos.registry`) maps names to agents. ``docs/write-an-algorithm.md`` walks through
adding one (A2C is the worked example).
"""

from frl.algos import (
    a2c,
    dqn,
    mappo,
    ppo,
    ppo_icm,
    ppo_rnd,
    qmix,
    recurrent_ppo,
    reinforce,
    sac,
    slateq,
    tabular,
)
from frl.algos.config import AgentConfig, hyper, setting
from frl.algos.registry import AGENTS, AgentSpec, get, register
from frl.algos.spec import Replay, Segments, check_state
from frl.algos.train import Train, Unit, compose

for _spec in (
    AgentSpec(
        "a2c", a2c.Config, a2c.make_train, ("discrete", "continuous", "slate"), "A2C (Mnih et al. 2016)"
    ),
    AgentSpec("dqn", dqn.Config, dqn.make_train, ("discrete",), "DQN (Mnih et al. 2015), double DQN"),
    AgentSpec(
        "ippo",
        mappo.IPPOConfig,
        mappo.make_train_ippo,
        ("discrete", "continuous"),
        "IPPO (de Witt et al. 2020), multi-agent",
    ),
    AgentSpec(
        "mappo",
        mappo.Config,
        mappo.make_train,
        ("discrete", "continuous"),
        "MAPPO (Yu et al. 2022), centralised critic",
    ),
    AgentSpec(
        "ppo_icm",
        ppo_icm.Config,
        ppo_icm.make_train,
        ("discrete",),
        "PPO + the intrinsic curiosity module (Pathak et al. 2017)",
    ),
    AgentSpec(
        "ppo_rnd",
        ppo_rnd.Config,
        ppo_rnd.make_train,
        ("discrete", "continuous"),
        "PPO + random network distillation (Burda et al. 2019)",
    ),
    AgentSpec(
        "ppo",
        ppo.Config,
        ppo.make_train,
        ("discrete", "continuous", "slate"),
        "PPO-clip (Schulman et al. 2017)",
    ),
    AgentSpec(
        "qmix", qmix.Config, qmix.make_train, ("discrete",), "QMIX (Rashid et al. 2018), monotonic mixer"
    ),
    AgentSpec(
        "recurrent_ppo",
        recurrent_ppo.Config,
        recurrent_ppo.make_train,
        ("discrete", "continuous"),
        "PPO with a GRU or LSTM actor and critic (partial observability, RL^2)",
    ),
    AgentSpec(
        "reinforce",
        reinforce.Config,
        reinforce.make_train,
        ("discrete", "continuous", "slate"),
        "REINFORCE with a baseline",
    ),
    AgentSpec(
        "slateq", slateq.Config, slateq.make_train, ("slate",), "SlateQ (Ie et al. 2019), recommendation"
    ),
    AgentSpec(
        "vdn", qmix.VDNConfig, qmix.make_train_vdn, ("discrete",), "VDN (Sunehag et al. 2018), summed values"
    ),
    AgentSpec("sac", sac.Config, sac.make_train, ("continuous",), "SAC (Haarnoja et al. 2018), twin critics"),
    AgentSpec(
        "tabular", tabular.Config, tabular.make_train, ("discrete",), "tabular Q-learning and soft Q-learning"
    ),
):
    register(_spec)

ALGORITHMS = AGENTS
"""Name -> :class:`AgentSpec` (the registry)."""

__all__ = [
    "AGENTS",
    "ALGORITHMS",
    "AgentConfig",
    "AgentSpec",
    "Replay",
    "Segments",
    "Train",
    "Unit",
    "a2c",
    "check_state",
    "compose",
    "dqn",
    "get",
    "hyper",
    "mappo",
    "ppo",
    "ppo_icm",
    "ppo_rnd",
    "qmix",
    "recurrent_ppo",
    "register",
    "reinforce",
    "sac",
    "setting",
    "tabular",
]
