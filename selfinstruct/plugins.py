"""Where components come from: the modules of a package folder, and Python entry points.

Four kinds of component plug in the same way: filters, readers, teachers and recipes. A built-in
one is a module in its package folder (``filters/``, ``selfinstruct/readers/``,
``selfinstruct/teachers/``, ``selfinstruct/recipes/``); a separately installed package adds one by
declaring an entry point in the group ``selfinstruct.<kind>`` (the way ``llm`` plugins do)::

    [project.entry-points."selfinstruct.filters"]
    my_filter = "my_package.my_filter"          # a module, or a class: "my_package.mod:MyFilter"

Nothing else is edited: no central list names them. Modules whose name starts with ``_`` and the
kind's own infrastructure modules (``base``…) are not components.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, Iterable

from selfinstruct.errors import UsageError

GROUP_PREFIX = "selfinstruct."


def builtin_module_names(package: str, exclude: Iterable[str] = ()) -> list[str]:
    """Names of the component modules in ``package``'s folder(s), sorted (no import happens)."""
    pkg = importlib.import_module(package)
    skip = set(exclude)
    names = {m.name for m in pkgutil.iter_modules(pkg.__path__)
             if not m.name.startswith("_") and m.name not in skip}
    return sorted(names)


@functools.lru_cache(maxsize=None)
def plugin_entry_points(kind: str) -> tuple[Any, ...]:
    """The installed entry points of the group ``selfinstruct.<kind>``, by name (not loaded)."""
    return tuple(sorted(entry_points(group=GROUP_PREFIX + kind), key=lambda ep: ep.name))


def load_entry_point(kind: str, ep) -> Any:
    """The module or object an entry point names; a broken plugin is one clear error."""
    try:
        return ep.load()
    except Exception as e:  # a plugin's import error is the plugin's, but say whose it is
        raise UsageError(f"the {kind} plugin '{ep.name}' ({ep.value}) failed to load: "
                         f"{type(e).__name__}: {e}") from None


def classes_in(obj: Any, base: type) -> list[type]:
    """The concrete ``base`` subclasses a module defines (in definition order), or ``[obj]`` when
    ``obj`` is such a class itself."""
    if isinstance(obj, type):
        return [obj] if issubclass(obj, base) else []
    if not isinstance(obj, ModuleType):
        return []
    found = [v for v in vars(obj).values()
             if isinstance(v, type) and issubclass(v, base) and v is not base
             and v.__module__ == obj.__name__ and getattr(v, "name", "")]
    return found


def named_class(kind: str, name: str, builtin: dict[str, str], base: type, known: list[str]) -> type:
    """The ``base`` subclass called ``name``: from the built-in module ``builtin[name]`` (a full
    module path) or from the entry point of that name in ``selfinstruct.<kind>``."""
    what = kind.rstrip("s")
    if name in builtin:
        obj = importlib.import_module(builtin[name])
    else:
        ep = next((ep for ep in plugin_entry_points(kind) if ep.name == name), None)
        if ep is None:
            raise UsageError(f"unknown {what} '{name}' (choose from {', '.join(known)})")
        obj = load_entry_point(kind, ep)
    found = [c for c in classes_in(obj, base) if c.name == name]
    if len(found) != 1:
        raise UsageError(f"the {what} module '{name}' defines no {base.__name__} subclass named '{name}'")
    return found[0]
