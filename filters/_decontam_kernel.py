"""The compiled half of ``Decontam`` (see ``decontam`` for what a gram is and why decisions are exact).

Tokens arrive as integer ids (1.. for tokens of the evaluation vocabulary, 0 for any other token) in
one array per call, cut into segments (one per field) by ``starts``/``ends``. A token's weight says
how much of a gram it is worth: a word counts ``ngram_chars``, a Han character ``ngram``, and a gram
is the shortest run of tokens from a start whose weight reaches ``full = ngram * ngram_chars``:
``ngram`` words, ``ngram_chars`` Han characters, or a proportional mix.

A span's hash is the polynomial ``sum(id[k] * BASE ** (end - 1 - k))`` mod 2**64, ANDed with
``mask`` (all ones, except where a test forces collisions). It is built while a span grows, so a
start costs one multiply-add per token up to its gram's end, and every shorter length that an
evaluation field has is looked up on the way. Hits walk the chain of evaluation grams with that hash
and compare the tokens, so a collision costs a comparison, never a wrong decision.

Table: open addressing, linear probing, ``keys`` (the hash) and ``heads`` (the first evaluation
position whose gram has it, -1 for an empty slot); ``chain[p]`` is the next position with the same
hash, in evaluation order. ``cache=True`` keeps the machine code beside this file.
"""
from __future__ import annotations

import numpy as np
from numba import njit

BASE = np.uint64(0x100000001B3)       # odd: the polynomial keeps every token's low bits in play
GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # multiplicative slot hash: the table index is its top bits


@njit(cache=True)
def eval_grams(ids, weights, starts, ends, full, least, mask, gram_end, hashes):
    """Fill ``gram_end[p]`` (end of the gram starting at token p, -1 where none starts) and its
    hash; return each segment's weight. A segment worth at least ``full`` has a gram at every start
    whose run reaches ``full`` before the segment ends; a lighter one worth at least ``least`` is
    one gram, itself."""
    worth = np.zeros(len(starts), dtype=np.int64)
    for s in range(len(starts)):
        a, b = starts[s], ends[s]
        total = 0
        for k in range(a, b):
            total += weights[ids[k]]
        worth[s] = total
        if total < full:
            if total >= least and b > a:
                h = np.uint64(0)
                for k in range(a, b):
                    h = h * BASE + np.uint64(ids[k])
                gram_end[a] = b
                hashes[a] = h & mask
            continue
        for p in range(a, b):
            h = np.uint64(0)
            w = 0
            for k in range(p, b):
                h = h * BASE + np.uint64(ids[k])
                w += weights[ids[k]]
                if w >= full:
                    gram_end[p] = k + 1
                    hashes[p] = h & mask
                    break
    return worth


@njit(cache=True)
def build_table(gram_end, hashes, bits):
    """The hash table over every position with a gram; chains keep evaluation order."""
    size = 1 << bits
    keys = np.zeros(size, dtype=np.uint64)
    heads = np.full(size, -1, dtype=np.int32)
    chain = np.full(len(gram_end), -1, dtype=np.int32)
    shift = np.uint64(64 - bits)
    top = size - 1
    for p in range(len(gram_end) - 1, -1, -1):     # backwards: each head ends up the earliest
        if gram_end[p] < 0:
            continue
        h = hashes[p]
        s = np.int64((h * GOLDEN) >> shift)
        while heads[s] != -1 and keys[s] != h:
            s = (s + 1) & top
        if heads[s] != -1:
            chain[p] = heads[s]
        keys[s] = h
        heads[s] = p
    return keys, heads, chain


@njit(cache=True)
def _find(keys, heads, bits, h):
    shift = np.uint64(64 - bits)
    top = len(keys) - 1
    s = np.int64((h * GOLDEN) >> shift)
    while heads[s] != -1:
        if keys[s] == h:
            return heads[s]
        s = (s + 1) & top
    return -1


@njit(cache=True)
def _verified(ids, start, length, first, gram_end, eval_ids, chain):
    """The first evaluation position in the chain from ``first`` whose gram is exactly
    ``ids[start:start + length]``, or -1."""
    p = first
    while p != -1:
        if gram_end[p] - p == length:
            same = True
            for t in range(length):
                if eval_ids[p + t] != ids[start + t]:
                    same = False
                    break
            if same:
                return p
        p = chain[p]
    return -1


@njit(cache=True)
def first_hits(ids, weights, starts, ends, per_record, full, mask, short_len,
               keys, heads, bits, chain, gram_end, eval_ids):
    """Per record (``per_record`` consecutive segments each): the evaluation position of the first
    gram it shares (fields in order, then start position, then length), or -1."""
    records = len(starts) // per_record
    out = np.full(records, -1, dtype=np.int64)
    longest_short = len(short_len) - 1
    for r in range(records):
        for f in range(r * per_record, (r + 1) * per_record):
            a, b = starts[f], ends[f]
            for i in range(a, b):
                h = np.uint64(0)
                w = 0
                for k in range(i, b):
                    tok = ids[k]
                    if tok == 0:          # not an evaluation token: no gram runs through it
                        break
                    h = h * BASE + np.uint64(tok)
                    w += weights[tok]
                    length = k + 1 - i
                    if w >= full or (length <= longest_short and short_len[length]):
                        first = _find(keys, heads, bits, h & mask)
                        if first != -1:
                            p = _verified(ids, i, length, first, gram_end, eval_ids, chain)
                            if p != -1:
                                out[r] = p
                                break
                    if w >= full:
                        break
                if out[r] != -1:
                    break
            if out[r] != -1:
                break
    return out
