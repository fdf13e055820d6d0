"""Teachers. ``load_teacher_class("embedded")`` imports ``selfinstruct.teachers.embedded`` lazily (the
embedded teacher pulls in torch) and returns its ``TEACHER`` class."""
from __future__ import annotations

import importlib
import pkgutil

from selfinstruct.errors import UsageError
from selfinstruct.teachers.base import Request, Response, Teacher

__all__ = ["Request", "Response", "Teacher", "available", "load_teacher_class"]

_NOT_TEACHERS = {"base"}


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and m.name not in _NOT_TEACHERS)


def load_teacher_class(kind: str) -> type[Teacher]:
    if kind not in available():
        raise UsageError(f"unknown teacher '{kind}' (choose from {', '.join(available())})")
    return importlib.import_module(f"{__name__}.{kind}").TEACHER
