"""A bench folder's report: ``report.md`` (tables, images beside it) and a self-contained
``report.html`` (the same, images inlined), read from ``manifest.json``, ``random.json`` and the
cells.

Contents: the settings and machine; per-task learning curves (mean over seeds with 95% bootstrap
bands, the random policy and the published references as lines); a final table per task (mean and
IQM of the final evaluation with 95% bootstrap intervals, the normalised IQM); aggregates across
tasks on normalised scores (median, IQM, mean, optimality gap with 95% stratified-bootstrap
intervals), the probability of improvement between every two algorithms over the tasks both ran,
and performance profiles (Agarwal et al. 2021, :mod:`frl.bench.stats`); a throughput table
(env-steps/s, compile s, wall s per cell); peers' rows when the folder holds ``peers/*.json``
(``benchmarks/peers/run.py --into DIR``); the references with their sources.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frl.bench import stats
from frl.bench.runner import MANIFEST, RANDOM, load_cells
from frl.bench.suites import Reference, get_suite

__all__ = ["BenchData", "load", "write_report"]


@dataclass
class BenchData:
    """A bench folder read back: tasks in suite order, algorithms in order of appearance,
    ``finals[(algo, env)] = [return per seed]`` and the cells' records."""

    folder: Path
    manifest: dict[str, Any]
    randoms: dict[str, float]
    tasks: list[str]
    algos: list[str]
    cells: dict[tuple[str, str], dict[str, Any]]
    references: dict[str, Reference]
    others: dict[str, tuple[Reference, ...]]

    @property
    def suite(self) -> str:
        return self.manifest["settings"]["suite"]

    def finals(self, algo: str, env: str) -> np.ndarray:
        return np.asarray(self.cells[(algo, env)]["eval_returns"], dtype=np.float64)

    def normalized(self, algo: str, env: str) -> np.ndarray:
        return stats.normalize(self.finals(algo, env), self.randoms[env], self.references[env].value)

    def tasks_of(self, algo: str) -> list[str]:
        return [env for env in self.tasks if (algo, env) in self.cells]

    def score_matrix(self, algo: str, tasks: list[str]) -> np.ndarray:
        """Normalised final scores ``[seeds, tasks]``."""
        return np.stack([self.normalized(algo, env) for env in tasks], axis=1)


def load(folder: str | Path) -> BenchData:
    """Read a bench folder (finished cells only)."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    randoms = json.loads((folder / RANDOM).read_text()) if (folder / RANDOM).exists() else {}
    suite = get_suite(manifest["settings"]["suite"])
    order = [(a, e) for a, e, _ in manifest["settings"]["cells"]]
    cells = {(c["algo"], c["env"]): c for c in load_cells(folder).values() if (c["algo"], c["env"]) in order}
    tasks = [t.env for t in suite.tasks if any(e == t.env for _, e in order)]
    algos: list[str] = []
    for a, _ in order:
        if a not in algos:
            algos.append(a)
    return BenchData(
        folder=folder,
        manifest=manifest,
        randoms=randoms,
        tasks=tasks,
        algos=algos,
        cells=cells,
        references={t.env: t.reference for t in suite.tasks},
        others={t.env: t.others for t in suite.tasks},
    )


def _ci(point: float, low: float, high: float, fmt: str = ".3g") -> str:
    if not math.isfinite(point):
        return "-"
    return f"{point:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def _table(columns: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def final_table(data: BenchData, reps: int) -> list[list[str]]:
    """Per task and algorithm: mean and IQM of the final return with 95% bootstrap intervals
    over seeds, the normalised IQM, the seeds that met a non-finite value."""
    rows = []
    for env in data.tasks:
        for algo in data.algos:
            if (algo, env) not in data.cells:
                continue
            cell = data.cells[(algo, env)]
            x = data.finals(algo, env)[:, None]
            mean = stats.stratified_bootstrap(stats.aggregate_mean, x, reps=reps)
            mid = stats.stratified_bootstrap(stats.aggregate_iqm, x, reps=reps)
            norm = stats.stratified_bootstrap(
                stats.aggregate_iqm, data.normalized(algo, env)[:, None], reps=reps
            )
            bad = (
                "all (diverged)"
                if cell.get("diverged")
                else str(len({f["member"] for f in cell.get("nonfinite", [])}))
            )
            rows.append(
                [
                    env,
                    algo,
                    str(len(x)),
                    _ci(*map(float, mean), ".1f"),
                    _ci(*map(float, mid), ".1f"),
                    _ci(*map(float, norm), ".2f"),
                    bad,
                ]
            )
    return rows


def aggregates(data: BenchData, reps: int) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Each algorithm's four aggregates over the tasks it ran (normalised scores)."""
    scores = {a: data.score_matrix(a, data.tasks_of(a)) for a in data.algos if data.tasks_of(a)}
    return stats.interval_table(scores, reps=reps)


