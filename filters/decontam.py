"""Benchmark decontamination: reject a record that shares an n-gram with an evaluation item.

``--decontam-against FILE|hf:NAME …`` names evaluation sets in any format the readers know
(``read_records``). Their instruction, input and output (or the fields ``decontam_fields`` names)
are indexed once, when the filter is built; a record whose instruction, input or output shares a
gram with one of them is rejected with reason ``benchmark_overlap`` and the detail
``<eval path>:<line> <field>: <the shared gram>``.

Tokens are the exact stage's normalisation (NFKC, case-folded, punctuation and whitespace dropped),
except that punctuation and whitespace still separate words: a token is a run of letters and digits,
or one Han character / kana. So "Photosynthesis, explained!" and "photosynthesis explained" share
every gram, and a full-width copy of a Chinese question is the question.

What N is. GPT-3 (Brown et al. 2020) removed training documents sharing a 13-gram (words) with a
test or development set; to measure contamination per benchmark it used N = the 5th-percentile
example length in words, clamped to 8..13 (shorter grams collide by chance). Llama 2 (Touvron et al.
2023) marks a token contaminated when it lies in a shared token n-gram longer than 10 tokens. GPT-4
(OpenAI 2023) matches three random 50-character substrings of each evaluation example (the whole
example when shorter) after removing spaces and symbols. We take 13 words (``ngram``): the most
widely reused choice, long enough that the stock phrases of instructions ("explain your reasoning
step by step") do not match on their own. Chinese has no word boundaries, so grams are counted in
characters (``ngram_chars``): a Han character carries more than a Latin letter and less than an
English word. Measured on BELLE's Chinese seed tasks against the Self-Instruct seeds they translate
(same task ids; 377 instruction, input and output pairs of 5+ words/characters), Chinese takes 1.53
Han characters per English word (median 1.48), so 13 words are 20 characters. (GPT-4's 50
characters would be about 10 English words but 33 Chinese ones: a count in Latin letters is not a
count in Han characters.)

Mixed text. One token stream per field, words and Han characters in text order, and a gram is the
shortest run from its first token worth ``ngram`` words, a Han character counting
``ngram / ngram_chars`` of a word. Pure English grams are 13 words, pure Chinese 20 characters, and
"用Python写一个函数…" is measured in both without cutting the Chinese at the English word. Because a
gram's end depends only on the tokens from its start, equal runs of tokens give equal grams on both
sides: sharing a gram is a property of the two texts, not of where they start.

Short evaluation fields. A field worth less than one gram has no gram, so short benchmark questions
would never match. Such a field is matched whole (the record contains all its tokens in a row) when
it is worth at least ``min_ngram`` words (8, GPT-3's lower clamp; 13 Han characters at 20/13 per
word), as GPT-4 matches a whole example shorter than its window; shorter fields (answers such as
"Paris", "positive", "B") are not evidence of anything and are not indexed (``skipped_short``
counts them). Grams never cross fields, on either side.

Speed and exactness. Evaluation grams are hashed to 64 bits into an open-addressing table
(``_decontam_kernel``); a record's spans are hashed as they grow, one multiply-add per token, and a
span through a token the evaluation sets never use is abandoned at once. A hash hit is verified
against the evaluation tokens (every gram with that hash is chained), so collisions cost time,
never a wrong decision. ``prepare`` tokenises a whole batch in one regular-expression pass and asks
the kernel once; ``check`` on an unprepared record does the same for one record.

Memory: per indexed evaluation token 4 bytes (id) + 4 (gram end) + 4 (chain), plus 1.5-3 table
slots of 12 bytes per gram, and 8 bytes a token for the hashes while building: 30-50 bytes a token.
100K synthetic evaluation items of ~90 tokens (9.0M tokens, 5.9M grams) took 311 MB of arrays;
add the vocabulary (a dict entry per distinct token) and one origin string per indexed field.
"""
from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from itertools import repeat
from typing import Sequence

import numpy as np

from selfinstruct.errors import UsageError
from selfinstruct.filters import _decontam_kernel as kernel
from selfinstruct.filters.base import Filter, Rejection
from selfinstruct.readers import read_records
from selfinstruct.readers.base import TARGETS
from selfinstruct.record import Record
from selfinstruct.text import _CJK

FLAG = "--decontam-against"
REASON = "benchmark_overlap"
CHECKED = ("instruction", "input", "output")   # the candidate's fields
SHOWN = 80                                     # characters of the shared gram in the detail
BATCH = 4096                                   # evaluation fields tokenised in one pass
# ANDed into every hash. All ones in use; tests narrow it to force collisions.
HASH_MASK = 0xFFFFFFFFFFFFFFFF

_SEP = "\x00"            # joins a batch's fields into one string: a token of its own, never a word
_TOKEN_RE = re.compile(f"{_SEP}|[{_CJK}]|[^\\W_{_CJK}]+")
_HAN_RE = re.compile(f"[{_CJK}]")


def normalised_tokens(text: str) -> list[str]:
    """The tokens grams are made of (see the module docstring)."""
    return _tokenise(text.replace(_SEP, " "))


