"""Compiled exact nearest-neighbour ROUGE-L: each query's highest-scoring pool instruction.

``NoveltyIndex`` answers "does any pool item exceed t?" for one fixed t. A report needs the maximum
itself, for every instruction, and for a set against itself (each instruction's best OTHER one).
This module finds that maximum exactly, computing an LCS only for pairs that could still reach it.

Why it is exact. For token lists of lengths n (query) and m (pool item) with LCS length L, F =
2L/(n+m), and L <= the number of shared elements (the k-th occurrence of token w is element (w, k),
so multisets become sets). All elements are put in one global order, rarest first; each item's
elements and each query's are sorted by it, and every element has a posting list of (item, m - j,
m, slot mask), j being the element's position in the item. A query walks its k known elements in
order and reads each one's list. Where it first meets an item, at query position i and item
position j, that is the first element they share, so every shared element lies at or after both:
L <= min(k - i, m - j). Three bounds follow, each compared with the best F so far:

- an item met at (i, j) is skipped when 2 min(k - i, m - j) / (n + m) is below it;
- the same, from the 64-bit slot masks: each token has a slot (the 32 most widespread tokens one of
  their own, the rest hashed), and L <= the sum, over the item's slots, of the query's token count
  there (a few popcounts against the query's per-count masks);
- lists are ordered by m - j, most first, so a list's scan stops once 2c / (n + c) is below the
  best, c = min(k - i, m - j) (the first bound's maximum over m >= m - j); and the walk stops at
  position i once 2(k - i) / (n + k - i) is: every item not met yet shares nothing before i.

At an item's later postings the positional bound is lower than its true bound, which is harmless:
the item was met before, and was either verified then (a per-query stamp skips it now) or skipped
with a bound that was higher and already too low. Every comparison keeps a margin of 1e-12, far
above the float error of either side, so an item whose float F could equal or beat the best is
always verified.

Verification is rouge-score's own float expression on an exact LCS (bit-parallel for queries of up
to 64 tokens, dynamic programming beyond), and the best is the highest float F (two pairs with the
same real F can differ in the last bit, and the higher float wins, as in a loop over every item),
ties going to the earliest item. A query that is itself a pool item passes its index, and that item
is skipped (a duplicate of it elsewhere in the pool still scores 1.0).

A rare shared word usually meets a close match first, so the bound rises fast and the frequent
words at the end of the order ("the", "a", 的) are rarely read at all.

The LCS and F-measure are written here rather than imported from ``_rouge_kernel``: numba's on-disk
cache of a function is keyed by its own file only, so machine code that inlined another module's
function would outlive a change there. ``tests/test_nearest.py`` holds both to rouge-score.
"""
from __future__ import annotations

import numpy as np
from numba import njit

MARGIN = 1e-12        # slack on the bounds: far above their float error
SLOTS = 64            # overlap-bound slots: one bit each in a 64-bit mask per item
OWN = 32              # slots of their own for the most widespread tokens; the rest share hashed slots
MAX_LEVELS = 8        # a query repeating one slot's tokens more often than this skips the slot bound


@njit(cache=True)
def _element_ranks(tokens, elem_base, max_occ, rank):
    """The global ranks of ``tokens``' elements that the pool has, ascending (rarest first).
    Tokens are pool vocabulary ids, -1 for a token no pool item has."""
    known = np.sort(tokens)
    out = np.empty(len(known), dtype=np.int64)
    count = 0
    occurrence = 0
    for p in range(len(known)):
        t = known[p]
        occurrence = occurrence + 1 if p > 0 and known[p - 1] == t else 0
        if t >= 0 and occurrence < max_occ[t]:
            out[count] = rank[elem_base[t] + occurrence]
            count += 1
    return np.sort(out[:count])


