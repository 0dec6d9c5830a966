"""After ``make docs``: every public function and class of ``frl`` is in the API reference.

Public means named in the ``__all__`` of the module that defines it (a package's re-exports are
documented where they are defined). The built site's inventory (``objects.inv``) must hold each
one with its docstring's page; the check names what is missing.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

from sphinx.util.inventory import InventoryFile

import frl


def public_objects() -> dict[str, tuple[object, set[str]]]:
    """``{defining module.name: (object, every public name of it)}`` for the classes and functions
    of public modules' ``__all__``; an object defined in a private module (``frl._compile``)
    counts where a public module re-exports it (``frl.compile``)."""
    objects: dict[int, tuple[object, str | None, set[str]]] = {}
    for info in pkgutil.walk_packages(frl.__path__, "frl."):
        if info.name.endswith("__main__"):  # running it is the command line, not an import
            continue
        module = importlib.import_module(info.name)
        private = any(part.startswith("_") for part in info.name.split("."))
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name, None)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or not obj.__module__.startswith("frl"):
                continue
            entry = objects.setdefault(id(obj), (obj, None, set()))
            if not private:
                entry[2].add(f"{module.__name__}.{name}")
            if obj.__module__ == module.__name__:
                objects[id(obj)] = (obj, f"{module.__name__}.{name}", entry[2])
    for obj, home, names in objects.values():  # documented in its defining module counts too
        if home is None and not any(p.startswith("_") for p in obj.__module__.split(".")):
            names.add(f"{obj.__module__}.{obj.__name__}")
    frl_public = {f"frl.{n}" for n in frl.__all__}
    out = {}
    for obj, home, names in objects.values():
        if names or home in frl_public:
            out[home or sorted(names)[0]] = (obj, names)
    return out


def documented(inventory: Path) -> set[str]:
    with inventory.open("rb") as f:
        inv = InventoryFile.load(f, "", lambda base, uri: uri)
    found = set()
    for role in ("py:class", "py:function", "py:exception"):
        found.update(inv.get(role, {}))
    return found


def main() -> int:
    site = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "_build" / "html")
    found = documented(site / "objects.inv")
    public = public_objects()
    missing = sorted(home for home, (_, names) in public.items() if not names & found)
    bare = sorted(home for home, (obj, _) in public.items() if not inspect.getdoc(obj))
    for label, items in (("missing from the API reference", missing), ("without a docstring", bare)):
        if items:
            print(f"check_api: {len(items)} public objects {label}:", *items, sep="\n  ")
    if missing or bare:
        return 1
    print(f"check_api: all {len(public)} public classes and functions are in the API reference")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
