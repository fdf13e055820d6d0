"""MinHash near-duplicate filter: near copies go, distinct records stay, only kept records are
remembered, and batch preparation never changes a decision.

Near copies here differ in words (Chinese: characters), not only in case or punctuation, and each
test measures their Jaccard similarity on the stage's shingles (word bigrams, character trigrams) so
that it is clear how near they are; tests/test_minhash_reference.py compares the stage with
datasketch across the whole range of similarities."""
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


def cited(record: Record) -> str:
    return f"near-duplicate of {record.origin}: {record.instruction[:80]}"


POEM = ("Write a short poem about the sea and the wind at night, in four stanzas of four lines each, with "
        "a refrain that comes back at the end of every stanza and a title that names the harbour town.")
POEM_ZH = "请写一首关于大海和夜晚的风的短诗，描写月光下的渔船、远处的灯塔和岸边等待归人的小镇居民，每一节都以海浪声结尾。"
FRUITS = ("List three fruits that are rich in vitamin C, grow well in the south of Spain, and can be eaten "
          "fresh in winter, and say for each one when it is harvested and how it is usually prepared.")
WINTER = ("Give me three practical tips for staying healthy during the long winter months when it is cold "
          "and dark outside, covering food, sleep and exercise, in no more than one short paragraph each.")
RIVERS = ("Name five rivers in South America, the countries each of them crosses on its way to the sea, "
          "and the largest city that lies on its banks, and sort them from the longest to the shortest.")


def test_english_near_copies_differing_in_words_are_rejected_citing_the_first_of_the_cluster(shingle_jaccard):
    one_more_word = POEM[:-1] + " tonight."
    last_word_changed = POEM.replace("harbour town", "harbour village")
    other_request = POEM.split(" in four stanzas")[0] + (", for a birthday card that my grandmother will "
                                                         "read aloud to the whole family at dinner.")
    assert shingle_jaccard(POEM, one_more_word, 2) >= 0.95
    assert shingle_jaccard(POEM, last_word_changed, 2) >= 0.9
    assert shingle_jaccard(POEM, other_request, 2) <= 0.5
    records = [rec(1, POEM), rec(2, "Explain how vaccines train the immune system."),
               rec(3, one_more_word), rec(4, last_word_changed), rec(5, other_request)]
    kept, rejected = run(records)
    assert kept == ["t:1", "t:2", "t:5"]
    assert rejected == {"t:3": cited(records[0]), "t:4": cited(records[0])}


def test_copies_differing_only_in_case_and_punctuation_have_the_same_tokens_and_are_rejected(shingle_jaccard):
    shouted = POEM.upper().replace(",", "").replace(".", "!")
    assert shingle_jaccard(POEM, shouted, 2) == 1.0
    assert run([rec(1, POEM), rec(2, shouted)]) == (["t:1"], {"t:2": cited(rec(1, POEM))})


def test_chinese_near_copies_differing_in_characters_are_rejected_and_different_requests_kept(shingle_jaccard):
    one_more_character = POEM_ZH[:-1] + "吧。"
    last_character_changed = POEM_ZH[:-2] + "响。"
    assert shingle_jaccard(POEM_ZH, one_more_character, 3) >= 0.95
    assert shingle_jaccard(POEM_ZH, last_character_changed, 3) >= 0.95
    records = [rec(1, POEM_ZH), rec(2, one_more_character), rec(3, "请解释疫苗如何训练免疫系统。"),
               rec(4, "请写一首关于月亮的诗。"), rec(5, last_character_changed)]
    kept, rejected = run(records)
    assert kept == ["t:1", "t:3", "t:4"]
    assert rejected == {"t:2": cited(records[0]), "t:5": cited(records[0])}


def test_the_input_is_part_of_the_compared_text():
    kept, _ = run([rec(1, "Summarize the following text.", "The cat sat on the mat all day long."),
                   rec(2, "Summarize the following text.", "Stock markets fell sharply on Monday morning."),
                   rec(3, "Summarize the following text.", "The cat sat on the mat all day long.")])
    assert kept == ["t:1", "t:2"]


def test_the_reason_code_and_filter_name_are_stable(shingle_jaccard):
    dedup = MinHashDedup()
    first = rec(1, FRUITS)
    assert dedup.check(first) is None
    dedup.add(first)
    copy = FRUITS[:-1] + " too."
    assert shingle_jaccard(FRUITS, copy, 2) >= 0.95
    verdict = dedup.check(rec(2, copy))
    assert (verdict.reason, MinHashDedup.name) == ("minhash_duplicate", "minhash")
    assert verdict.detail == "near-duplicate of t:1: List three fruits that are rich in vitamin C, grow well in the " \
                             "south of Spain, a"


def test_the_cited_instruction_is_cut_at_80_characters(shingle_jaccard):
    long = "Describe " + " ".join(f"item{i}" for i in range(40))
    assert shingle_jaccard(long, long + " item40", 2) >= 0.95
    _, rejected = run([rec(1, long), rec(2, long + " item40")])
    assert rejected["t:2"] == f"near-duplicate of t:1: {long[:80]}"
    assert len(long) > 80


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


def test_preloaded_records_count_as_kept(shingle_jaccard):
    chain = FilterChain([MinHashDedup()])
    chain.preload([rec(0, WINTER)])
    copy = WINTER.replace("paragraph each.", "paragraph each, please.")
    assert shingle_jaccard(WINTER, copy, 2) >= 0.95
    assert chain.check(rec(1, copy)).detail == cited(rec(0, WINTER))
    assert chain.check(rec(2, RIVERS)) is None


def test_the_filter_is_registered_with_its_options():
    from selfinstruct.filters.registry import REGISTRY

    assert REGISTRY["minhash"] is MinHashDedup
    dedup = MinHashDedup(minhash_threshold=0.8, num_perm=128, lang="zh")
    assert (dedup.sketcher.bands, dedup.sketcher.rows) == (9, 13)   # datasketch's optimum for 0.8 / 128
    assert MinHashDedup.fields == ("instruction", "input")


def test_a_batch_record_kept_out_of_order_still_counts_for_the_others(shingle_jaccard):
    dedup = MinHashDedup()
    first = rec(1, RIVERS)
    second = rec(2, RIVERS[:-1] + " too.")
    assert shingle_jaccard(first.instruction, second.instruction, 2) >= 0.95
    dedup.prepare([first, second])
    dedup.add(second)                 # e.g. seeded while the batch was being checked
    assert dedup.check(first).detail == cited(second)
