"""``frl list``: the registered algorithms and the environments ``--env`` takes."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "cmd_list"]


def add_parser(sub: Any) -> None:
    """Register ``frl list`` on the ``frl`` command's subparsers."""
    sub.add_parser("list", help="algorithms and environments")


def cmd_list(args: argparse.Namespace) -> int:
    """Print the algorithms and environments ``frl train`` accepts; the exit code."""
    from frl import envs
    from frl.algos import AGENTS
    from frl.envs.spaces import Slate

    print("algorithms:")
    width = max(map(len, AGENTS))
    for name in sorted(AGENTS):
        agent = AGENTS[name]
        print(f"  {name:<{width}} actions: {', '.join(agent.actions):<27} {agent.summary}")
    print(
        "environments (pure torch; any gymnasium id also works as gym:<id>, through TorchRL, "
        "and any gymnax id as gymnax:<id>, in JAX, with the jax extra):"
    )
    for env_id in envs.list_envs():
        env = envs.make(env_id)
        space = env.action_space
        if isinstance(space, Slate):
            actions = f"slate({space.k} of {space.n})"
        else:
            actions = f"discrete({space.n})" if env.discrete else f"box{list(space.shape)}"
        agents = f"{env.n_agents} agents, each: " if getattr(env, "multi_agent", False) else ""
        print(
            f"  {env_id:<36} {agents}obs {list(env.observation_space.shape)}  actions {actions}  "
            f"max steps {env.max_episode_steps}"
        )
    return 0