def build(flat: np.ndarray, start: np.ndarray, lens: np.ndarray, vocab_size: int) -> tuple[np.ndarray, ...]:
    """Elements, their global order, token slots and posting lists for the pool (items as token-id
    runs of ``flat``). Returns (elem_base, max_occ, rank, slot_of, post_start, post_item, post_rest,
    post_len, post_mask): element (w, k) is ``elem_base[w] + k`` for k < ``max_occ[w]``; ``rank``
    orders elements by how many items hold them, then by id; ``slot_of[w]`` is token w's slot; the
    list of rank r is ``post_*[post_start[r]:post_start[r + 1]]``: the item, how many of its
    elements lie at or after this one (m - j), its length m and its slot mask, so that a posting is
    bounded without reading the item's own row; ordered by m - j, most first, then by item.

    Whole-array numpy (sorts and counts), not compiled: it runs once per pool, and compiling it
    would cost a first run more seconds than it saves."""
    items, total = len(lens), len(flat)
    item_of = np.repeat(np.arange(items, dtype=np.int64), lens)
    # Each token's occurrence number within its item: tokens grouped by (item, token), in text order.
    by_token = np.lexsort((np.arange(total), flat, item_of))
    tok, item = flat[by_token], item_of[by_token]
    first = np.ones(total, dtype=bool)
    first[1:] = (tok[1:] != tok[:-1]) | (item[1:] != item[:-1])
    group_start = np.flatnonzero(first)
    occurrence = np.arange(total) - group_start[np.cumsum(first) - 1]
    max_occ = np.zeros(vocab_size, dtype=np.int64)
    np.maximum.at(max_occ, tok, occurrence + 1)
    elem_base = np.zeros(vocab_size + 1, dtype=np.int64)
    elem_base[1:] = np.cumsum(max_occ)
    elem = elem_base[tok] + occurrence
    freq = np.bincount(elem, minlength=int(elem_base[-1]))
    order = np.argsort(freq, kind="stable")           # equal counts stay in id order
    rank = np.empty(len(freq), dtype=np.int64)
    rank[order] = np.arange(len(freq))
    slot_of = _slots(freq[elem_base[:vocab_size]])
    # Each item's elements in rank order give its positions j (items are contiguous runs from start).
    elem_rank = rank[elem]
    in_item = np.lexsort((elem_rank, item))
    elem_rank, item = elem_rank[in_item], item[in_item]
    rest = lens[item] - (np.arange(total) - start[item])
    masks = np.zeros(items, dtype=np.uint64)
    filled = np.flatnonzero(lens > 0)
    if len(filled):
        bits = np.left_shift(np.uint64(1), slot_of[flat].astype(np.uint64))
        masks[filled] = np.bitwise_or.reduceat(bits, start[filled])
    posting = np.lexsort((item, -rest, elem_rank))       # by element rank, m - j descending, item
    item = item[posting]
    post_start = np.zeros(len(freq) + 1, dtype=np.int64)
    post_start[1:] = np.cumsum(freq[order])
    return (elem_base, max_occ, rank, slot_of, post_start, item.astype(np.int32), rest[posting].astype(np.int32),
            lens[item].astype(np.int32), masks[item])


def _slots(token_freq: np.ndarray) -> np.ndarray:
    """Each token's slot of the overlap bound: the ``OWN`` tokens held by most items get one each
    (a frequent word sharing a slot would inflate every bound it touches); the rest are hashed."""
    ids = np.arange(len(token_freq), dtype=np.int64)
    slot_of = OWN + ((ids * 0x9E3779B1) >> 7) % (SLOTS - OWN)
    own = np.argsort(-token_freq, kind="stable")[:OWN]
    slot_of[own] = np.arange(len(own))
    return slot_of


@njit(cache=True)
def _query_levels(query, slot_of):
    """Per level k = 1..: the mask of slots where ``query`` has >= k tokens; (levels, how many)."""
    counts = np.zeros(SLOTS, dtype=np.int64)
    for t in query:
        if t >= 0:
            counts[slot_of[t]] += 1
    top = counts.max()
    levels = np.zeros(max(top, 1), dtype=np.uint64)
    for s in range(SLOTS):
        for k in range(counts[s]):
            levels[k] |= np.uint64(1) << np.uint64(s)
    return levels, top


@njit(cache=True, inline="always")
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True)
def _set_positions(query, qbits, on):
    """Mark (``on``) or clear ``query``'s token positions in ``qbits``, a table indexed by pool token
    id that is all zeros between queries: a direct lookup per token of the other side, cheaper than
    any hash probe. Only for queries of at most 64 tokens; -1 matches nothing."""
    for i in range(len(query)):
        t = query[i]
        if t >= 0:
            qbits[t] = (qbits[t] | (np.uint64(1) << np.uint64(i))) if on else np.uint64(0)


