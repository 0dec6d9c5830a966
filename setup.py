"""Build script for frl's one compiled piece: the C++ operators in ``frl/csrc`` (the threefry kernels,
the radix sort, the caching host allocator and two matrix products; see ``frl/_native.py``).

Where torch is importable at build time (``pip wheel --no-build-isolation .``, as CI builds the
release wheel), the operators are compiled into the wheel as the extension ``frl._C``: a
platform wheel that needs no compiler at run time. Elsewhere (an isolated build without torch, or
``FRL_BUILD_EXTENSION=0``) the wheel is pure Python and ships the C++ source: the first use
builds it with the system compiler, or falls back to NumPy with a note (``frl.random``).
Everything else (metadata, version from git tags) is in ``pyproject.toml``.
"""

import os

from setuptools import setup

ext_modules, cmdclass = [], {}
if os.environ.get("FRL_BUILD_EXTENSION", "1") != "0":
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:  # no torch in the build environment: a pure wheel
        pass
    else:
        names = ("threefry", "host_cache", "onednn_matmul", "stable_order", "small_rows_bmm")
        sources = [f"frl/csrc/{name}.cpp" for name in names]  # frl/_native.py's SOURCES
        ext_modules = [CppExtension("frl._C", sources, extra_compile_args=["-O2", "-ffp-contract=off"])]
        cmdclass = {"build_ext": BuildExtension.with_options(use_ninja=False)}

setup(ext_modules=ext_modules, cmdclass=cmdclass)
