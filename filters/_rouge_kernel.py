"""The compiled half of ``NoveltyIndex`` (see ``_rouge_index`` for the method and why it is exact).

A query touches thousands of postings at a million instructions; in Python or numpy each costs
far more than the work it does (a dict lookup, an array pass with its call overhead). Here the whole
query (elements, prefix order, probes, positional test, overlap bound, bit-parallel LCS, the
reference's float formula) and the whole insertion are one call each into numba-compiled code.
``cache=True`` keeps the machine code beside this file (or in numba's user cache), so only the
first run on a machine pays the compile.

State lives in numpy arrays owned by ``NoveltyIndex``; only the posting arena grows inside these
functions, which therefore return it.

Posting lists: one per (element, length bucket, prefix position < DEEP or not), a chain of blocks
in one int64 arena (one block per list right after a rebuild). A block at offset o holds
[next block offset or -1, capacity, postings...]; capacities double from 4 to 4096 so a long list
is a few large contiguous runs. A posting is two words: ``min(length, 0x7FFF) << 48 | item << 16 |
min(prefix position, 0xFFFF)``, then the item's level-1 slot mask (the slots where it has a token).
The mask in the posting lets a query bound the overlap from the list it is reading already: at a
million items the masks array is far out of cache, and reading an item's row there for every
positional survivor was most of a query's time.
"""
from __future__ import annotations

import numpy as np
from numba import njit

FIELD = 0xFFFF            # prefix position field
LEN = 0x7FFF              # lengths are clipped to 15 bits
ITEM = 0xFFFFFFFF
OCC_BITS = 20             # element key = token id << 20 | occurrence number
SLOTS = 64                # overlap-bound slots: one 64-bit mask per level
BUCKET_LIMITS = np.array([4, 6, 8, 10, 12, 14, 16, 18, 20, 23, 26, 30, 35, 42, 55, LEN], dtype=np.int64)  # largest length per bucket
BUCKETS = len(BUCKET_LIMITS)
DEEP = 3                  # postings at prefix position >= DEEP go to a list of their own
LISTS = 2 * BUCKETS       # posting lists per element: (length bucket, shallow or deep)
FIRST_BLOCK, LAST_BLOCK = 4, 4096

# meta: small counters shared by the kernels
M_ITEMS, M_TOKENS, M_ELEMS, M_ARENA, M_QUERY = 0, 1, 2, 3, 4
M_SCANNED, M_FOUND, M_VERIFIED = 5, 6, 7      # totals over all queries (benchmarks report them)


@njit(cache=True, inline="always")
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True)
def _bucket(m):
    for b in range(BUCKETS):
        if m <= BUCKET_LIMITS[b]:
            return b
    return BUCKETS - 1


@njit(cache=True)
def _element_keys(ids):
    """Multiset -> set: the k-th occurrence of token w is element w << 20 | k."""
    order = np.argsort(ids, kind="mergesort")
    keys = np.empty(len(ids), dtype=np.int64)
    k = 0
    for p in range(len(order)):
        w = ids[order[p]]
        k = k + 1 if p > 0 and ids[order[p - 1]] == w else 0
        keys[p] = (w << OCC_BITS) | k
    return keys


@njit(cache=True)
def _rarest_first(keys, dense, freq_snap):
    """Element positions sorted by (snapshot frequency, key): the global order, rarest first."""
    count = len(keys)
    idx = np.arange(count)
    fr = np.empty(count, dtype=np.int64)
    for p in range(count):
        fr[p] = freq_snap[dense[p]] if dense[p] >= 0 else 0
    for a in range(1, count):            # insertion sort: a few dozen elements
        cur = idx[a]
        b = a - 1
        while b >= 0 and (fr[idx[b]] > fr[cur] or (fr[idx[b]] == fr[cur] and keys[idx[b]] > keys[cur])):
            idx[b + 1] = idx[b]
            b -= 1
        idx[b + 1] = cur
    return idx


@njit(cache=True)
def _level_masks(tokens, slot_of, levels):
    """Per level k = 1..levels: the 64-bit mask of slots where ``tokens`` has >= k tokens; also the
    largest slot count."""
    counts = np.zeros(SLOTS, dtype=np.int64)
    for t in tokens:
        counts[slot_of[t]] += 1
    out = np.zeros(levels, dtype=np.uint64)
    for s in range(SLOTS):
        for k in range(min(counts[s], levels)):
            out[k] |= np.uint64(1) << np.uint64(s)
    return out, counts.max()


