"""Build script for frl's one compiled piece: the C++ operators in ``frl/csrc`` (the threefry kernels,
the radix sort, the caching host allocator and two matrix products; see ``frl/_native.py``).

Where torch is importable at build time (``pip wheel --no-build-isolation .``, as CI builds the
release wheel), the operators are compiled into the wheel as the extension ``frl._C``: a
platform wheel that needs no compiler at run time. Elsewhere (an isolated build without torch, or
``FRL_BUILD_EXTENSION=0``) the wheel is pure Python and ships the C++ source: the first use
builds it with the system compiler, or falls back to NumPy with a note (``frl.random``).
Everything else (metadata, version from git tags) is in ``pyproject.toml``.
"""

import ast
import os
from pathlib import Path

from setuptools import setup

NATIVE = Path(__file__).resolve().with_name("frl") / "_native.py"


def native_build_settings(path: Path = NATIVE) -> dict:
    """``{"SOURCES": ..., "CFLAGS": ...}`` as ``frl/_native.py`` assigns them, read without importing
    frl: the wheel's extension and the run-time build compile the same files with the same flags."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            name = getattr(node.targets[0], "id", None)
            if name in ("SOURCES", "CFLAGS"):
                found[name] = ast.literal_eval(node.value)
    missing = {"SOURCES", "CFLAGS"} - found.keys()
    if missing:
        raise RuntimeError(f"{path} assigns no literal {sorted(missing)}")
    return found


ext_modules, cmdclass = [], {}
if os.environ.get("FRL_BUILD_EXTENSION", "1") != "0":
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:  # no torch in the build environment: a pure wheel
        pass
    else:
        native = native_build_settings()
        sources = [f"frl/csrc/{name}" for name in native["SOURCES"]]
        ext_modules = [CppExtension("frl._C", sources, extra_compile_args=list(native["CFLAGS"]))]
        cmdclass = {"build_ext": BuildExtension.with_options(use_ninja=False)}

setup(ext_modules=ext_modules, cmdclass=cmdclass)
