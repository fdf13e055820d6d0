"""ROUGE-L novelty, the Self-Instruct rule: reject an instruction whose ROUGE-L F-measure against
any already-kept instruction (or a seeded pool) exceeds the threshold (0.7 by default).

Decisions are exactly those of the reference loop (rouge-score ``_score_lcs`` against every kept
instruction), computed without comparing pairs that provably cannot exceed the threshold; see
``_rouge_index`` for how. Tokens are ``selfinstruct.text.tokens``: rouge-score's tokenizer on
English, one token per Han/kana character on Chinese.

Reason code: ``rouge_too_similar``, detail ``rouge-l 0.812 with: <the most similar instruction>``.
Every checked record gets ``rouge`` / ``most_similar`` set to its best verified match (``None``
when no pool instruction came close enough to be compared).
"""
from __future__ import annotations

from selfinstruct.filters._rouge_index import NoveltyIndex
from selfinstruct.filters.base import Filter, Rejection
from selfinstruct.record import Record
from selfinstruct.text import tokens

__all__ = ["NoveltyIndex", "RougeNovelty"]


class RougeNovelty(Filter):
    name = "rouge"
    stage = "rouge"
    fields = ("instruction",)

    def __init__(self, rouge_threshold: float = 0.7):
        self.threshold = rouge_threshold
        self.index = NoveltyIndex(rouge_threshold)
        # add() usually follows check() for the same record: keep its tokens (and the index keeps
        # its work on them).
        self._last: tuple[str, list[str]] = ("", [])

    def _tokens(self, record: Record) -> list[str]:
        if self._last[0] != record.instruction:
            self._last = (record.instruction, tokens(record.instruction))
        return self._last[1]

    def check(self, record: Record) -> Rejection | None:
        hit = self.index.best(self._tokens(record))
        if hit is None:
            record.rouge = record.most_similar = None
            return None
        item, score = hit
        record.rouge, record.most_similar = score, self.index.text(item)
        if score > self.threshold:
            return self.reject("rouge_too_similar", f"rouge-l {score:.3f} with: {record.most_similar}")
        return None

    def add(self, record: Record) -> None:
        self.index.add(self._tokens(record), record.instruction)