@njit(cache=True)
def _append(arena, meta, head, tail, fill, lst, value, mask):
    """Append the posting (``value``, ``mask``) to list ``lst``; returns the arena (a new one when
    it had to grow)."""
    o = tail[lst]
    if o < 0 or fill[lst] == arena[o + 1]:
        cap = FIRST_BLOCK if o < 0 else min(2 * arena[o + 1], LAST_BLOCK)
        top = meta[M_ARENA]
        if top + 2 * cap + 2 > len(arena):
            grown = np.empty(max(2 * len(arena), top + 2 * cap + 2), dtype=np.int64)
            grown[:top] = arena[:top]
            arena = grown
        arena[top] = -1
        arena[top + 1] = cap
        if o < 0:
            head[lst] = top
        else:
            arena[o] = top
        tail[lst] = top
        fill[lst] = 0
        meta[M_ARENA] = top + 2 * cap + 2
        o = top
    at = o + 2 + 2 * fill[lst]
    arena[at] = value
    arena[at + 1] = mask
    fill[lst] += 1
    return arena


@njit(cache=True)
def _prefix_postings(item, tokens, prefix_len, elem_ids, freq_snap, out_list, out_value, k):
    """Write the item's prefix postings (list id, value) at ``out_*[k:]``; returns the new k."""
    keys = _element_keys(tokens)
    dense = np.empty(len(keys), dtype=np.int64)
    for p in range(len(keys)):
        dense[p] = elem_ids[keys[p]]
    order = _rarest_first(keys, dense, freq_snap)
    m = min(len(tokens), LEN)
    bucket = _bucket(m)
    head_bits = (m << 48) | (item << 16)
    for pos in range(min(prefix_len, len(order))):
        out_list[k] = dense[order[pos]] * LISTS + 2 * bucket + (pos >= DEEP)
        out_value[k] = head_bits | min(pos, FIELD)
        k += 1
    return k


@njit(cache=True)
def _index(item, tokens, prefix_len, elem_ids, freq_snap, arena, meta, head, tail, fill, mask):
    lists = np.empty(prefix_len, dtype=np.int64)
    values = np.empty(prefix_len, dtype=np.int64)
    for k in range(_prefix_postings(item, tokens, prefix_len, elem_ids, freq_snap, lists, values, 0)):
        arena = _append(arena, meta, head, tail, fill, lists[k], values[k], mask)
    return arena


@njit(cache=True)
def add(tokens, prefix_len, index_it, elem_ids, elem_key, freq_live, freq_snap, lens, tok_start,
        tok_flat, masks, slot_of, arena, meta, head, tail, fill):
    """Append one pool item (``tokens``: its token ids, all in the vocabulary); index its prefix
    unless a rebuild follows. The caller has made room in every array but the arena."""
    item = meta[M_ITEMS]
    n = len(tokens)
    lens[item] = n
    start = meta[M_TOKENS]
    tok_start[item] = start
    tok_flat[start:start + n] = tokens
    meta[M_TOKENS] = start + n
    meta[M_ITEMS] = item + 1
    keys = _element_keys(tokens)
    for key in keys:
        if key in elem_ids:
            d = elem_ids[key]
        else:
            d = meta[M_ELEMS]
            elem_ids[key] = d
            elem_key[d] = key
            meta[M_ELEMS] = d + 1
        freq_live[d] += 1
    levels, _ = _level_masks(tokens, slot_of, masks.shape[1] - 1)
    masks[item, :-1] = levels
    if index_it and n > 0:
        arena = _index(item, tokens, prefix_len, elem_ids, freq_snap, arena, meta, head, tail, fill,
                       np.int64(levels[0]))
    return arena


