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

On an engine with several workers (``filter --workers N``, ``--engine ray``; ``use_engine``) the
pool moves into N shard actors (``_rouge_shards.RougeShard``: item k on shard k % N) and the check
stays inside the chain's own mechanism, as ``MinHashDedup`` does it: ``prepare(batch)`` first sends
each shard the items kept since the last batch (each shard adds its own, in parallel), then every
shard answers all of the batch's queries at once (tokenised by the engine's workers) and finds, for
its share of them, the batch's earlier records above the threshold ("mates"); the coordinator
merges the pool answers (the highest score, ties to the lowest global number: the earliest, as
``NoveltyIndex.best`` breaks ties). ``check`` then takes the best of that pool answer and of the
record's mates that the chain has kept since ``prepare``. The two together are exactly the pool the
single-process filter checks against at that moment, so every decision, and the match named in a
rejection (the best score, the earliest among equal scores), are the same. What
can differ is ``rouge`` / ``most_similar`` of a KEPT record: the best *verified* match below the
threshold depends on which pairs the pruning let through, and shards prune with their own orders.
A record checked or added outside a prepared batch asks the shards synchronously. Chunk-grounded
records stay in this process (their pools are a chunk's few tasks); an evolved record's ancestors
go with its query and each shard leaves out its items with those texts.
"""
from __future__ import annotations

from typing import Sequence

from selfinstruct.filters._rouge_index import NoveltyIndex
from selfinstruct.filters._rouge_shards import RougeShard, joined_tokens, merge_answers
from selfinstruct.filters.base import Filter, Rejection, runs_in_parallel
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
        self._sharded: _Sharded | None = None       # set by use_engine on a parallel engine

    def use_engine(self, engine) -> None:
        if not runs_in_parallel(engine):
            return                                  # one worker: the single-process path
        if self._sharded is not None:
            raise RuntimeError("RougeNovelty.use_engine: the pool is already sharded")
        self._sharded = _Sharded(engine, self.threshold, [self.index.text(i) for i in range(len(self.index))])
        self.index = NoveltyIndex(self.threshold)   # the pool now lives in the shards
        self._items_of = {}

    def prepare(self, records: Sequence[Record]) -> None:
        if self._sharded is not None:
            self._sharded.prepare([r for r in records if _chunk_of(r) is None])

    def _tokens(self, record: Record) -> list[str]:
        if self._last[0] != record.instruction:
            self._last = (record.instruction, tokens(record.instruction))
        return self._last[1]

    def check(self, record: Record) -> Rejection | None:
        chunk = _chunk_of(record)
        if chunk is not None:
            hit = _best_pair(self._tokens(record), self._chunks.get(chunk, ()))
        else:
            hit = self._best_in_pool(record)
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
        if self._sharded is not None:
            self._sharded.add(record)
            return
        self._items_of.setdefault(record.instruction, []).append(len(self.index))
        self.index.add(self._tokens(record), record.instruction)

    def _best_in_pool(self, record: Record) -> tuple[str, float] | None:
        """The pool's best (text, score) for ``record``, its ancestors left out."""
        if self._sharded is not None:
            return self._sharded.best(record)
        excluded = [i for text in _ancestors_of(record) for i in self._items_of.get(text, ())]
        found = self.index.best(self._tokens(record), excluded)
        return None if found is None else (self.index.text(found[0]), found[1])


class _Sharded:
    """The pool in shard actors, and the coordinator's view of the current batch (see the module
    docstring): per batch row its pool answer, its mates, and whether the chain kept it."""

    def __init__(self, engine, threshold: float, preloaded: list[str]):
        self.engine, self.threshold = engine, threshold
        workers = engine.workers
        self.shards = engine.actors(RougeShard, [(threshold, s, workers) for s in range(workers)])
        if preloaded:
            engine.call([(shard, "load", (preloaded[s::workers],)) for s, shard in enumerate(self.shards)])
        self.flushed = len(preloaded)               # pool items the shards hold
        self.pending: list[tuple[str, str]] = []    # (joined tokens, text) kept since, in order
        self.records: list[Record] = []             # the prepared batch, by row
        self.row_of: dict[int, int] = {}            # id(record) -> row
        self.kept: bytearray = bytearray()          # row -> kept by the chain
        self.valid = False                          # the batch's answers still cover the pool

    def prepare(self, records: list[Record]) -> None:
        """Flush the pending adds and compute the pool's answer and the mates of every record."""
        joined = self.engine.map(joined_tokens, [r.instruction for r in records]) if records else []
        self.records, self.joined = list(records), joined
        self.row_of = {id(r): i for i, r in enumerate(records)}
        self.kept = bytearray(len(records))
        exclusions = {j: a for j, r in enumerate(records) if (a := _ancestors_of(r))}
        answers = self._step(joined, exclusions)
        self.valid = answers is not None and bool(records)
        if self.valid:
            found, scores, which = merge_answers(answers)
            self.found, self.scores, self.which = found.tolist(), scores.tolist(), which.tolist()
            self.answers = answers

    def best(self, record: Record) -> tuple[str, float] | None:
        """The best (text, score) of the pool as it is now for ``record``, its ancestors left out."""
        ancestors = _ancestors_of(record)
        row = self._row(record)
        if row is None:                             # outside the prepared batch: ask now
            answers = self._step([joined_tokens(record.instruction)], {0: ancestors} if ancestors else {})
            found, score, which = (a[0] for a in merge_answers(answers))
            return None if found < 0 else (answers[which].texts[0], float(score))
        found, score = self.found[row], self.scores[row]
        hit = None if found < 0 else (self.answers[self.which[row]].texts[row], score)
        answer = self.answers[row % len(self.shards)]
        k = row // len(self.shards)
        lo, hi = answer.mate_bounds[k], answer.mate_bounds[k + 1]
        for mate, mate_score in zip(answer.mate_rows[lo:hi].tolist(), answer.mate_scores[lo:hi].tolist()):
            # mates come in row order: a strictly higher score wins, ties stay with the earlier
            if self.kept[mate] and (hit is None or mate_score > hit[1]):
                text = self.records[mate].instruction
                if text not in ancestors:
                    hit = (text, mate_score)
        return hit

    def add(self, record: Record) -> None:
        row = self._row(record)
        if row is None:
            # Later records of the batch would not see it among their mates: they ask the shards.
            self.valid = False
            joined = joined_tokens(record.instruction)
        else:
            self.kept[row] = 1
            joined = self.joined[row]
        self.pending.append((joined, record.instruction))

    def _row(self, record: Record) -> int | None:
        """The record's row in the prepared batch, None when it is not in one (or the batch's
        answers no longer cover the pool)."""
        row = self.row_of.get(id(record))
        if row is None or not self.valid or self.records[row] is not record:
            return None
        return row

    def _step(self, queries: list[str], exclusions: dict[int, list[str]]):
        """Send every shard its pending adds and ``queries``; their answers (None: nothing to do)."""
        if not queries and not self.pending:
            return None
        workers, base = len(self.shards), self.flushed
        adds = [[] for _ in self.shards]
        for i, item in enumerate(self.pending):
            adds[(base + i) % workers].append(item)
        answers = self.engine.call([(shard, "step", (adds[s], queries, exclusions))
                                    for s, shard in enumerate(self.shards)])
        self.flushed += len(self.pending)
        self.pending = []
        return answers


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
