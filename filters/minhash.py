"""MinHash LSH near-duplicate filter: reject a record whose instruction + input is a near copy of a
kept record (estimated Jaccard similarity of their shingle sets >= the threshold, 0.8 by default).

Shingles are token bigrams for English and character trigrams for Chinese (see ``_minhash_sketch``);
``lang="auto"`` picks per record from its script. Candidates come from LSH banding with datasketch's
optimal (bands, rows) for the threshold and ``num_perm``; each candidate is then verified with the
signature estimate, so LSH only decides whom to compare. The first record of a cluster is kept and
the others cite it: reason ``minhash_duplicate``, detail ``near-duplicate of <origin>: <instruction[:80]>``.

``prepare(records)`` computes a whole batch's signatures with numpy and looks all of its band keys up
at once; ``check`` then only combines the precomputed candidates with the batch records kept so far,
and decides exactly what it would decide without ``prepare``.

On a parallel engine (``use_engine``: ``--workers N``, ``--engine ray``) the signatures and band keys,
the costly part, are computed by one actor per worker (``_minhash_sketch.SketchWorker``: actors, not
``engine.map``, because a Ray Data job per batch costs about 0.3 s where an actor call costs
milliseconds) over contiguous chunks of the batch; hashing is deterministic, so the values are the
same anywhere. The band table stays here and the lookups, candidates and decisions are made in input
order as in one process.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from datasketch.lsh import _optimal_param

from selfinstruct.filters._minhash_lsh import BandTable
from selfinstruct.filters._minhash_sketch import Sketcher, SketchWorker
from selfinstruct.filters.base import Filter, Rejection, runs_in_parallel
from selfinstruct.record import Record


# Below this many texts a batch is sketched here: a worker round trip costs more than it saves (and
# the one-record prepare of ``check``/``add`` outside a batch must stay cheap).
PARALLEL_MIN = 512


@dataclass
class _Batch:
    records: list[Record]
    sigs: np.ndarray                  # (rows, num_perm) uint16: the low bits kept for verification
    keys: np.ndarray                  # (rows, bands) uint64
    has_tokens: np.ndarray            # (rows,) bool
    pool: list[np.ndarray]            # per row: kept numbers sharing a band (kept before prepare)
    mates: list[np.ndarray]           # per row: the other rows of this batch sharing a band
    kept_as: dict[int, int] = field(default_factory=dict)   # row -> kept number, once added
    valid: bool = True                # False once a record from outside the batch was added


class MinHashDedup(Filter):
    name = "minhash"
    stage = "minhash"
    fields = ("instruction", "input")

    def __init__(self, minhash_threshold: float = 0.8, num_perm: int = 128, lang: str = "auto"):
        self.threshold = minhash_threshold
        bands, rows = _optimal_param(minhash_threshold, num_perm, 0.5, 0.5)
        self.sketcher = Sketcher(num_perm, bands, rows, lang)
        self.table = BandTable()
        # Kept signatures keep the low 16 bits of each value: half the memory, and two different
        # values agree by chance 1 time in 65,536 (a negligible upward bias of the estimate).
        self._kept_sigs = np.zeros((1024, num_perm), dtype=np.uint16)
        self._kept_cite: list[str] = []
        self._batch: _Batch | None = None
        self._row_of: dict[int, int] = {}        # id(record) -> row in the prepared batch
        self._engine = None                      # a parallel engine, when use_engine gave one
        self._sketchers: list = []               # its SketchWorker actors

    def use_engine(self, engine) -> None:
        self._engine = engine if runs_in_parallel(engine) else None
        if self._engine is not None:
            self._sketchers = engine.actors(SketchWorker, [(self.sketcher.params,)] * engine.workers)

    def prepare(self, records: Sequence[Record]) -> None:
        records = list(records)
        sigs, keys, has_tokens = self._sketch([r.instruction + "\n" + r.input for r in records])
        self._batch = _Batch(records, sigs, keys, has_tokens,
                             self._pool_candidates(keys, has_tokens),
                             _band_mates(keys, has_tokens))
        self._row_of = {id(r): i for i, r in enumerate(records)}

    def _sketch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(signatures' low 16 bits, band keys, has_tokens) of ``texts``, on the engine's workers
        when there are enough of them."""
        if self._engine is None or len(texts) < PARALLEL_MIN:
            sigs, has_tokens = self.sketcher.signatures(texts)
            return sigs.astype(np.uint16), self.sketcher.band_keys(sigs), has_tokens
        step = -(-len(texts) // len(self._sketchers))
        done = self._engine.call([(actor, "sketch", (texts[at:at + step],))
                                  for actor, at in zip(self._sketchers, range(0, len(texts), step))])
        return tuple(np.concatenate([part[i] for part in done]) for i in range(3))

    def check(self, record: Record) -> Rejection | None:
        row = self._row(record)
        batch = self._batch
        if not batch.has_tokens[row]:
            return None                           # no tokens: nobody's duplicate
        candidates = set(batch.pool[row].tolist())
        candidates.update(batch.kept_as[r] for r in batch.mates[row].tolist() if r in batch.kept_as)
        if not candidates:
            return None
        kept = np.array(sorted(candidates))
        similarity = (self._kept_sigs[kept] == batch.sigs[row]).mean(axis=1)
        best = int(np.argmax(similarity))         # the earliest of the most similar
        if similarity[best] >= self.threshold:
            return self.reject("minhash_duplicate", f"near-duplicate of {self._kept_cite[kept[best]]}")
        return None

    def add(self, record: Record) -> None:
        batch = self._batch
        row = self._row_of.get(id(record))
        if batch is None or row is None or batch.records[row] is not record:
            if batch is not None:
                batch.valid = False              # its precomputed candidates miss this record
            self.prepare([record])
            batch, row = self._batch, 0
            batch.valid = False
        number = len(self._kept_cite)
        batch.kept_as[row] = number
        if not batch.has_tokens[row]:
            self._kept_cite.append("")            # keeps numbering; never a candidate
            return
        if number >= len(self._kept_sigs):
            self._kept_sigs = np.concatenate([self._kept_sigs, np.zeros_like(self._kept_sigs)])
        self._kept_sigs[number] = batch.sigs[row]
        self._kept_cite.append(f"{record.where}: {record.instruction[:80]}")
        self.table.insert(batch.keys[row], number)

    def _row(self, record: Record) -> int:
        """The record's row in the prepared batch, preparing it alone when it is not in one."""
        row = self._row_of.get(id(record))
        batch = self._batch
        if batch is None or row is None or not batch.valid or batch.records[row] is not record:
            self.prepare([record])
            return 0
        return row

    def _pool_candidates(self, keys: np.ndarray, has_tokens: np.ndarray) -> list[np.ndarray]:
        at, kept = self.table.lookup(keys.ravel())
        rows = at // keys.shape[1]
        pairs = np.unique(np.stack([rows, kept], axis=1), axis=0) if len(at) else np.zeros((0, 2), np.int64)
        return _group(pairs, len(keys), has_tokens)


def _band_mates(keys: np.ndarray, has_tokens: np.ndarray) -> list[np.ndarray]:
    """For each row, the other rows of the same batch that share at least one band key (in both
    directions: a later row kept first, e.g. seeded, counts too)."""
    rows_of_key = np.repeat(np.arange(len(keys)), keys.shape[1])
    flat = keys.ravel()
    mask = np.repeat(has_tokens, keys.shape[1])
    flat, rows_of_key = flat[mask], rows_of_key[mask]
    order = np.lexsort((rows_of_key, flat))
    flat, rows_of_key = flat[order], rows_of_key[order]
    group_start = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    sizes = np.diff(np.r_[group_start, len(flat)])
    rank = np.arange(len(flat)) - np.repeat(group_start, sizes)       # rank within its key group
    later = np.repeat(np.arange(len(flat)), rank)                     # each entry x its earlier ones
    earlier = np.repeat(np.repeat(group_start, sizes), rank) + (
        np.arange(rank.sum()) - np.repeat(np.cumsum(rank) - rank, rank))
    a, b = rows_of_key[later], rows_of_key[earlier]
    pairs = np.concatenate([np.stack([a, b], axis=1), np.stack([b, a], axis=1)])
    pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)
    return _group(pairs, len(keys), has_tokens)


def _group(pairs: np.ndarray, n_rows: int, has_tokens: np.ndarray) -> list[np.ndarray]:
    """Split (row, value) pairs sorted by row into one array of values per row."""
    bounds = np.searchsorted(pairs[:, 0], np.arange(n_rows + 1))
    return [pairs[bounds[i]:bounds[i + 1], 1] if has_tokens[i] else pairs[:0, 1] for i in range(n_rows)]
