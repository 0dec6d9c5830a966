"""What the ``frl`` commands share: the one-line usage error, ``--config.FIELD VALUE``
overrides, building an agent from the registry, and the results table."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

__all__ = [
    "Parser",
    "RunFailed",
    "UsageError",
    "build_train",
    "check_out",
    "check_positive",
    "config_overrides",
    "parse_value",
    "results_table",
]


class UsageError(Exception):
    """Bad input: reported on one line (``frl: error: ...``), exit code 2."""


class RunFailed(Exception):
    """A run that stopped on a fault of its own (a non-finite value): one line, exit code 1."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


INT_MAX = 2**62
"""The largest count a flag or an int field takes (tensors count in int64; headroom for sums)."""


def check_positive(args: argparse.Namespace, *flags: str) -> None:
    """Each of ``flags`` (``"--seeds"``; ``--steps`` may be None: the config's) a positive count
    that fits an int64 tensor."""
    for flag in flags:
        value = getattr(args, flag.removeprefix("--").replace("-", "_"))
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be a positive count, got {value}")
        if value is not None and value > INT_MAX:
            raise UsageError(f"{flag} {value} is too large (at most {INT_MAX}, an int64 count)")


def check_out(flag: str, out: Any) -> None:
    """``out`` is a folder, or one that can be created: its nearest existing parent is a
    writable folder (checked without creating anything)."""
    if out is None:
        return
    from pathlib import Path

    path = Path(out)
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{flag} {path} is a file, not a folder")
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {path} cannot be created: {parent} is a file, not a folder")
    import os

    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path} cannot be created: {parent} is not writable")


def parse_value(name: str, text: str, current: Any, flag: str = "--config.") -> Any:
    """``text`` as the type of ``current`` (a field's default), or a UsageError naming the flag."""
    kind = type(current)
    try:
        if current is None:  # an optional field off by default: a number, or none
            if text.lower() == "none":
                return None
            number = float(text)
            return int(number) if number.is_integer() and "." not in text else number
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind is int:
            value = int(float(text)) if "e" in text.lower() else int(text)
            if abs(value) > INT_MAX:
                raise UsageError(f"{flag}{name}: {text} is too large (at most {INT_MAX}, an int64 count)")
            return value
        if kind is float:
            return float(text)
        if kind is tuple:
            return tuple(int(v) for v in text.replace("(", "").replace(")", "").split(",") if v.strip())
        return text
    except (ValueError, OverflowError):
        expected = "number or none" if current is None else kind.__name__
        raise UsageError(f"{flag}{name}: expected a {expected} (current {current!r}), got {text!r}") from None


def _flag_values(pairs: Sequence[str], prefix: str) -> Iterator[tuple[str, str | None]]:
    """``(name, value)`` for each ``PREFIXname VALUE`` or ``PREFIXname=VALUE`` in ``pairs``
    (``value`` None when the last flag has none); a UsageError for any other argument."""
    i = 0
    while i < len(pairs):
        flag = pairs[i]
        if not flag.startswith(prefix):
            raise UsageError(f"unrecognized argument {flag!r}")
        name, eq, inline = flag[len(prefix) :].partition("=")
        if eq:
            value, i = inline, i + 1
        elif i + 1 < len(pairs):
            value, i = pairs[i + 1], i + 2
        else:
            value, i = None, i + 1
        yield name, value


