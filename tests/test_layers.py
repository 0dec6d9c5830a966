"""The layers of ``../shared/DESIGN.md``: no module imports a higher layer, and the lower layers load
without TorchRL, gymnasium or the driver.

Every ``import`` statement of every module under ``frl/`` is read (module level and inside
functions alike). One indirection is by design and not an import statement: ``frl.envs.make``
serves ``gymnax:`` ids by importing ``frl.interop.jax`` through a plugin registry (the optional
module registers itself), so the pure environments never depend on JAX.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "frl"

LAYERS = {
    0: ("frl", "frl.random", "frl.tree", "frl._compile"),
    1: ("frl.nn", "frl.optim", "frl.returns", "frl.distributions", "frl._autodiff"),
    2: (
        "frl.losses",
        "frl.update",
        "frl.envs",
        "frl.buffers",
        "frl.planning",
        "frl.intrinsic",
        "frl.shaping",
    ),
    3: ("frl.algos", "frl.llm"),
    4: ("frl.driver", "frl.run", "frl.plot", "frl.interop", "frl.distributed", "frl.bench", "frl.cli"),
}


def layer_of(module: str) -> int:
    """The layer of ``module``: its longest listed prefix."""
    best, found = -1, None
    for layer, names in LAYERS.items():
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), layer
    if found is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to DESIGN.md's table)")
    return found


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, path))
    return out


def frl_imports(module: str, path: Path) -> list[tuple[int, str]]:
    """``(line, imported module)`` of every import of a frl module in ``path``."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "frl"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            if base.split(".")[0] != "frl":
                continue
            for alias in node.names:  # `from frl import envs` imports the module frl.envs
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if _is_module(candidate) else base))
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT / rel.with_suffix(".py")).exists() or (ROOT / rel / "__init__.py").exists()


@pytest.mark.parametrize(("module", "path"), modules(), ids=[m for m, _ in modules()])
def test_no_module_imports_a_higher_layer(module, path):
    mine = layer_of(module)
    for line, imported in frl_imports(module, path):
        theirs = layer_of(imported)
        assert theirs <= mine, (
            f"{path.relative_to(ROOT)}:{line}: {module} (layer {mine}) imports {imported} (layer {theirs})"
        )


def _imported_by(statement: str) -> set[str]:
    """The modules ``python -X importtime -c statement`` loads, in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stderr
    return {line.rsplit("|", 1)[-1].strip() for line in out.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("module", ["frl.random", "frl.losses", "frl.envs", "frl.algos"])
def test_lower_layers_load_without_torchrl_gymnasium_or_the_driver(module):
    loaded = _imported_by(f"import {module}")
    assert module in loaded
    heavy = sorted(
        m for m in loaded if m.split(".")[0] in ("torchrl", "gymnasium") or m.startswith("frl.driver")
    )
    assert not heavy, heavy


def test_the_root_is_lazy_and_frl_run_is_both_module_and_function():
    loaded = _imported_by("import frl; frl.random.key(0)")
    assert "frl.driver" not in loaded and "frl.algos" not in loaded
    import frl
    import frl.run

    assert callable(frl.run) and frl.run.RunResult is not None and frl.run.run is not frl.run
    from frl.run import RunResult, evaluate, run

    assert run.__module__ == "frl.driver.loop" and RunResult.__name__ == "RunResult" and callable(evaluate)
