"""The filters there are, and the chain built from them.

Filters are found, not listed: every ``Filter`` subclass with a ``name`` defined in a module of this
package (``filters/``), plus those that installed packages expose through the entry-point group
``selfinstruct.filters`` (a module or a class). ``build_chain`` orders them by ``STAGES``, then by
each filter's ``order``; each filter gets the options it declares (``selfinstruct.options``).
"""
from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import Any, Iterable, Iterator

from selfinstruct import plugins
from selfinstruct.errors import UsageError
from selfinstruct.filters.base import STAGES, Filter, FilterChain
from selfinstruct.options import Component

_NOT_FILTERS = ("base", "registry")


@functools.lru_cache(maxsize=None)
def _load() -> dict[str, type[Filter]]:
    found: list[tuple[int, int, str, int, type[Filter]]] = []
    sources = [(name, importlib.import_module(f"selfinstruct.filters.{name}"))
               for name in plugins.builtin_module_names("selfinstruct.filters", _NOT_FILTERS)]
    sources += [(ep.name, plugins.load_entry_point("filters", ep))
                for ep in plugins.plugin_entry_points("filters")]
    for module_name, obj in sources:
        for position, cls in enumerate(plugins.classes_in(obj, Filter)):
            if cls.stage not in STAGES:
                raise UsageError(f"filter '{cls.name}' ({module_name}) names the stage '{cls.stage}' "
                                 f"(stages: {', '.join(STAGES)})")
            found.append((STAGES.index(cls.stage), cls.order, module_name, position, cls))
    out: dict[str, type[Filter]] = {}
    for *_, cls in sorted(found, key=lambda f: f[:4]):
        if cls.name in STAGES and cls.stage != cls.name:
            raise UsageError(f"filter '{cls.name}' takes the name of a stage")
        out.setdefault(cls.name, cls)       # a built-in keeps its name over a plugin's
    return out


def filter_classes() -> dict[str, type[Filter]]:
    """Every known filter by name, in chain order."""
    return _load()


class _Registry(Mapping):
    """``REGISTRY[name]``: the filter classes, discovered on first use."""

    def __getitem__(self, name: str) -> type[Filter]:
        return _load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_load())

    def __len__(self) -> int:
        return len(_load())


REGISTRY = _Registry()


def resolve(names: Iterable[str]) -> set[str]:
    """Filter names for a list of stage and/or filter names; unknown ones are a UsageError."""
    classes = _load()
    out: set[str] = set()
    for n in names:
        n = n.strip()
        if not n:
            continue
        if n in STAGES:
            out |= {name for name, cls in classes.items() if cls.stage == n}
        elif n in classes:
            out.add(n)
        else:
            known = ", ".join(list(STAGES) + sorted(set(classes) - set(STAGES)))
            raise UsageError(f"unknown filter '{n}' (known: {known})")
    return out


def select(only: Iterable[str] = (), skip: Iterable[str] = (),
           default_off: Iterable[str] = ()) -> list[type[Filter]]:
    """The filter classes a chain runs, in chain order. ``only``/``skip`` take stage or filter
    names; ``default_off`` lists filters left out unless named in ``only``."""
    only_set, skip_set, off = resolve(only), resolve(skip), resolve(default_off)
    return [cls for name, cls in _load().items()
            if (name in only_set if only_set else name not in off) and name not in skip_set]


def components(classes: Iterable[type[Filter]]) -> list[Component]:
    """The filters as option-taking components (prefixable by filter name or stage)."""
    return [Component(cls.name, cls, (cls.stage,)) for cls in classes]


def build_chain(classes: Iterable[type[Filter]], options: dict[str, Any] | None = None,
                per_filter: dict[Component, dict[str, Any]] | None = None) -> FilterChain:
    """The chain of ``classes`` (from ``select``, in chain order).

    ``options`` are shared settings (``lang``, ``rouge_threshold``…) handed to each filter that
    declares them; ``per_filter`` (from ``selfinstruct.options.resolve``) the ``--opt`` settings
    by component, which win over the shared ones.
    """
    options = options or {}
    given = {c.cls: kw for c, kw in (per_filter or {}).items()}
    chain = []
    for cls in classes:
        declared = Component(cls.name, cls).options()
        kwargs = {k: v for k, v in options.items() if k in declared}
        kwargs.update(given.get(cls, {}))
        chain.append(cls(**kwargs))
    return FilterChain(chain)