def config_overrides(config_cls: type, pairs: Sequence[str]) -> dict[str, Any]:
    """``--config.FIELD VALUE`` (or ``--config.FIELD=VALUE``) pairs as ``{field: value}``."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    defaults = config_cls()
    out: dict[str, Any] = {}
    for name, value in _flag_values(pairs, "--config."):
        if name not in fields:
            raise UsageError(
                f"--config.{name}: unknown field of {config_cls.agent}.Config; "
                f"valid fields: {', '.join(fields)}"
            )
        if name in ("env_id", "total_timesteps"):
            raise UsageError(f"--config.{name}: use --env / --steps instead")
        if value is None:
            raise UsageError(f"--config.{name}: missing value")
        out[name] = parse_value(name, value, getattr(defaults, name))
    return out


def split_overrides(pairs: Sequence[str]) -> tuple[list[str], list[str]]:
    """The extra arguments split into ``--config.*`` pairs (and anything unrecognized, which
    :func:`config_overrides` names) and ``--env.*`` pairs."""
    config: list[str] = []
    env: list[str] = []
    i = 0
    while i < len(pairs):
        flag = pairs[i]
        takes_value = flag.startswith(("--config.", "--env.")) and "=" not in flag and i + 1 < len(pairs)
        n = 2 if takes_value else 1
        (env if flag.startswith("--env.") else config).extend(pairs[i : i + n])
        i += n
    return config, env


GYM_OPTIONS = ("norm_obs", "norm_reward", "frame_stack")
"""The environment options of ``gym:<id>`` environments (``--norm-obs``, ...)."""


def env_overrides(env_id: str, pairs: Sequence[str]) -> dict[str, Any]:
    """``--env.FIELD VALUE`` (or ``--env.FIELD=VALUE``) pairs as settings of one of frl's own
    environments (the fields of its dataclass, e.g. ``Highway-v0``'s ``num_lanes``), each parsed
    as its default's type; the environment checks the values (and a setting its id fixes, such as
    ``MicroCombat-3m-v0``'s map) when :func:`build_train` builds it."""
    if not pairs:
        return {}
    from frl import envs

    if envs.is_gym_id(env_id) or envs.plugin_prefix(env_id) is not None or not envs.is_known(env_id):
        raise UsageError(
            f"{pairs[0].partition('=')[0]}: --env.FIELD sets a setting of frl's own environments, not "
            f"of {env_id!r} (gym:<id> takes --norm-obs, --norm-reward and --frame-stack)"
        )
    defaults = envs.make(env_id)
    fields = [f.name for f in dataclasses.fields(defaults) if f.name != "dtype"]
    out: dict[str, Any] = {}
    for name, value in _flag_values(pairs, "--env."):
        if name not in fields:
            valid = ", ".join(fields)
            raise UsageError(f"--env.{name}: unknown setting of {env_id}; valid settings: {valid}")
        if value is None:
            raise UsageError(f"--env.{name}: missing value")
        out[name] = parse_value(name, value, getattr(defaults, name), flag="--env.")
    return out


def build_train(
    algo: str,
    env_id: str,
    steps: int | None,
    overrides: dict[str, Any],
    env_options: dict[str, Any] | None = None,
):
    """The agent ``algo`` on ``env_id`` with its preset for the environment and ``overrides``
    (every field validated); a UsageError naming the problem and the valid choices."""
    from frl import envs
    from frl.algos import AGENTS, get
    from frl.envs.spaces import Slate

    try:
        agent = get(algo)
    except ValueError as err:
        raise UsageError(str(err)) from None
    gym = envs.is_gym_id(env_id)
    if not envs.is_known(env_id) and envs.plugin_prefix(env_id) is None:
        raise UsageError(
            f"unknown environment {env_id!r}; choose one of {', '.join(envs.list_envs())}, "
            "a gymnasium id as gym:<id> (e.g. gym:Pendulum-v1), a gymnax id as gymnax:<id>, a VMAS "
            "scenario as vmas:<scenario> or an MPE2 one as mpe2:<scenario>"
        )
    gym_only = [k for k in (env_options or {}) if k in GYM_OPTIONS]
    if not gym and gym_only:
        raise UsageError(
            f"{', '.join('--' + k.replace('_', '-') for k in gym_only)}: only for gym:<id> environments"
        )
    try:
        env = envs.make(env_id, **(env_options or {}))
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None
    multi = bool(getattr(env, "multi_agent", False))
    if multi != bool(getattr(agent.config, "multi_agent", False)):
        fits = [a for a in sorted(AGENTS) if AGENTS[a].handles(env)]
        what = f"a multi-agent environment ({env.n_agents} agents)" if multi else "a single-agent environment"
        raise UsageError(
            f"{algo} is a {'single' if multi else 'multi'}-agent algorithm; {env_id} is {what} "
            f"(algorithms for {env_id}: {', '.join(fits)})"
        )
    if not agent.handles(env):
        kind = "discrete" if env.discrete else "continuous"
        kind = "slate" if isinstance(env.action_space, Slate) else kind
        need = " or ".join(agent.actions)
        fits = [e for e in envs.list_envs() if agent.handles(envs.make(e))]
        others = [a for a in sorted(AGENTS) if AGENTS[a].handles(env)]
        raise UsageError(
            f"{algo} needs {need} actions; {env_id} has {kind} actions "
            f"({need}: {', '.join(fits) or 'none built in'}; algorithms for {env_id}: {', '.join(others)})"
        )
    try:
        if steps is not None:
            overrides = {**overrides, "total_timesteps": steps}
        # a gymnasium id gets the tuned settings of the built-in environment of the same name
        bare = env_id[len(envs.GYM_PREFIX) :] if gym else env_id
        config = dataclasses.replace(agent.config.preset(bare, **overrides), env_id=env_id)
        return agent.make_train(config, env)
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None


def results_table(
    members: list[dict[str, Any]], returns: list[float], outcomes: dict[str, list[float]] | None = None
) -> list[str]:
    """One line per member (seed, final return, the environment's outcome rates such as the win
    rate, its hyper-parameters) and the summary line."""
    from frl.driver.logging import summarize

    outcomes = outcomes or {}
    head = "".join(f"  {name + ' rate':>10}" for name in outcomes)
    lines = ["seed  final eval return" + head, "----  -----------------" + "  ----------" * len(outcomes)]
    for i, (member, ret) in enumerate(zip(members, returns, strict=True)):
        rates = "".join(f"  {rates[i]:10.2f}" for rates in outcomes.values())
        extra = "".join(f"  {k}={v:g}" for k, v in member.items() if k != "seed")
        lines.append(f"{member['seed']:>4}  {ret:17.1f}{rates}{extra}")
    s = summarize(returns)
    summary = f"mean {s['mean']:.1f} +- {s['std']:.1f}   IQM {s['iqm']:.1f}   min {s['min']:.1f}"
    for name, rates in outcomes.items():
        summary += f"   {name} rate {sum(rates) / len(rates):.2f}"
    lines.append(summary)
    return lines
