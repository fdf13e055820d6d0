"""MinHash near-duplicate filter: near copies go, distinct records stay, only kept records are
remembered, and batch preparation never changes a decision."""
from __future__ import annotations

import random

from selfinstruct.filters.base import Filter, FilterChain
from selfinstruct.filters.minhash import MinHashDedup
from selfinstruct.record import Record


def run(records: list[Record], *filters: Filter) -> tuple[list[str], dict[str, str]]:
    """Kept origins and {rejected origin: detail} after a batched run through the chain."""
    rejected: dict[str, str] = {}
    chain = FilterChain(filters or [MinHashDedup()], on_reject=lambda r, v: rejected.setdefault(r.origin, v.detail))
    return [r.origin for r in chain.run(records)], rejected


def rec(i: int, instruction: str, input: str = "") -> Record:
    return Record(instruction, input, origin=f"t:{i}")


def test_english_near_copies_are_rejected_citing_the_first_of_the_cluster():
    kept, rejected = run([
        rec(1, "Write a short poem about the sea and the wind at night."),
        rec(2, "Explain how vaccines train the immune system."),
        rec(3, "Write a short poem about the sea and the wind at night!"),
        rec(4, "write a short poem about the sea and the wind at night"),
    ])
    assert kept == ["t:1", "t:2"]
    assert rejected == {"t:3": "near-duplicate of t:1: Write a short poem about the sea and the wind at night.",
                        "t:4": "near-duplicate of t:1: Write a short poem about the sea and the wind at night."}


def test_chinese_near_copies_are_rejected_and_different_requests_kept():
    kept, rejected = run([
        rec(1, "请写一首关于大海和夜晚的风的短诗。"),
        rec(2, "请写一首关于大海和夜晚的风的短诗！"),
        rec(3, "请解释疫苗如何训练免疫系统。"),
        rec(4, "请写一首关于月亮的诗。"),
    ])
    assert kept == ["t:1", "t:3", "t:4"]
    assert rejected == {"t:2": "near-duplicate of t:1: 请写一首关于大海和夜晚的风的短诗。"}


def test_the_input_is_part_of_the_compared_text():
    kept, _ = run([rec(1, "Summarize the following text.", "The cat sat on the mat all day long."),
                   rec(2, "Summarize the following text.", "Stock markets fell sharply on Monday morning."),
                   rec(3, "Summarize the following text.", "The cat sat on the mat all day long.")])
    assert kept == ["t:1", "t:2"]


def test_the_reason_code_and_filter_name_are_stable():
    dedup = MinHashDedup()
    first = rec(1, "List three fruits that are rich in vitamin C and grow in Spain.")
    assert dedup.check(first) is None
    dedup.add(first)
    verdict = dedup.check(rec(2, "List three fruits that are rich in vitamin C and grow in Spain"))
    assert (verdict.reason, verdict.filter) == ("minhash_duplicate", "minhash")
    assert verdict.detail == "near-duplicate of t:1: List three fruits that are rich in vitamin C and grow in Spain."


def test_the_cited_instruction_is_cut_at_80_characters():
    long = "Describe " + " ".join(f"item{i}" for i in range(40))
    _, rejected = run([rec(1, long), rec(2, long + ".")])
    assert rejected["t:2"] == f"near-duplicate of t:1: {long[:80]}"


class _RejectOrigin(Filter):
    name = "reject_origin"
    stage = "rouge"

    def __init__(self, origin: str):
        self.origin = origin

    def check(self, record):
        return self.reject("test_reject") if record.origin == self.origin else None


def test_only_records_the_whole_chain_kept_enter_the_index():
    text = "Translate the sentence about the old lighthouse into French, please."
    dedup = MinHashDedup()
    # t:1 passes MinHash but a later filter rejects it, so t:2 (its copy) is nobody's duplicate.
    kept, rejected = run([rec(1, text), rec(2, text), rec(3, text)], dedup, _RejectOrigin("t:1"))
    assert kept == ["t:2"]
    assert rejected == {"t:1": "", "t:3": f"near-duplicate of t:2: {text}"}
    assert len(dedup.table) == dedup.sketcher.bands     # one kept record's band keys


def test_distinct_records_are_all_kept():
    rng = random.Random(0)
    words = [f"word{i}" for i in range(500)]
    records = [rec(i, " ".join(rng.sample(words, 10))) for i in range(300)]
    kept, rejected = run(records)
    assert len(kept) == 300 and rejected == {}


def test_records_without_tokens_are_never_duplicates():
    kept, _ = run([rec(1, ""), rec(2, ""), rec(3, "?!"), rec(4, "…")])
    assert kept == ["t:1", "t:2", "t:3", "t:4"]


def test_prepared_batches_decide_exactly_like_record_by_record_checks():
    rng = random.Random(1)
    base = [" ".join(rng.choices([f"w{i}" for i in range(30)], k=rng.randint(3, 12))) for _ in range(150)]
    texts = [t if rng.random() < 0.6 else rng.choice(base[: i + 1]) + rng.choice(["", ".", " w1"])
             for i, t in enumerate(base)]
    records = [rec(i, t) for i, t in enumerate(texts)]
    batched = [r.origin for r in FilterChain([MinHashDedup()]).run(records, batch_size=32)]
    one_by_one = FilterChain([MinHashDedup()])
    assert batched == [r.origin for r in records if one_by_one.check(r) is None]
    assert len(batched) < len(records)


def test_seeded_records_count_as_kept():
    chain = FilterChain([MinHashDedup()])
    chain.seed([rec(0, "Give me three tips for staying healthy during the long winter months.")])
    verdict = chain.check(rec(1, "Give me three tips for staying healthy during the long winter months!"))
    assert verdict.detail.startswith("near-duplicate of t:0: ")


def test_the_filter_is_registered_with_its_options():
    from selfinstruct.filters.registry import REGISTRY

    assert REGISTRY["minhash"] is MinHashDedup
    dedup = MinHashDedup(minhash_threshold=0.8, num_perm=128, lang="zh")
    assert (dedup.sketcher.bands, dedup.sketcher.rows) == (9, 13)   # datasketch's optimum for 0.8 / 128
    assert MinHashDedup.fields == ("instruction", "input")


def test_a_batch_record_kept_out_of_order_still_counts_for_the_others():
    dedup = MinHashDedup()
    first = rec(1, "Name five rivers in South America and the countries they cross.")
    second = rec(2, "Name five rivers in South America and the countries they cross!")
    dedup.prepare([first, second])
    dedup.add(second)                 # e.g. seeded while the batch was being checked
    assert dedup.check(first).detail == f"near-duplicate of t:2: {second.instruction}"
