"""Teachers: the modules of this folder and the ``selfinstruct.teachers`` entry points, by name.

``teacher_class("embedded")`` imports only that teacher's module (the embedded teacher pulls in
torch when it starts, the OpenAI teacher aiohttp), so listing the names imports nothing.
"""
from __future__ import annotations

from selfinstruct import plugins
from selfinstruct.teachers.base import Request, Response, Teacher

__all__ = ["Request", "Response", "Teacher", "available", "teacher_class"]

_NOT_TEACHERS = ("base",)


def available() -> list[str]:
    builtin = plugins.builtin_module_names(__name__, _NOT_TEACHERS)
    return sorted(set(builtin) | {ep.name for ep in plugins.plugin_entry_points("teachers")})


def teacher_class(name: str) -> type[Teacher]:
    builtin = {m: f"{__name__}.{m}" for m in plugins.builtin_module_names(__name__, _NOT_TEACHERS)}
    return plugins.named_class("teachers", name, builtin, Teacher, available())
