"""The one line every peer prints: ``RESULT {json}`` (standard library only: peers run in their
own virtual environments)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import metadata


def emit(
    peer: str,
    packages: Sequence[str],
    *,
    seeds: int,
    steps_per_seed: int,
    run_s: float,
    wall_s: float,
    compile_s: float = 0.0,
    returns: Sequence[float] = (),
) -> None:
    """Print the row: env-steps/s over ``run_s`` (compile excluded), the installed versions of
    ``packages``, and the mean of the last 20 episode ``returns`` (null without episodes)."""
    last = list(returns)[-20:]
    row = {
        "peer": peer,
        "versions": {name: metadata.version(name) for name in packages},
        "seeds": seeds,
        "steps_per_seed": steps_per_seed,
        "env_steps_per_s": steps_per_seed * seeds / run_s,
        "compile_s": compile_s,
        "wall_s": wall_s,
        "final_return": sum(last) / len(last) if last else None,
    }
    print("RESULT " + json.dumps(row), flush=True)
