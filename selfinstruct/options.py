"""Component options: what a filter, teacher or recipe declares it takes, and the one way a user sets
them.

A component declares its options on itself: the keyword arguments of its ``__init__`` that have a
default, typed by their annotation (or, without one, by the default's type). The user sets any of
them with ``--opt NAME=VALUE`` (repeatable); ``NAME`` may be prefixed with the component's name, or
a filter's stage, where several components declare the same name (``--opt length.max_words=200``,
``--opt quality.max_words=200``, ``--opt openai.timeout=30``); a stage prefix sets the option on
every filter of that stage that declares it (``--opt quality.rules=alpaca``). Dedicated flags (``--model``,
``--rouge-threshold``…) are the same options under a friendlier name. Every value is checked
against the declaration before any work starts: an unknown or ill-typed option is one error line.
"""
from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from selfinstruct.errors import UsageError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null"}
_KIND_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


@dataclass(frozen=True)
class Option:
    name: str
    type: type            # int, float, bool or str
    default: Any
    nullable: bool        # "none" is a valid value

    def parse(self, text: str, shown: str) -> Any:
        """``text`` as this option's type; ``shown`` is how the user wrote the setting."""
        low = text.strip().lower()
        if self.nullable and low in _NONE:
            return None
        try:
            if self.type is bool:
                if low in _TRUE or low in _FALSE:
                    return low in _TRUE
                raise ValueError
            if self.type is int:
                return int(text)
            if self.type is float:
                return float(text)
        except ValueError:
            raise UsageError(f"{shown}: expected {_KIND_WORDS[self.type]}") from None
        return text


@functools.lru_cache(maxsize=None)
def declared(cls: type) -> dict[str, Option]:
    """The options ``cls`` declares: its ``__init__``'s keyword arguments with a default."""
    init = cls.__init__
    if init is object.__init__:
        return {}
    try:
        hints = typing.get_type_hints(init)
    except Exception:          # an annotation that does not resolve: fall back to the default's type
        hints = {}
    out: dict[str, Option] = {}
    for p in inspect.signature(init).parameters.values():
        if p.name == "self" or p.name.startswith("_") or p.default is inspect.Parameter.empty:
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        kind, nullable = _kind(hints.get(p.name), p.default)
        out[p.name] = Option(p.name, kind, p.default, nullable)
    return out


def _kind(hint: Any, default: Any) -> tuple[type, bool]:
    nullable = default is None
    args = typing.get_args(hint)
    if args and type(None) in args:                   # X | None, Optional[X]
        nullable = True
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else None
    if hint in _KIND_WORDS:
        return hint, nullable
    if default is not None and type(default) in _KIND_WORDS:
        return type(default), nullable
    return str, nullable


def split_setting(text: str) -> tuple[str, str]:
    """``"length.max_words=200"`` → ``("length.max_words", "200")``."""
    name, eq, value = text.partition("=")
    if not eq or not name.strip():
        raise UsageError(f"--opt '{text}': expected NAME=VALUE (e.g. --opt length.max_words=200)")
    return name.strip(), value.strip()


@dataclass(frozen=True)
class Component:
    """One component taking part in a command: its name, the names it can be prefixed by (its
    stage, for a filter), and its class."""
    name: str
    cls: type
    aliases: tuple[str, ...] = ()

    def options(self) -> dict[str, Option]:
        return declared(self.cls)


def resolve(components: Sequence[Component], settings: Iterable[str]) -> dict[Component, dict[str, Any]]:
    """``--opt`` settings → keyword arguments per component, checked and typed."""
    out: dict[Component, dict[str, Any]] = {c: {} for c in components}
    for text in settings:
        name, value = split_setting(text)
        for comp, option in _targets(components, name, text):
            out[comp][option.name] = option.parse(value, f"--opt {text}")
    return out


def _targets(components: Sequence[Component], name: str, text: str) -> list[tuple[Component, Option]]:
    prefix, dot, bare = name.rpartition(".")
    if dot:
        scope = [c for c in components if prefix == c.name or prefix in c.aliases]
        if not scope:
            known = ", ".join(sorted({c.name for c in components}))
            raise UsageError(f"--opt {text}: no component '{prefix}' here (components: {known})")
    else:
        scope = list(components)
    hits = [(c, c.options()[bare]) for c in scope if bare in c.options()]
    if len(hits) > 1 and dot:
        named = [(c, o) for c, o in hits if c.name == prefix]
        if not named:                # a stage: every filter of it that declares the option
            return hits
        hits = named                 # "echo.x" where a filter and a teacher are both named echo
    if not hits:
        raise UsageError(f"--opt {text}: unknown option '{name}' (options here: "
                         f"{', '.join(known_names(scope)) or 'none'})")
    if len(hits) > 1:
        raise UsageError(f"--opt {text}: '{bare}' is an option of several components; prefix it: "
                         + ", ".join(f"{c.name}.{bare}" for c, _ in hits))
    return hits


def known_names(components: Sequence[Component]) -> list[str]:
    """Every option of ``components`` as ``component.option``."""
    return [f"{c.name}.{o}" for c in components for o in sorted(c.options())]


