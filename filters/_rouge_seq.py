"""Token-id sequences for ROUGE-L: rouge-score's F-measure, exact LCS, multiset elements."""
from __future__ import annotations

from rapidfuzz.distance import LCSseq

OCC_BITS = 20                   # element key = token id << 20 | occurrence number (< 2**20 repeats)
_MAX_CHAR = 0x110000            # token ids beyond this cannot be one code point each


def rouge_l_f(lcs: int, new_len: int, pool_len: int) -> float:
    """rouge-score's F-measure for ``_score_lcs(new, pool)``, the same float expression."""
    if not new_len or not pool_len:
        return 0.0
    precision = lcs / pool_len
    recall = lcs / new_len
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def elements(ids: list[int]) -> list[int]:
    """Multiset -> set: the k-th occurrence of token w becomes element (w, k), i.e. w << 20 | k."""
    if len(set(ids)) == len(ids):
        return [w << OCC_BITS for w in ids]
    seen: dict[int, int] = {}
    out = []
    for w in ids:
        k = seen.get(w, 0)
        seen[w] = k + 1
        out.append((w << OCC_BITS) | k)
    return out


def as_seq(ids: list[int]) -> str | tuple[int, ...]:
    """Token ids as a string (one code point per token: rapidfuzz's fastest input), or a tuple."""
    if not ids or (min(ids) >= 0 and max(ids) < _MAX_CHAR):
        return "".join(map(chr, ids))
    return tuple(ids)


def lcs(a: str | tuple[int, ...], b: str | tuple[int, ...]) -> int:
    if isinstance(a, str) and isinstance(b, str):
        return LCSseq.similarity(a, b)
    # Only with a vocabulary beyond the code-point range: compare as lists of ints.
    return LCSseq.similarity([ord(c) for c in a] if isinstance(a, str) else list(a),
                             [ord(c) for c in b] if isinstance(b, str) else list(b))