@njit(cache=True)
def rebuild(exact, prefix_by_size, elem_ids, elem_key, freq_live, freq_snap, lens, tok_start, tok_flat,
            masks, slot_of, arena, meta, head, tail, fill):
    """Retake the frequency snapshot, give the ``exact`` tokens held by most items a slot each,
    recompute every item's masks and re-index every prefix under the new order."""
    elems = meta[M_ELEMS]
    freq_snap[:elems] = freq_live[:elems]
    vocab = len(slot_of)
    for t in range(vocab):
        slot_of[t] = exact + ((t * 0x9E3779B1) >> 7) % (SLOTS - exact)
    first = np.zeros(elems, dtype=np.int64)      # frequency of each token's first occurrence
    tok = np.full(elems, -1, dtype=np.int64)
    for d in range(elems):
        if elem_key[d] & ((1 << OCC_BITS) - 1) == 0:
            first[d] = -freq_live[d]
            tok[d] = elem_key[d] >> OCC_BITS
    ranked = np.argsort(first, kind="mergesort")
    given = 0
    for d in ranked:
        if given == exact or first[d] == 0:
            break
        slot_of[tok[d]] = given
        given += 1
    # Two passes, so that every list ends up as one block with room to grow: a scan then reads
    # one contiguous run per list instead of a chain of small blocks.
    items = meta[M_ITEMS]
    total = 0
    for item in range(items):
        total += min(prefix_by_size[lens[item]], lens[item])
    lists = np.empty(total, dtype=np.int64)
    values = np.empty(total, dtype=np.int64)
    k = 0
    for item in range(items):
        tokens = tok_flat[tok_start[item]:tok_start[item] + lens[item]]
        levels, _ = _level_masks(tokens, slot_of, masks.shape[1] - 1)
        masks[item, :-1] = levels
        if lens[item] > 0:
            k = _prefix_postings(item, tokens, prefix_by_size[lens[item]], elem_ids, freq_snap, lists,
                                 values, k)
    counts = np.zeros(len(head), dtype=np.int64)
    for p in range(k):
        counts[lists[p]] += 1
    size = 0
    for lst in range(len(head)):
        if counts[lst]:
            size += 2 * max(FIRST_BLOCK, counts[lst] + (counts[lst] >> 2)) + 2
    if size > len(arena):
        arena = np.empty(2 * size, dtype=np.int64)
    top = 0
    for lst in range(len(head)):
        if counts[lst]:
            cap = max(FIRST_BLOCK, counts[lst] + (counts[lst] >> 2))
            arena[top] = -1
            arena[top + 1] = cap
            head[lst] = top
            tail[lst] = top
            top += 2 * cap + 2
        else:
            head[lst] = -1
            tail[lst] = -1
        fill[lst] = 0
    meta[M_ARENA] = top
    for p in range(k):
        lst = lists[p]
        at = tail[lst] + 2 + 2 * fill[lst]
        arena[at] = values[p]
        arena[at + 1] = np.int64(masks[(values[p] >> 16) & ITEM, 0])
        fill[lst] += 1
    return arena


@njit(cache=True)
def _query_bits(query):
    """A small open-addressing table (L1-resident) from token id to the bit mask of its positions in
    the query; only for queries of at most 64 tokens. Unknown tokens (-1) match nothing."""
    keys = np.full(128, -1, dtype=np.int64)
    bits = np.zeros(128, dtype=np.uint64)
    for i in range(len(query)):
        t = query[i]
        if t < 0:
            continue
        h = (t * 0x9E3779B1) & 127
        while keys[h] != -1 and keys[h] != t:
            h = (h + 1) & 127
        keys[h] = t
        bits[h] |= np.uint64(1) << np.uint64(i)
    return keys, bits


@njit(cache=True)
def _lcs(query, keys, bits, pool):
    """LCS length of ``query`` and ``pool`` (token ids): bit-parallel (Hyyro) with the query's
    position masks when it has at most 64 tokens, dynamic programming otherwise."""
    n = len(query)
    if n <= 64:
        full = np.uint64(0xFFFFFFFFFFFFFFFF) if n == 64 else (np.uint64(1) << np.uint64(n)) - np.uint64(1)
        v = full
        for t in pool:
            h = (t * 0x9E3779B1) & 127
            while keys[h] != -1 and keys[h] != t:
                h = (h + 1) & 127
            if keys[h] == t:
                u = v & bits[h]
                v = ((v + u) | (v - u)) & full
        return n - _popcount(v)
    row = np.zeros(n + 1, dtype=np.int64)
    for t in pool:
        diag = 0
        for i in range(n):
            up = row[i + 1]
            row[i + 1] = diag + 1 if query[i] == t else max(up, row[i])
            diag = up
    return row[n]


@njit(cache=True)
def _rouge_f(lcs, n, m):
    """rouge-score's F-measure for ``_score_lcs(new, pool)``: the same float expression (the one
    place it is written; the tests check it against rouge-score and use it in their oracle)."""
    if n == 0 or m == 0:
        return 0.0
    precision = lcs / m
    recall = lcs / n
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