def _tokenise(text: str) -> list[str]:
    """Tokens of ``text``, where each ``_SEP`` is a token of its own (a field boundary)."""
    return _TOKEN_RE.findall(unicodedata.normalize("NFKC", text).casefold())


def is_han(token: str) -> bool:
    return len(token) == 1 and _HAN_RE.match(token) is not None


def joined(tokens: Sequence[str]) -> str:
    """Tokens as text: words spaced, Han characters run together."""
    out: list[str] = []
    for i, t in enumerate(tokens):
        if i and not (is_han(t) and is_han(tokens[i - 1])):
            out.append(" ")
        out.append(t)
    return "".join(out)


def shortened(text: str, width: int = SHOWN) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


@dataclass
class _Index:
    """Every indexed evaluation field's tokens in one array, and the gram table over them."""
    vocab: dict[str, int]                 # token -> id (1, 2, …); the field separator -> -1
    words: list[str]                      # id -> token
    weights: np.ndarray                   # id -> weight (int64)
    eval_ids: np.ndarray                  # int32, each field's tokens then -1, in file order
    seg_starts: np.ndarray                # int64, first token of each field
    seg_origin: list[str]                 # per field: "path:line"
    seg_field: list[str]                  # per field: "instruction" / "input" / "output"
    gram_end: np.ndarray                  # int32 per token, -1 where no gram starts
    keys: np.ndarray
    heads: np.ndarray
    chain: np.ndarray
    bits: int
    short_len: np.ndarray                 # bool: token lengths some short field has
    grams: int = 0
    skipped_short: int = 0


