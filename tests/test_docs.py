"""The documentation's Python runs as written: every ```python block of each page in docs/, in
order, in one namespace per page (the how-to snippets are tested code, not prose). Excerpts that
are not meant to run on their own (a fragment of a longer file) are fenced as ```py instead."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts and "_autosummary" not in p.parts)
RUNNABLE = [p for p in PAGES if "```python" in p.read_text()]


def test_the_pages_with_code_are_found():
    names = {p.relative_to(DOCS).as_posix() for p in RUNNABLE}
    assert {"getting-started.md", "concepts.md", "howto.md", "benchmarks.md"} <= names


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a snippet writes lands in a temporary folder
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    module = types.ModuleType(f"docs_{page.stem.replace('-', '_')}")  # dataclasses look their module up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for block in blocks:
        exec(compile(block, str(page), "exec"), module.__dict__)  # our own documentation
