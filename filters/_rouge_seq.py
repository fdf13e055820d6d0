"""rouge-score's ROUGE-L F-measure from an LCS length, computed with the reference's float expression
(the compiled kernel in ``_rouge_kernel`` repeats it operation for operation)."""
from __future__ import annotations


def rouge_l_f(lcs: int, new_len: int, pool_len: int) -> float:
    """rouge-score's F-measure for ``_score_lcs(new, pool)``, the same float expression."""
    if not new_len or not pool_len:
        return 0.0
    precision = lcs / pool_len
    recall = lcs / new_len
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0