@njit(cache=True)
def lcs(query, qbits, other):
    """LCS length of two token-id sequences: bit-parallel (Hyyrö) over ``query``'s position masks
    (``qbits``, set by ``_set_positions``) when it has at most 64 tokens, row-by-row dynamic
    programming otherwise."""
    n = len(query)
    if n <= 64:
        full = np.uint64(0xFFFFFFFFFFFFFFFF) if n == 64 else (np.uint64(1) << np.uint64(n)) - np.uint64(1)
        v = full
        for t in other:
            u = v & qbits[t]
            v = ((v + u) | (v - u)) & full
        return n - _popcount(v)
    row = np.zeros(n + 1, dtype=np.int64)
    for t in other:
        diag = 0
        for i in range(n):
            up = row[i + 1]
            row[i + 1] = diag + 1 if query[i] == t else max(up, row[i])
            diag = up
    return row[n]


@njit(cache=True)
def rouge_f(lcs_len, n, m):
    """rouge-score's ``_score_lcs(query, other).fmeasure``, the same float expression."""
    if n == 0 or m == 0:
        return 0.0
    precision = lcs_len / m
    recall = lcs_len / n
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


@njit(cache=True)
def _nearest(query, skip, qid, elem_base, max_occ, rank, slot_of, post_start, post_item, post_rest, post_len,
             post_mask, flat, start, lens, stamp, qbits, work):
    """(item, F) of ``query``'s best pool item other than ``skip``, or (-1, 0.0) when none shares a
    token. ``stamp[x] == qid`` marks the items this query has verified; ``work`` adds up postings
    read and LCS computed."""
    n = len(query)
    if n == 0:
        return -1, 0.0
    ranks = _element_ranks(query, elem_base, max_occ, rank)
    k = len(ranks)
    short = n <= 64
    if short:
        _set_positions(query, qbits, True)
    levels, top = _query_levels(query, slot_of)
    use_slots = top <= MAX_LEVELS
    best, best_f = -1, 0.0
    for i in range(k):
        left = k - i                      # elements an item first met here can share at most
        if best >= 0 and 2.0 * left / (n + left) < best_f - MARGIN:
            break
        r = ranks[i]
        for p in range(post_start[r], post_start[r + 1]):
            work[0] += 1
            # Bounded before the item's stamp is read: at an item's later postings the positional
            # bound is too low, but harmlessly so: the item was either verified already (its
            # stamp stops it below) or skipped with a bound that was higher and already too low.
            m = post_len[p]
            if best >= 0:
                shared = min(left, post_rest[p])
                if 2.0 * shared < (best_f - MARGIN) * (n + shared):
                    break     # later postings: no more elements left, and m >= that: none can reach it
                need = (best_f - MARGIN) * (n + m)        # 2 x shared must reach this
                if 2.0 * shared < need:
                    continue
                if use_slots:
                    mask = post_mask[p]
                    slot_bound = 0
                    for level in range(top):
                        slot_bound += _popcount(mask & levels[level])
                    if 2.0 * slot_bound < need:
                        continue
            x = post_item[p]
            if stamp[x] == qid or x == skip:
                continue
            stamp[x] = qid
            work[1] += 1
            f = rouge_f(lcs(query, qbits, flat[start[x]:start[x] + m]), n, m)
            if best < 0 or f > best_f or (f == best_f and x < best):
                best, best_f = x, f
    if short:
        _set_positions(query, qbits, False)
    return best, best_f


@njit(cache=True)
def search(q_flat, q_start, q_lens, skips, qid0, elem_base, max_occ, rank, slot_of, post_start, post_item,
           post_rest, post_len, post_mask, flat, start, lens, stamp, qbits, work, out_item, out_f):
    """``_nearest`` for each query (token-id runs of ``q_flat``); query q uses stamp id qid0 + q."""
    for q in range(len(q_start)):
        query = q_flat[q_start[q]:q_start[q] + q_lens[q]]
        out_item[q], out_f[q] = _nearest(query, skips[q], qid0 + q, elem_base, max_occ, rank, slot_of,
                                         post_start, post_item, post_rest, post_len, post_mask, flat, start,
                                         lens, stamp, qbits, work)
