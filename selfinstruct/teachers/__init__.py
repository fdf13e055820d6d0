"""Teachers: the modules of this folder and the ``selfinstruct.teachers`` entry points, by name.

``teacher_class("embedded")`` imports only that teacher's module (the embedded teacher pulls in
torch when it starts, the OpenAI teacher aiohttp), so listing the names imports nothing.
"""
from __future__ import annotations

import importlib

from selfinstruct import plugins
from selfinstruct.errors import UsageError
from selfinstruct.teachers.base import Request, Response, Teacher

__all__ = ["Request", "Response", "Teacher", "available", "teacher_class"]

_NOT_TEACHERS = ("base",)


def available() -> list[str]:
    builtin = plugins.builtin_module_names(__name__, _NOT_TEACHERS)
    return sorted(set(builtin) | {ep.name for ep in plugins.plugin_entry_points("teachers")})


def teacher_class(name: str) -> type[Teacher]:
    if name in plugins.builtin_module_names(__name__, _NOT_TEACHERS):
        obj = importlib.import_module(f"{__name__}.{name}")
    else:
        ep = next((ep for ep in plugins.plugin_entry_points("teachers") if ep.name == name), None)
        if ep is None:
            raise UsageError(f"unknown teacher '{name}' (choose from {', '.join(available())})")
        obj = plugins.load_entry_point("teachers", ep)
    found = [c for c in plugins.classes_in(obj, Teacher) if c.name == name]
    if len(found) != 1:
        raise UsageError(f"the teacher module '{name}' defines no Teacher subclass named '{name}'")
    return found[0]
