"""ROUGE-L novelty, the Self-Instruct rule: reject an instruction whose ROUGE-L F-measure against
any already-kept instruction (or a seeded pool) exceeds the threshold (0.7 by default).

Decisions are exactly those of the reference loop (rouge-score ``_score_lcs`` against every kept
instruction), computed without comparing pairs that provably cannot exceed the threshold; see
``_rouge_index`` for how. Tokens are ``selfinstruct.text.tokens``: rouge-score's tokenizer on
English, one token per Han/kana character on Chinese.

Reason code: ``rouge_too_similar``, detail ``rouge-l 0.812 with: <the most similar instruction>``.
Every checked record gets ``rouge`` / ``most_similar`` set to its best verified match (``None``
when no pool instruction came close enough to be compared).

Two kinds of record are compared with part of the pool only, in ``generate`` and ``filter`` alike:

- an evolved record (``meta["lineage"]["ancestors"]``: the instructions it was evolved from) is by
  design close to its ancestors; it is compared with the pool except them (Evol-Instruct's own
  elimination rule checks it against its parent);
- a task grounded in a document chunk (``meta["chunk"]``) is compared with the tasks of the same
  chunk only: "summarise the passage" on two chunks is two tasks. A chunk holds a few tasks, so
  these pools are checked pair by pair.
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
        self._items_of: dict[str, list[int]] = {}            # instruction -> its index items
        self._chunks: dict[str, list[tuple[str, list[str]]]] = {}   # chunk -> its tasks, tokenised
        # add() usually follows check() for the same record: keep its tokens (and the index keeps
        # its work on them).
        self._last: tuple[str, list[str]] = ("", [])

    def _tokens(self, record: Record) -> list[str]:
        if self._last[0] != record.instruction:
            self._last = (record.instruction, tokens(record.instruction))
        return self._last[1]

    def check(self, record: Record) -> Rejection | None:
        chunk = _chunk_of(record)
        if chunk is not None:
            hit = _best_pair(self._tokens(record), self._chunks.get(chunk, ()))
        else:
            excluded = [i for text in _ancestors_of(record) for i in self._items_of.get(text, ())]
            found = self.index.best(self._tokens(record), excluded)
            hit = None if found is None else (self.index.text(found[0]), found[1])
        if hit is None:
            record.rouge = record.most_similar = None
            return None
        record.most_similar, record.rouge = hit
        if record.rouge > self.threshold:
            return self.reject("rouge_too_similar", f"rouge-l {record.rouge:.3f} with: {record.most_similar}")
        return None

    def add(self, record: Record) -> None:
        chunk = _chunk_of(record)
        if chunk is not None:
            self._chunks.setdefault(chunk, []).append((record.instruction, self._tokens(record)))
            return
        self._items_of.setdefault(record.instruction, []).append(len(self.index))
        self.index.add(self._tokens(record), record.instruction)


def _chunk_of(record: Record) -> str | None:
    chunk = record.meta.get("chunk") if record.meta else None
    return chunk if isinstance(chunk, str) and chunk else None


def _ancestors_of(record: Record) -> list[str]:
    lineage = record.meta.get("lineage") if record.meta else None
    ancestors = lineage.get("ancestors") if isinstance(lineage, dict) else None
    return [a for a in ancestors if isinstance(a, str)] if isinstance(ancestors, list) else []


def _best_pair(query: list[str], pool) -> tuple[str, float] | None:
    """The most similar of ``pool`` (text, tokens) pairs by ROUGE-L F, ties to the earliest; None
    for an empty pool or query."""
    best: tuple[str, float] | None = None
    for text, toks in pool:
        f = rouge_f(_lcs_length(query, toks), len(query), len(toks))
        if best is None or f > best[1]:
            best = (text, f)
    return best if query else None


def rouge_f(lcs: int, n: int, m: int) -> float:
    """rouge-score's F-measure, the same float expression as the compiled kernel's ``_rouge_f``."""
    if n == 0 or m == 0:
        return 0.0
    precision, recall = lcs / m, lcs / n
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _lcs_length(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        diag = 0
        for j, y in enumerate(b):
            up = row[j + 1]
            row[j + 1] = diag + 1 if x == y else max(up, row[j])
            diag = up
    return row[len(b)]
