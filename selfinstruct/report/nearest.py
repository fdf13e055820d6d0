"""Exact nearest-neighbour ROUGE-L for the report's ROUGE-L figure (Self-Instruct's Figure 3).

Work in progress: the API below is fixed; the search is being filled in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass
class NearestResult:
    scores: list[float]          # per queried instruction, its best ROUGE-L F (0.0 when nothing shares a token)
    nearest: list[str | None]    # the most similar instruction's text (None when score is 0)
    sampled: bool                # True when only a uniform sample of the set was queried
    n_total: int                 # instructions in the set
    indices: list[int]           # which instructions of the input were queried (all, or the sample)


def nearest_scores(instructions: Sequence[str], against: Sequence[str] | None = None,
                   limit: int = 20000, seed: int = 0, progress: bool = False) -> NearestResult:
    """Each instruction's highest ROUGE-L F (rouge-score's ``_score_lcs``, our ``text.tokens``).

    ``against`` given: every instruction against its most similar ``against`` item. ``against``
    None: each against its most similar OTHER instruction of the set (a duplicate elsewhere scores
    1.0; itself never counts); all of them when the set has at most ``limit`` instructions, else a
    uniform random sample of ``limit`` (seeded by ``seed``), each still exact against the whole set.
    Ties: the earliest item (in ``against`` order, or input order).
    """
    raise NotImplementedError


class SeedNearest:
    """Each generated instruction's most similar seed instruction (record fields ``nearest_seed``,
    ``nearest_seed_rouge``)."""

    def __init__(self, seed_instructions: Sequence[str]):
        self._seeds = list(seed_instructions)

    def nearest(self, instruction: str) -> tuple[str | None, float]:
        """(most similar seed's text, its ROUGE-L F); (None, 0.0) when no seed shares a token.
        Ties: the earliest seed."""
        raise NotImplementedError
