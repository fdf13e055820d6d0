"""Recipes: the modules of this folder and the ``selfinstruct.recipes`` entry points, by name
(``--recipe self-instruct`` is the module ``self_instruct``)."""
from __future__ import annotations

import importlib

from selfinstruct import plugins
from selfinstruct.errors import UsageError
from selfinstruct.recipes.base import Recipe

_NOT_RECIPES = ("base", "parsing")


def _builtin() -> dict[str, str]:
    return {m.replace("_", "-"): m for m in plugins.builtin_module_names(__name__, _NOT_RECIPES)}


def available() -> list[str]:
    return sorted(set(_builtin()) | {ep.name for ep in plugins.plugin_entry_points("recipes")})


def recipe_class(name: str) -> type[Recipe]:
    module = _builtin().get(name)
    if module is not None:
        obj = importlib.import_module(f"{__name__}.{module}")
    else:
        ep = next((ep for ep in plugins.plugin_entry_points("recipes") if ep.name == name), None)
        if ep is None:
            raise UsageError(f"unknown recipe '{name}' (choose from {', '.join(available())})")
        obj = plugins.load_entry_point("recipes", ep)
    found = [c for c in plugins.classes_in(obj, Recipe) if c.name == name]
    if len(found) != 1:
        raise UsageError(f"the recipe module '{name}' defines no Recipe subclass named '{name}'")
    return found[0]
