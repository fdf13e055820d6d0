"""Recipes: the modules of this folder and the ``selfinstruct.recipes`` entry points, by name
(``--recipe self-instruct`` is the module ``self_instruct``)."""
from __future__ import annotations

from selfinstruct import plugins
from selfinstruct.recipes.base import Recipe

_NOT_RECIPES = ("base", "parsing")


def _builtin() -> dict[str, str]:
    return {m.replace("_", "-"): m for m in plugins.builtin_module_names(__name__, _NOT_RECIPES)}


def available() -> list[str]:
    return sorted(set(_builtin()) | {ep.name for ep in plugins.plugin_entry_points("recipes")})


def recipe_class(name: str) -> type[Recipe]:
    builtin = {n: f"{__name__}.{m}" for n, m in _builtin().items()}
    return plugins.named_class("recipes", name, builtin, Recipe, available())
