"""MinHash signatures and LSH band keys for a whole batch of texts at once, with numpy.

Shingles are n-grams of ``selfinstruct.text.tokens``: word bigrams for space-delimited text and
character trigrams for Chinese (a Chinese word is 1-2 characters, so a character trigram spans about
what a word bigram spans; instructions are short, 5-40 words / 8-60 characters, and longer n-grams
would let a single edit destroy too many shingles). A text with fewer tokens than n is one shingle.

Hashing is deterministic across runs and platforms (no salted ``hash()``): each distinct token is
hashed once with BLAKE2b-64, n-grams combine token hashes with splitmix64, folded to 32 bits x, and
permutation k is ``(a_k * x + b_k) mod 2**32`` with fixed-seed odd ``a_k`` (a bijection of the
32-bit space; its high bits, which decide the minimum, depend on every bit of x).
"""
from __future__ import annotations

from hashlib import blake2b

import numpy as np

from selfinstruct.text import script_lang, tokens

SHINGLE_N = {"en": 2, "zh": 3}
_MIX = np.uint64(0x9E3779B97F4A7C15)
_CHUNK = 1 << 14                      # shingles per (shingles x permutations) block: bounded memory


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads every input bit over the whole word (uint64, wrapping)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class Sketcher:
    """Signatures (uint32, ``num_perm`` per text) and band keys (uint64, ``bands`` per text)."""

    def __init__(self, num_perm: int = 128, bands: int = 9, rows: int = 13, lang: str = "auto", seed: int = 1):
        if bands * rows > num_perm:
            raise ValueError(f"{bands} bands x {rows} rows need {bands * rows} permutations, have {num_perm}")
        if lang not in ("auto", "en", "zh"):
            raise ValueError(f"lang must be auto, en or zh, not {lang!r}")
        rng = np.random.default_rng(seed)
        self.a = rng.integers(0, 2**31, size=num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        self.b = rng.integers(0, 2**32, size=num_perm, dtype=np.uint32)
        weights = rng.integers(0, 2**63, size=(bands, rows), dtype=np.uint64)
        self._band_weights = weights * np.uint64(2) + np.uint64(1)
        self._band_salt = rng.integers(0, 2**63, size=bands, dtype=np.uint64)
        self.num_perm, self.bands, self.rows, self.lang = num_perm, bands, rows, lang
        self.params = (num_perm, bands, rows, lang, seed)     # what rebuilds it in a worker
        self._token_hash: dict[str, int] = {}

    def signatures(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(signatures, has_tokens): a (len(texts), num_perm) uint32 MinHash signature per text,
        and whether the text had any token (texts without are nobody's duplicate)."""
        shingles, counts = self._shingles(texts)
        sigs = np.full((len(texts), self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        ends = np.cumsum(counts)
        starts = ends - counts
        filled = np.flatnonzero(counts)
        # Blocks of whole texts with about _CHUNK shingles each bound the (perms x shingles) matrix;
        # uint32 and in place because this is the hot loop (about 1 ns per shingle-permutation).
        x = (shingles >> np.uint64(32)).astype(np.uint32) ^ shingles.astype(np.uint32)
        block_of = starts[filled] // _CHUNK
        for block in np.unique(block_of):
            rows = filled[block_of == block]
            lo, hi = starts[rows[0]], ends[rows[-1]]
            hashed = np.multiply(self.a[:, None], x[None, lo:hi])
            np.add(hashed, self.b[:, None], out=hashed)
            sigs[rows] = np.minimum.reduceat(hashed, starts[rows] - lo, axis=1).T
        return sigs, counts > 0

    def _shingles(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """All texts' n-gram hashes back to back (uint64) and how many each text has."""
        token_lists = [tokens(t) for t in texts]
        cache = self._token_hash
        flat = [cache.get(tok) or self._hash_token(tok) for toks in token_lists for tok in toks]
        th = np.array(flat, dtype=np.uint64)
        lens = np.array([len(toks) for toks in token_lists], dtype=np.int64)
        ns = np.array([SHINGLE_N[self.lang if self.lang != "auto" else script_lang(t)] for t in texts])
        ns = np.minimum(ns, np.maximum(lens, 1))          # shorter than n: the whole text is one gram
        starts = np.cumsum(lens) - lens
        counts = np.where(lens > 0, lens - ns + 1, 0)
        # Gram g of text i starts at flat position starts[i] + g and spans ns[i] tokens.
        text_of = np.repeat(np.arange(len(texts)), counts)
        first = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        span = ns[text_of]
        grams = th[first]
        for k in range(1, int(span.max(initial=1))):
            more = span > k
            grams[more] = _mix64(grams[more] * _MIX ^ th[first[more] + k])
        return grams, counts

    def _hash_token(self, token: str) -> int:
        # Never 0, so that the cache lookup above can use ``or``.
        h = int.from_bytes(blake2b(token.encode("utf-8"), digest_size=8).digest(), "little") or 1
        self._token_hash[token] = h
        return h

    def band_keys(self, sigs: np.ndarray) -> np.ndarray:
        """(len(sigs), bands) uint64 keys: a band's ``rows`` values, weighted by fixed random odd
        64-bit multipliers, summed and mixed. Equal bands give equal keys; unequal ones collide with
        probability about 2**-32, which only adds a candidate that verification then drops."""
        used = sigs[:, : self.bands * self.rows].astype(np.uint64).reshape(len(sigs), self.bands, self.rows)
        summed = (used * self._band_weights).sum(axis=2, dtype=np.uint64) + self._band_salt
        return _mix64(summed)



class SketchWorker:
    """An engine actor that sketches chunks of a batch with its own ``Sketcher`` (built from
    ``Sketcher.params``; its token-hash cache is kept between batches). Hashing is deterministic, so
    any worker gives the values this process would."""

    def __init__(self, params: tuple):
        self.sketcher = Sketcher(*params)

    def sketch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(signatures' low 16 bits, band keys, has_tokens) of ``texts``."""
        sigs, has_tokens = self.sketcher.signatures(texts)
        return sigs.astype(np.uint16), self.sketcher.band_keys(sigs), has_tokens