def improvements(data: BenchData, reps: int) -> dict[tuple[str, str], tuple[float, float, float, int]]:
    """``P(X > Y)`` with its interval and the number of shared tasks, for every two algorithms that
    share at least one task."""
    out = {}
    algos = [a for a in data.algos if data.tasks_of(a)]
    for i, x in enumerate(algos):
        for y in algos[i + 1 :]:
            shared = [e for e in data.tasks_of(x) if e in data.tasks_of(y)]
            if not shared:
                continue
            point, low, high = stats.stratified_bootstrap(
                stats.probability_of_improvement,
                data.score_matrix(x, shared),
                data.score_matrix(y, shared),
                reps=reps,
            )
            out[(x, y)] = (float(point), float(low), float(high), len(shared))
    return out


def _intervals(ax: Any, rows: list[tuple[tuple[float, float, float], str]]) -> None:
    """One horizontal bar per row from its interval's low to high, a tick at its point."""
    for k, ((point, low, high), color) in enumerate(rows):
        ax.barh(k, high - low, left=low, height=0.6, color=color, alpha=0.75)
        ax.plot([point, point], [k - 0.3, k + 0.3], color="k", linewidth=1.5)
    ax.set_yticks(range(len(rows)))


def _figures(data: BenchData, out: Path, reps: int, table: dict, pairs: dict) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from frl.plot import bootstrap_band

    colors = {a: f"C{i}" for i, a in enumerate(data.algos)}
    paths: dict[str, Path] = {}

    # per-task learning curves
    n = len(data.tasks)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), dpi=100, squeeze=False)
    for ax, env in zip(axes.flat, data.tasks, strict=False):
        for algo in data.algos:
            cell = data.cells.get((algo, env))
            if cell is None or not cell.get("curve"):
                continue
            steps = np.asarray([p[0] for p in cell["curve"]], dtype=np.float64)
            values = np.asarray(
                [[np.nan if v is None else v for v in p[1]] for p in cell["curve"]], dtype=np.float64
            )
            center, low, high = bootstrap_band(values, samples=2000)
            marker = "o" if len(steps) < 3 else None
            ax.plot(
                steps, center, color=colors[algo], marker=marker, label=f"{algo} ({values.shape[1]} seeds)"
            )
            ax.fill_between(steps, low, high, color=colors[algo], alpha=0.2, linewidth=0)
        ref = data.references[env]
        ax.axhline(ref.value, color="k", linestyle="--", linewidth=1, label=f"{ref.label}")
        for other in data.others[env]:
            ax.axhline(other.value, color="0.4", linestyle=":", linewidth=1, label=other.label)
        if env in data.randoms:
            ax.axhline(data.randoms[env], color="0.6", linestyle="-.", linewidth=1, label="random policy")
        ax.set_title(env)
        ax.set_xlabel("environment steps (per seed)")
        ax.set_ylabel("evaluation return")
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    paths["curves"] = out / "curves.png"
    fig.savefig(paths["curves"])
    plt.close(fig)

    # aggregate interval estimates
    if table:
        names = list(table)
        fig, axes = plt.subplots(1, 4, figsize=(14, 0.5 * len(names) + 1.6), dpi=100, squeeze=False)
        for ax, metric in zip(axes[0], stats.AGGREGATES, strict=True):
            _intervals(ax, [(table[algo][metric], colors[algo]) for algo in names])
            ax.set_yticklabels(names if metric == "Median" else [])
            ax.set_title(metric)
            ax.set_xlabel("normalised score")
            ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        paths["aggregates"] = out / "aggregates.png"
        fig.savefig(paths["aggregates"])
        plt.close(fig)

    # probability of improvement
    if pairs:
        fig, ax = plt.subplots(figsize=(6, 0.45 * len(pairs) + 1.2), dpi=100)
        _intervals(ax, [(interval[:3], colors[x]) for (x, _), interval in pairs.items()])
        ax.set_yticklabels([f"P({x} > {y})" for x, y in pairs])
        ax.axvline(0.5, color="0.5", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_xlabel("probability of improvement (shared tasks)")
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        paths["improvement"] = out / "improvement.png"
        fig.savefig(paths["improvement"])
        plt.close(fig)

    # performance profiles
    scores = {a: data.score_matrix(a, data.tasks_of(a)) for a in data.algos if data.tasks_of(a)}
    if scores:
        top = max(1.5, max(float(np.nanmax(s)) for s in scores.values()))
        taus = np.linspace(0.0, top, 61)
        fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=100)
        for algo, s in scores.items():
            point, low, high = stats.stratified_bootstrap(
                lambda m: stats.score_distribution(m, taus), s, reps=min(reps, 2000)
            )
            ax.plot(taus, point, color=colors[algo], label=f"{algo} ({s.shape[1]} tasks)")
            ax.fill_between(taus, low, high, color=colors[algo], alpha=0.2, linewidth=0)
        ax.set_xlabel(r"normalised score $\tau$")
        ax.set_ylabel(r"fraction of runs with score $> \tau$")
        ax.set_title("performance profiles")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        paths["profiles"] = out / "profiles.png"
        fig.savefig(paths["profiles"])
        plt.close(fig)
    return paths


