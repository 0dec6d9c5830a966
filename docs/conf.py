"""Sphinx configuration: ``make docs`` builds the site offline into ``docs/_build/html``.

Pages are Markdown (MyST); the API reference is generated from the docstrings (autodoc with
napoleon for the ``Args:``/``Returns:`` sections, autosummary walking every module of ``frl``).
Every object is documented once, in the module that defines it (``ignore-module-all``: a package's
re-exports are links, not copies). Warnings fail the build (``make docs`` passes ``-W``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import frl  # noqa: E402

project = "frl"
author = "the frl authors"
copyright = "2026, the frl authors"
version = release = frl.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
templates_path = ["_templates"]
exclude_patterns = ["_build", "_autosummary/*.tmp"]
root_doc = "index"

myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

autosummary_generate = True
autosummary_ignore_module_all = True
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" sections as fields, not second descriptions of dataclass fields

# Short type names in signatures (``dtype``, ``Tensor``) match attributes of many classes; the
# Python domain's "more than one target" notes are about those, not about the pages' own links.
suppress_warnings = ["ref.python"]

html_theme = "alabaster"
html_title = f"frl {release}"
html_static_path: list[str] = []
html_theme_options = {"description": "functional reinforcement learning on torch", "fixed_sidebar": True}
