"""Filter registry and chain assembly."""
from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any, Iterable

from selfinstruct.errors import UsageError
from selfinstruct.filters.base import STAGES, Filter, FilterChain, RejectSink

REGISTRY: dict[str, type[Filter]] = {}

# Modules holding the built-in filters, in the order their filters run inside a stage.
_MODULES = ("exact", "quality", "lang", "minhash", "rouge")


def register(cls: type[Filter]) -> type[Filter]:
    if not cls.name or cls.stage not in STAGES:
        raise ValueError(f"filter {cls!r} needs a name and a stage in {STAGES}")
    REGISTRY[cls.name] = cls
    return cls


def load_builtin() -> dict[str, type[Filter]]:
    for mod in _MODULES:
        importlib.import_module(f"selfinstruct.filters.{mod}")
    return REGISTRY


def resolve(names: Iterable[str]) -> set[str]:
    """Filter names for a list of stage and/or filter names; unknown ones are a UsageError."""
    load_builtin()
    out: set[str] = set()
    for n in names:
        n = n.strip()
        if not n:
            continue
        if n in STAGES:
            out |= {name for name, cls in REGISTRY.items() if cls.stage == n}
        elif n in REGISTRY:
            out.add(n)
        else:
            known = ", ".join(list(STAGES) + sorted(set(REGISTRY) - set(STAGES)))
            raise UsageError(f"unknown filter '{n}' (known: {known})")
    return out


def build_chain(only: Iterable[str] = (), skip: Iterable[str] = (), options: dict[str, Any] | None = None,
                on_reject: RejectSink | None = None, default_off: Iterable[str] = ()) -> FilterChain:
    """The chain of registered filters in stage order.

    ``only``/``skip`` take stage names (exact, quality, minhash, rouge) or filter names.
    ``options`` are keyword arguments handed to each filter whose constructor accepts them
    (``lang``, ``rouge_threshold``, ``minhash_threshold``…). ``default_off`` lists filters left out
    unless named in ``only``.
    """
    load_builtin()
    only_set, skip_set = resolve(only), resolve(skip)
    off = resolve(default_off)
    options = options or {}
    chain: list[Filter] = []
    for stage in STAGES:
        for name, cls in REGISTRY.items():
            if cls.stage != stage:
                continue
            if only_set and name not in only_set:
                continue
            if not only_set and name in off:
                continue
            if name in skip_set:
                continue
            params = _init_params(cls)
            kwargs = {k: v for k, v in options.items() if k in params}
            chain.append(cls(**kwargs))
    return FilterChain(chain, on_reject=on_reject)


@functools.lru_cache(maxsize=None)
def _init_params(cls: type) -> frozenset[str]:
    """The keyword arguments ``cls`` takes (inspect.signature parses builtin signatures from text:
    ~5 ms a call for a filter without its own __init__, paid by every generate run otherwise)."""
    return frozenset(inspect.signature(cls.__init__).parameters)