def _peers(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((folder / "peers").glob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except ValueError:
            continue
        for row in payload.get("rows", []):
            rows.append({"algo": payload.get("algo", path.stem), "env": payload.get("env", "?"), **row})
    return rows


def markdown(data: BenchData, reps: int, images: dict[str, Path], table: dict, pairs: dict) -> str:
    """The report as Markdown (images by relative path)."""
    s = data.manifest["settings"]
    m = data.manifest["machine"]
    missing = [f"{a} on {e}" for a, e, _ in s["cells"] if (a, e) not in data.cells]
    lines = [
        f"# frl bench {data.suite}",
        "",
        f"{len(data.cells)} of {len(s['cells'])} cells finished"
        + (f" (not finished: {', '.join(missing)})" if missing else "")
        + f"; {len(s['seeds'])} seeds each (seeds {s['seeds'][0]}..{s['seeds'][-1]}), trained vmapped"
        f" in one {'compiled' if s['compile'] else 'eager'} run per cell; the score of a seed is its"
        f" final deterministic evaluation ({s['eval_episodes']} episodes). Budget scale {s['scale']:g}"
        + (f"; overrides {json.dumps(s['overrides'])}" if s["overrides"] else "")
        + ".",
        "",
        f"frl {m['frl']} at {m['commit']}; Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
        + f"; {m['cpu']} ({m['cpus']} CPUs), {m['processes']} processes x {m['threads_per_process']}"
        f" thread ({m['backend']}); started {data.manifest['started']}"
        + (f", finished {data.manifest['finished']}" if "finished" in data.manifest else "")
        + (f", resumed {len(data.manifest['resumed'])} time(s)" if data.manifest.get("resumed") else "")
        + ".",
        "",
    ]
    commits = sorted({str(c.get("commit")) for c in data.cells.values()})
    if len(commits) > 1:
        lines += [
            f"**The cells ran at {len(commits)} commits** (a suite resumed after a code change): "
            + ", ".join(commits)
            + ".",
            "",
        ]
    lines += [
        "## Learning curves",
        "",
        "Mean evaluation return over seeds with a 95% bootstrap band; dashed: the reference that"
        " scores 1, dotted: other published results, dash-dotted: the random policy (scores 0).",
        "",
    ]
    if "curves" in images:
        lines += [f"![learning curves]({images['curves'].name})", ""]
    lines += ["## Final returns", ""]
    lines += _table(
        [
            "task",
            "algorithm",
            "seeds",
            "mean [95% CI]",
            "IQM [95% CI]",
            "normalised IQM [95% CI]",
            "non-finite seeds",
        ],
        final_table(data, reps),
    )
    lines += [
        "",
        "## Aggregates across tasks (normalised: random = 0, reference = 1)",
        "",
        "95% stratified bootstrap intervals over seeds (Agarwal et al. 2021); each algorithm over"
        " the tasks it ran. The optimality gap is the shortfall below 1 (lower is better).",
        "",
    ]
    lines += _table(
        ["algorithm", "tasks", *stats.AGGREGATES],
        [
            [a, str(len(data.tasks_of(a)))] + [_ci(*table[a][k], ".3f") for k in stats.AGGREGATES]
            for a in table
        ],
    )
    if "aggregates" in images:
        lines += ["", f"![aggregates]({images['aggregates'].name})"]
    if pairs:
        lines += [
            "",
            "## Probability of improvement",
            "",
            "P(X > Y) over the tasks both ran, 95% interval:",
            "",
        ]
        lines += _table(
            ["X", "Y", "shared tasks", "P(X > Y) [95% CI]"],
            [[x, y, str(n), _ci(p, lo, hi, ".3f")] for (x, y), (p, lo, hi, n) in pairs.items()],
        )
        if "improvement" in images:
            lines += ["", f"![probability of improvement]({images['improvement'].name})"]
    if "profiles" in images:
        lines += [
            "",
            "## Performance profiles",
            "",
            "The fraction of runs (all seeds of all tasks an algorithm ran) scoring above each"
            " normalised threshold, with 95% bands.",
            "",
            f"![performance profiles]({images['profiles'].name})",
        ]
    lines += ["", "## Throughput", ""]
    rows = []
    for env in data.tasks:
        for algo in data.algos:
            cell = data.cells.get((algo, env))
            if cell is None:
                continue
            rows.append(
                [
                    env,
                    algo,
                    f"{cell['steps']:,}",
                    f"{cell.get('env_steps_per_s', float('nan')):,.0f}",
                    f"{cell.get('compile_s', float('nan')):.0f}",
                    f"{cell['wall_s']:.0f}",
                ]
            )
    lines += _table(
        ["task", "algorithm", "steps per seed", "env-steps/s (all seeds)", "compile s", "wall s"], rows
    )
    total = sum(c["wall_s"] for c in data.cells.values())
    lines += ["", f"Cells' wall time summed: {total:,.0f} s (cells ran {m['processes']} at a time)."]
    peers = _peers(data.folder)
    lines += ["", "## Peers", ""]
    if peers:
        lines += _table(
            [
                "algorithm",
                "task",
                "peer",
                "seeds",
                "steps per seed",
                "env-steps/s",
                "compile s",
                "wall s",
                "return, last 20 training episodes",
            ],
            [
                [
                    str(p["algo"]),
                    str(p["env"]),
                    str(p.get("row", p.get("peer", "?"))),
                    str(p.get("seeds", "?")),
                    f"{p.get('steps_per_seed', 0):,}",
                    f"{p.get('env_steps_per_s', float('nan')):,.0f}",
                    f"{p.get('compile_s', 0.0):.0f}",
                    f"{p.get('wall_s', float('nan')):.0f}",
                    "-" if p.get("final_return") is None else f"{p['final_return']:.1f}",
                ]
                for p in peers
            ],
        )
        lines += [
            "",
            "Peers run one seed per process, except the JAX peer (all seeds vmapped in one process), at"
            " frl's default settings for the algorithm (CleanRL's; SAC with 256x256 networks), each in its"
            " own pinned environment on one CPU. Their return is the mean of the last 20 training episodes"
            " (the stochastic policy), not frl's deterministic evaluation.",
        ]
    else:
        lines += [
            "No peer results in this folder: `python benchmarks/peers/run.py --setup`, then "
            f"`python benchmarks/peers/run.py --algo ALGO --seeds 1 --steps N --into {data.folder}`"
            " puts their rows here at the suite's budget.",
        ]
    lines += ["", "## References", ""]
    lines += _table(
        ["task", "random policy (0)", "reference (1)", "source", "other published results"],
        [
            [
                env,
                f"{data.randoms.get(env, float('nan')):.2f}",
                f"{data.references[env].value:g} ({data.references[env].label})",
                data.references[env].source,
                "; ".join(f"{o.value:g} ({o.label}, {o.source})" for o in data.others[env]) or "-",
            ]
            for env in data.tasks
        ],
    )
    lines += [
        "",
        "The random policy's return is measured on frl's environment (100 episodes, uniform"
        " actions) unless the suite states it.",
        "",
    ]
    return "\n".join(lines)


def _inline_html(md: str, images: dict[str, Path]) -> str:
    """A small Markdown-to-HTML rendering of the report (headings, paragraphs, tables, images),
    images inlined as base64 so the file stands alone."""
    body: list[str] = []
    lines = md.splitlines()
    i = 0

    def inline(text: str) -> str:
        out = html.escape(text)
        parts = out.split("`")
        return "".join(f"<code>{p}</code>" if k % 2 else p for k, p in enumerate(parts))

    by_name = {p.name: p for p in images.values()}
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("!["):
            alt, _, rest = line[2:].partition("](")
            name = rest.rstrip(")")
            data = base64.b64encode(by_name[name].read_bytes()).decode() if name in by_name else ""
            body.append(f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>')
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            head, rest_rows = rows[0], rows[2:]
            body.append(
                "<table><thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr></thead>"
            )
            body.append(
                "<tbody>"
                + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rest_rows)
                + "</tbody></table>"
            )
            continue
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
        i += 1
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
        "td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}th{background:#eee}"
        "img{max-width:100%}code{background:#f3f3f3}"
    )
    title = inline(lines[0].lstrip("# ")) if lines else "frl bench"
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(folder: str | Path, reps: int = 50_000) -> tuple[Path, Path]:
    """Write ``report.md`` (with ``curves.png``, ``aggregates.png``, ``improvement.png``,
    ``profiles.png`` beside it) and a self-contained ``report.html`` into ``folder``."""
    data = load(folder)
    out = Path(folder)
    table = aggregates(data, reps)  # the bootstraps run once, for the figures and the tables
    pairs = improvements(data, min(reps, 2000))
    images = _figures(data, out, reps, table, pairs) if data.cells else {}
    md = markdown(data, reps, images, table, pairs)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(md)
    html_path.write_text(_inline_html(md, images))
    return md_path, html_path