class Decontam(Filter):
    name = "decontam"
    stage = "decontam"
    fields = CHECKED

    def __init__(self, decontam_against: tuple = (), ngram: int = 13, ngram_chars: int = 20,
                 min_ngram: int = 8, decontam_fields: str = ""):
        """``decontam_against``: evaluation sets (paths or ``hf:NAME[:split]``; a single string is one
        path, as ``--opt decontam_against=PATH`` gives it). ``ngram``: gram length in words;
        ``ngram_chars``: in Han characters; ``min_ngram``: the shortest evaluation field (in words,
        Han characters scaled alike) matched whole. ``decontam_fields``: comma-separated fields of
        the evaluation items to index (default instruction, input, output); ``FIELD=KEY`` also
        reads the row key KEY as FIELD (``instruction=question,output=answer``)."""
        if ngram < 1 or ngram_chars < 1 or min_ngram < 0:
            raise UsageError(f"decontam: ngram ({ngram}) and ngram_chars ({ngram_chars}) must be at "
                             f"least 1 and min_ngram ({min_ngram}) at least 0")
        single = isinstance(decontam_against, (str, os.PathLike))
        paths = [decontam_against] if single else list(decontam_against)
        self.paths = [str(p) for p in paths]
        self.ngram, self.ngram_chars, self.min_ngram = ngram, ngram_chars, min_ngram
        self.indexed_fields, self.field_keys = _parse_fields(decontam_fields)
        self.full = ngram * ngram_chars             # a gram's weight (words weigh ngram_chars, Han ngram)
        self.least = min_ngram * ngram_chars
        self.mask = np.uint64(HASH_MASK)
        for p in self.paths:
            _check_exists(p)
        self.index = self._build() if self.paths else None
        self._prepared: dict[int, tuple[tuple[str, ...], int]] = {}

    # ---- the evaluation side -------------------------------------------------------------------
    def _build(self) -> _Index:
        texts, origins, field_names = self._eval_fields()
        vocab = {_SEP: -1}            # never an evaluation token (normalised_tokens drops it)
        pieces = []
        for at in range(0, len(texts), BATCH):
            tokens = _tokenise("".join(t + _SEP for t in texts[at:at + BATCH]))
            add = vocab.setdefault    # a new token gets the next id: 1, 2, …
            pieces.append(np.array([add(t, len(vocab)) for t in tokens], dtype=np.int32))
        # One array: each field's tokens followed by a -1, the fields in file order.
        eval_ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
        ends = np.flatnonzero(eval_ids == -1)
        starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
        words = list(vocab)           # id -> token (vocab is in id order; [0] is the separator)
        weights = np.array([self.ngram if is_han(t) else self.ngram_chars for t in words], dtype=np.int64)
        gram_end = np.full(len(eval_ids), -1, dtype=np.int32)
        hashes = np.zeros(len(eval_ids), dtype=np.uint64)
        worth = kernel.eval_grams(eval_ids, weights, starts, ends, self.full, self.least, self.mask,
                                  gram_end, hashes)
        grams = int(np.count_nonzero(gram_end >= 0))
        bits = max(4, int(np.ceil(np.log2(grams * 1.5 + 1))))   # load factor at most 2/3
        keys, heads, chain = kernel.build_table(gram_end, hashes, bits)
        del hashes
        # Fields worth less than a gram but indexed whole: their token counts are the extra span
        # lengths a record is looked up at.
        whole = starts[(worth < self.full) & (gram_end[starts] >= 0)] if len(starts) else starts
        whole_lengths = gram_end[whole] - whole
        short_len = np.zeros(int(whole_lengths.max()) + 1 if len(whole_lengths) else 1, dtype=np.bool_)
        short_len[whole_lengths] = True
        skipped = int(np.count_nonzero((ends > starts) & (gram_end[starts] < 0))) if len(starts) else 0
        return _Index(vocab, words, weights, eval_ids, starts, origins, field_names, gram_end,
                      keys, heads, chain, bits, short_len, grams, skipped)

    def _eval_fields(self) -> tuple[list[str], list[str], list[str]]:
        """The evaluation texts to index, with each one's origin and field name, in file order."""
        texts: list[str] = []
        origins: list[str] = []
        names: list[str] = []
        for path in self.paths:
            previous: dict[str, str] = {}
            for item in read_records(path, fields=self.field_keys or None):
                for name in self.indexed_fields:
                    text = getattr(item, name)
                    if not text or previous.get(name) == text:   # seed tasks repeat it per instance
                        continue
                    previous[name] = text
                    texts.append(text.replace(_SEP, " ") if _SEP in text else text)
                    origins.append(item.origin)
                    names.append(name)
        return texts, origins, names

    # ---- the candidate side --------------------------------------------------------------------
    def _first_hits(self, records: Sequence[Record]) -> np.ndarray:
        """Per record, the evaluation position of the first gram it shares, or -1."""
        index = self.index
        texts = [getattr(r, name) for r in records for name in CHECKED]
        tokens = _tokenise(_SEP.join(t.replace(_SEP, " ") if _SEP in t else t for t in texts))
        # dict.get(token, 0) mapped in C: unknown tokens read as 0, separators as -1.
        ids = np.fromiter(map(index.vocab.get, tokens, repeat(0)), dtype=np.int64, count=len(tokens))
        seps = np.flatnonzero(ids == -1)
        starts = np.concatenate(([0], seps + 1)).astype(np.int64)
        ends = np.concatenate((seps, [len(tokens)])).astype(np.int64)
        return kernel.first_hits(ids, index.weights, starts, ends, len(CHECKED), self.full, self.mask,
                                 index.short_len, index.keys, index.heads, index.bits, index.chain,
                                 index.gram_end, index.eval_ids)

    def prepare(self, records: Sequence[Record]) -> None:
        self._prepared = {}
        if self.index is None or not records:
            return
        hits = self._first_hits(records)
        self._prepared = {id(r): (_texts(r), int(h)) for r, h in zip(records, hits)}

    def check(self, record: Record) -> Rejection | None:
        if self.index is None:
            return None
        prepared = self._prepared.get(id(record))
        if prepared is not None and _same_texts(prepared[0], record):
            hit = prepared[1]
        else:
            hit = int(self._first_hits([record])[0])
        if hit < 0:
            return None
        return self.reject(REASON, self.describe(hit))

    def describe(self, position: int) -> str:
        """``<eval path>:<line> <field>: <gram>`` for the evaluation gram starting at ``position``."""
        index = self.index
        seg = int(np.searchsorted(index.seg_starts, position, side="right")) - 1
        gram = index.eval_ids[position:index.gram_end[position]]
        text = joined([index.words[t] for t in gram])
        return f"{index.seg_origin[seg]} {index.seg_field[seg]}: {shortened(text)}"

    @property
    def grams(self) -> int:
        """Evaluation grams indexed (whole short fields included)."""
        return self.index.grams if self.index else 0

    @property
    def skipped_short(self) -> int:
        """Evaluation fields too short to index (worth less than ``min_ngram`` words)."""
        return self.index.skipped_short if self.index else 0


def _texts(record: Record) -> tuple[str, ...]:
    return tuple(getattr(record, name) for name in CHECKED)


def _same_texts(texts: tuple[str, ...], record: Record) -> bool:
    """The record still holds the very strings that were prepared (identity: cheap, and an edit
    in between is re-checked)."""
    return all(a is getattr(record, name) for a, name in zip(texts, CHECKED))


def _parse_fields(spec: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """``decontam_fields`` → (record fields to index, --fields-style key mapping for the reader)."""
    names: list[str] = []
    keys: dict[str, str] = {}
    for part in (p.strip() for p in (spec or "").split(",")):
        if not part:
            continue
        target, eq, key = (s.strip() for s in part.partition("="))
        if target not in TARGETS or (eq and not key):
            raise UsageError(f"decontam_fields: '{part}' is not one of {', '.join(TARGETS)} "
                             f"(or FIELD=KEY to read KEY as FIELD)")
        if eq:
            keys[target] = key
        if target not in names:
            names.append(target)
    return (tuple(names) or TARGETS), keys


def _check_exists(path: str) -> None:
    """A named file that is not there is a usage error, found before any work; ``hf:`` names are
    looked up in the local cache when read (the readers' InputError)."""
    if path.startswith("hf:") and not os.path.exists(path):
        return
    if not os.path.exists(path):
        raise UsageError(f"{FLAG}: no such file: {path}")

