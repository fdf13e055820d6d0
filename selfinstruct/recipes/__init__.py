"""Recipes. ``load_recipe_class("self-instruct")`` imports ``selfinstruct.recipes.self_instruct``."""
from __future__ import annotations

import importlib
import pkgutil

from selfinstruct.errors import UsageError

_NOT_RECIPES = {"base", "parsing"}


def available() -> list[str]:
    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and m.name not in _NOT_RECIPES)


def load_recipe_class(name: str):
    if name not in available():
        raise UsageError(f"unknown recipe '{name}' (choose from {', '.join(available())})")
    return importlib.import_module(f"{__name__}.{name.replace('-', '_')}").RECIPE
