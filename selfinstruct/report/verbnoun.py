"""Leading verb and direct-object noun of an instruction (the report's verb–noun figure).

Work in progress: the API below is fixed; the extraction is being filled in.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable


def verb_noun(instruction: str, lang: str) -> tuple[str | None, str | None]:
    """The leading (root) verb of ``instruction``'s first sentence and the head noun of its direct
    object, both as lemmas ("Writes"→"write", "poems"→"poem"); None for either when there is none.

    "Explain why the sky is blue" → ("explain", None); "What is the capital of France?" →
    (None, None). Polite wrappers are seen through: "Can you write a poem" → ("write", "poem"),
    "请你写一首诗" → ("写", "诗"). ``lang`` is "en" or "zh"; anything else gives (None, None).
    """
    return (None, None)


def top_pairs(
    items: Iterable[tuple[str, str]], n_verbs: int = 20, n_nouns: int = 4
) -> list[tuple[str, int, list[tuple[str, int]]]]:
    """The ``n_verbs`` most common verbs of ``items`` ((instruction, lang) pairs), each with its
    count and its ``n_nouns`` most common object nouns with their counts; ties are broken
    alphabetically. An instruction with a verb but no object noun counts for the verb only.
    """
    return []
