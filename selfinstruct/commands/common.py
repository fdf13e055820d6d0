"""What the commands share: how a list of names is split, and the help of ``--opt``."""
from __future__ import annotations

from typing import Iterable

OPT_HELP = ("Set an option a filter, teacher or recipe declares, NAME=VALUE (repeatable); prefix the "
            "component (length.max_words=200, quality.max_words=200, openai.timeout=30) where several "
            "declare the name. An unknown option is an error that lists the known ones.")


def split_names(values: Iterable[str] | str | None) -> list[str]:
    """``"exact,rouge"``, ``["exact,rouge", "minhash"]`` → ``["exact", "rouge", "minhash"]``."""
    if not values:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]