@njit(cache=True)
def best(query, known, unknown, everything, prefix_len, lo, hi, width, longest, deepest, needs,
         bound_min, elem_ids, freq_snap, lens, tok_start, tok_flat, masks, slot_of, arena, meta, head,
         tail, fill, found, found_len, found_bound):
    """(item, F) of the best verified pool item for ``query`` (token ids, -1 for tokens new to the
    pool; ``known`` the others), or (-1, 0.0) when no item passed the filters. ``everything``:
    compare with every item (a query too long for the positional tables). ``masks`` rows are an
    item's level masks then its stamp (the last query that found it): one cache line per item."""
    n = len(query)
    qid = np.uint64(meta[M_QUERY] + 1)
    meta[M_QUERY] += 1
    stamp = masks.shape[1] - 1
    levels, top_count = _level_masks(known, slot_of, stamp)
    bounded = top_count <= stamp               # else items lack the levels the bound needs
    count = 0
    if everything:
        for item in range(meta[M_ITEMS]):
            if masks[item, stamp] == qid:      # excluded by the caller (see NoveltyIndex.best)
                continue
            found[count] = item
            found_len[count] = hi + 1
            count += 1
    else:
        keys = _element_keys(known)
        dense = np.empty(len(keys), dtype=np.int64)
        for p in range(len(keys)):
            dense[p] = elem_ids[keys[p]] if keys[p] in elem_ids else -1
        order = _rarest_first(keys, dense, freq_snap)
        for p in range(min(len(order), prefix_len - unknown)):
            d = dense[order[p]]
            if d < 0:
                continue
            i = unknown + p
            top = longest[i]
            base = i * width
            for lst in range(d * LISTS, (d + 1) * LISTS):
                b = (lst - d * LISTS) >> 1
                if BUCKET_LIMITS[b] < lo or (b > 0 and BUCKET_LIMITS[b - 1] >= top):
                    continue
                o = head[lst]
                if o >= 0 and lst & 1:      # deep postings: only if some length here allows j >= DEEP
                    first = lo if b == 0 else max(lo, BUCKET_LIMITS[b - 1] + 1)
                    deep_ok = False
                    for m in range(first, min(BUCKET_LIMITS[b], top) + 1):
                        if deepest[base + m] >= DEEP:
                            deep_ok = True
                            break
                    if not deep_ok:
                        continue
                while o >= 0:
                    used = fill[lst] if o == tail[lst] else arena[o + 1]
                    meta[M_SCANNED] += used
                    for t in range(o + 2, o + 2 + 2 * used, 2):
                        value = arena[t]
                        m = min(value >> 48, hi + 1)
                        if (value & FIELD) <= deepest[base + m]:
                            if count > bound_min and bounded:
                                # Past bound_min survivors the bound below decides anyway, and
                                # sum over the item's slots of the query's count bounds it from
                                # above: a pair this drops, that bound would drop too.
                                inline = 0
                                for k in range(top_count):
                                    inline += _popcount(np.uint64(arena[t + 1]) & levels[k])
                                if inline < needs[m]:
                                    continue
                            item = (value >> 16) & ITEM
                            if masks[item, stamp] != qid:
                                masks[item, stamp] = qid
                                found[count] = item
                                found_len[count] = m
                                if bounded:      # the row is in cache now: bound it at once
                                    bound = 0
                                    for k in range(top_count):
                                        bound += _popcount(masks[item, k] & levels[k])
                                    found_bound[count] = bound
                                count += 1
                    o = arena[o]
    meta[M_FOUND] += count
    if count > bound_min and bounded and not everything:
        kept = 0
        for c in range(count):
            if found_bound[c] >= needs[found_len[c]]:
                found[kept] = found[c]
                kept += 1
        count = kept
    meta[M_VERIFIED] += count
    best_item, best_f = -1, 0.0
    if count == 0:
        return best_item, best_f
    keys, bits = _query_bits(query[:64])
    for c in range(count):
        item = found[c]
        m = lens[item]
        pool = tok_flat[tok_start[item]:tok_start[item] + m]
        f = _rouge_f(_lcs(query, keys, bits, pool), n, m)
        if best_item < 0 or f > best_f or (f == best_f and item < best_item):
            best_item, best_f = item, f
    return best_item, best_f


@njit(cache=True)
def best_rows(rows, ids, starts, n, everything, prefix_len, lo, hi, width, longest, deepest, needs,
              bound_min, elem_ids, freq_snap, lens, tok_start, tok_flat, masks, slot_of, arena, meta, head,
              tail, fill, found_in, found_len, found_bound, found, scores):
    """``best`` for each query ``rows`` names, all of length ``n`` (so one set of limits): the
    query of a row is ``ids[starts[row]:starts[row] + n]``; results into ``found``/``scores``."""
    for row in rows:
        query = ids[starts[row]:starts[row] + n]
        known = query[query >= 0]
        item, score = best(query, known, n - len(known), everything, prefix_len, lo, hi, width,
                           longest, deepest, needs, bound_min, elem_ids, freq_snap, lens, tok_start,
                           tok_flat, masks, slot_of, arena, meta, head, tail, fill, found_in,
                           found_len, found_bound)
        if item >= 0:
            found[row] = item
            scores[row] = score
