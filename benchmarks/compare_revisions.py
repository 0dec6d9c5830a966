"""A benchmark at two git revisions, side by side in one run: is a change slower?

Each revision gets its own worktree (a temporary ``git worktree``; the working tree for
``--new .``) and its own Inductor cache; the benchmark runs alternately at the old and the new
revision, ``--repeats`` times each, in fresh processes with the same interpreter, thread count
and settings, and the table shows the median of each and their ratio.

    python benchmarks/compare_revisions.py --old 3807537 --new . -- bench_seeds.py --seeds 1 8 --steps 200000

The benchmark must write ``benchmarks/results/<name>.json`` with a ``rows`` list whose entries
carry ``env_steps_per_s`` (``bench_seeds.py`` does); rows are matched by their other fields.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import print_table, write_json

ROOT = Path(__file__).resolve().parents[1]
KEY_FIELDS = ("mode", "seeds", "steps_per_seed")


def _tree(revision: str, scratch: Path) -> Path:
    if revision == ".":
        return ROOT
    path = scratch / revision
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(path), revision], cwd=ROOT, check=True, capture_output=True
    )
    return path


def _run(tree: Path, script: str, args: list[str], cache: Path) -> list[dict]:
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "OMP_NUM_THREADS": "1",
        "TORCHINDUCTOR_CACHE_DIR": str(cache),
        "TORCHINDUCTOR_VEC_ISA_OK": "1",
    }
    subprocess.run([sys.executable, str(tree / "benchmarks" / script), *args], cwd=tree, env=env, check=True)
    name = Path(script).stem
    return json.loads((tree / "benchmarks" / "results" / f"{name}.json").read_text())["rows"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", required=True, help="a git revision")
    parser.add_argument("--new", default=".", help="a git revision, or . for the working tree")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "benchmark", nargs=argparse.REMAINDER, help="-- SCRIPT ARGS... (a script in benchmarks/)"
    )
    args = parser.parse_args()
    bench = [a for a in args.benchmark if a != "--"]
    if not bench:
        parser.error("name the benchmark after --, e.g. -- bench_seeds.py --seeds 1 8")
    script, bench_args = bench[0], bench[1:]
    samples: dict[tuple, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        trees = {"old": _tree(args.old, scratch), "new": _tree(args.new, scratch)}
        try:
            for _ in range(args.repeats):
                for label, tree in trees.items():  # alternate, so drifts in the machine hit both
                    for row in _run(tree, script, bench_args, scratch / f"cache-{label}"):
                        key = tuple(row.get(k) for k in KEY_FIELDS)
                        samples.setdefault(key, {"old": [], "new": []})[label].append(row["env_steps_per_s"])
        finally:
            for tree in trees.values():
                if tree != ROOT:
                    subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    rows, out = [], []
    for key, by in samples.items():
        old, new = statistics.median(by["old"]), statistics.median(by["new"])
        rows.append([*key, f"{old:,.0f}", f"{new:,.0f}", f"{new / old:.2f}"])
        out.append({**dict(zip(KEY_FIELDS, key)), "old": by["old"], "new": by["new"], "ratio": new / old})
    print_table(
        f"{script} at {args.old} (old) and {args.new} (new), median of {args.repeats} alternating runs",
        [*KEY_FIELDS, "old env-steps/s", "new env-steps/s", "new / old"],
        rows,
    )
    write_json(f"compare_{Path(script).stem}", {"old": args.old, "new": args.new, "rows": out})


if __name__ == "__main__":
    main()
