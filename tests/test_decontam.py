"""Benchmark decontamination: planted overlaps with an evaluation set are found in every field, in
English, Chinese and mixed text; near misses (one word or character short of a gram), stock phrases
and short answers are left alone; normalisation (case, punctuation, full-width forms) does not hide
an overlap; decisions stay exact when every hash collides; and the stage works from the readers'
formats, from build_chain and through a FilterChain's prepared batches.

Every evaluation text here is written for these tests. Token counts that a test relies on are
asserted, so that a text edited later cannot silently turn a near miss into a match."""
from __future__ import annotations

import json
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfinstruct.errors import InputError, UsageError
from selfinstruct.filters import decontam
from selfinstruct.filters.decontam import Decontam, normalised_tokens
from selfinstruct.filters.registry import build_chain, components
from selfinstruct.options import declared, resolve
from selfinstruct.record import Record

EN_ITEM = {
    "instruction": "Read the story and decide which character is most likely to be telling the truth.",
    "input": ("Mara said the lighthouse keeper had locked the gate before midnight, but the baker swore "
              "he saw the gate wide open at dawn."),
    "output": ("The baker is most likely telling the truth, because the keeper had every reason to lie "
               "about the gate and nobody else was awake."),
}
ZH_ITEM = {
    "instruction": "阅读下面的故事，判断哪一个人物最有可能在说真话，并说明你的理由。",
    "input": "小明说灯塔看守人在半夜之前就锁上了大门，但是面包师发誓他在黎明时看见大门敞开着。",
    "output": "面包师最有可能说的是真话，因为看守人有充分的理由在大门的事情上撒谎，而且当时没有别人醒着。",
}
SHORT_ITEMS = [
    {"instruction": "What is the boiling point of water at sea level?", "output": "100 degrees Celsius"},
    {"instruction": "水在海平面上的沸点是多少摄氏度？", "output": "一百度"},
    {"instruction": "Which planet is the largest one?", "output": "Jupiter"},
    {"instruction": "木星是最大的行星吗？", "output": "是的"},
]
MIXED_ITEM = {"instruction": "使用Python编写一个函数，计算斐波那契数列的第n项并返回结果列表。", "output": "见下文。"}

# Spans of the evaluation items above: exactly one gram, and one token short of it.
EN_GRAM = "the lighthouse keeper had locked the gate before midnight, but the baker swore"
EN_SHORT_BY_ONE = "the lighthouse keeper had locked the gate before midnight, but the baker"
ZH_GRAM = "灯塔看守人在半夜之前就锁上了大门，但是面包"
ZH_SHORT_BY_ONE = "灯塔看守人在半夜之前就锁上了大门，但是面"


def count(text: str) -> int:
    return len(normalised_tokens(text))


def write_jsonl(path, rows) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return str(path)


@pytest.fixture
def eval_file(tmp_path) -> str:
    """Line 1: English item, 2: Chinese item, 3-6: short items, 7: mixed-script item."""
    return write_jsonl(tmp_path / "bench.jsonl", [EN_ITEM, ZH_ITEM, *SHORT_ITEMS, MIXED_ITEM])


@pytest.fixture
def stage(eval_file) -> Decontam:
    return Decontam((eval_file,))


def verdict(stage: Decontam, record: Record) -> str | None:
    rejection = stage.check(record)
    if rejection is None:
        return None
    assert rejection.reason == "benchmark_overlap"
    return rejection.detail


def in_field(field: str, text: str) -> Record:
    values = {"instruction": "Please help with this task.", "input": "", "output": "Sure."}
    values[field] = text
    return Record(**values)


def test_spans_are_the_lengths_the_tests_assume():
    assert count(EN_GRAM) == 13 and count(EN_SHORT_BY_ONE) == 12
    assert count(ZH_GRAM) == 20 and count(ZH_SHORT_BY_ONE) == 19
    assert count(SHORT_ITEMS[0]["instruction"]) == 10          # between min_ngram (8) and ngram (13)
    assert count(SHORT_ITEMS[1]["instruction"]) == 15          # between 13 and 20 characters
    assert count(SHORT_ITEMS[2]["instruction"]) == 6           # too short to index
    assert count(SHORT_ITEMS[3]["instruction"]) == 9


# ---- planted overlaps are found --------------------------------------------------------------------
@pytest.mark.parametrize("field", ["instruction", "input", "output"])
def test_an_english_gram_from_the_eval_input_is_found_in_any_field(stage, eval_file, field):
    record = in_field(field, f"Rewrite this so it sounds friendlier: {EN_GRAM} and went home.")
    assert verdict(stage, record) == (f"{eval_file}:1 input: the lighthouse keeper had locked the gate before "
                                      f"midnight but the baker swore")


@pytest.mark.parametrize("field", ["instruction", "input", "output"])
def test_a_chinese_gram_from_the_eval_input_is_found_in_any_field(stage, eval_file, field):
    record = in_field(field, f"请改写下面这句话：{ZH_GRAM}师很生气。")
    assert verdict(stage, record) == f"{eval_file}:2 input: 灯塔看守人在半夜之前就锁上了大门但是面包"


def test_grams_of_the_eval_output_are_found_too(stage, eval_file):
    english = in_field("output", "Answer: the keeper had every reason to lie about the gate and nobody else "
                                 "was awake, so trust the baker.")
    chinese = in_field("output", "我觉得因为看守人有充分的理由在大门的事情上撒谎，而且没人作证。")
    assert verdict(stage, english) == (f"{eval_file}:1 output: the keeper had every reason to lie about the gate "
                                       f"and nobody else")
    assert verdict(stage, chinese) == f"{eval_file}:2 output: 因为看守人有充分的理由在大门的事情上撒谎"


def test_normalisation_case_punctuation_and_full_width_do_not_hide_an_overlap(stage, eval_file):
    shouted = in_field("input", "THE LIGHTHOUSE-KEEPER HAD LOCKED THE GATE... BEFORE MIDNIGHT; BUT THE BAKER SWORE!")
    wide = in_field("input", "ｔｈｅ ｌｉｇｈｔｈｏｕｓｅ keeper had locked the gate before midnight but the baker swore")
    chinese = in_field("input", "灯塔看守人在半夜之前、就锁上了大门！但是……面包")
    assert verdict(stage, shouted).startswith(f"{eval_file}:1 input: the lighthouse keeper")
    assert verdict(stage, wide).startswith(f"{eval_file}:1 input: the lighthouse keeper")
    assert verdict(stage, chinese).startswith(f"{eval_file}:2 input: 灯塔看守人")


def test_mixed_text_counts_words_and_han_characters_in_one_gram(stage, eval_file):
    # 使用 python 编写 … 第 n: 18 Han characters and 2 words, worth one gram (20/13 characters a word).
    record = in_field("instruction", "请你使用 Python 编写一个函数：计算斐波那契数列的第 n 项，越快越好")
    assert verdict(stage, record) == f"{eval_file}:7 instruction: 使用 python 编写一个函数计算斐波那契数列的第 n"
    # The same run without the trailing "n" is worth 18 characters and one word: short of a gram.
    assert verdict(stage, in_field("instruction", "请你使用Python编写一个函数，计算斐波那契数列的第几项")) is None


# ---- near misses and ordinary text are left alone ---------------------------------------------------
@pytest.mark.parametrize("text", [
    f"In my tale, {EN_SHORT_BY_ONE} slept through it all.",
    f"故事里{ZH_SHORT_BY_ONE}条很好吃。",
    "Read the story and decide which character is most likely to be lying.",       # 12 of 15 words shared
    "阅读下面的故事，判断哪一个人物最有可能说谎话。",                               # 18 characters shared
])
@pytest.mark.parametrize("field", ["instruction", "input", "output"])
def test_one_token_short_of_a_gram_is_kept(stage, field, text):
    assert verdict(stage, in_field(field, text)) is None


@pytest.mark.parametrize("text", [
    "Explain your reasoning step by step and give the final answer at the end.",
    "Write a short story about a lighthouse keeper who befriends a baker.",
    "请一步一步地解释你的推理过程，并在最后给出答案。",
    "写一个关于灯塔看守人和面包师的小故事。",
    "What is the boiling point of water on a mountain?",
    "Jupiter is the largest planet in the solar system.",
    "木星是最大的行星，它有很多卫星。",
])
def test_ordinary_instructions_sharing_words_with_the_benchmark_are_kept(stage, text):
    assert verdict(stage, Record(text, output="Here you go.")) is None


# ---- short evaluation fields -----------------------------------------------------------------------
def test_a_short_eval_question_is_matched_whole(stage, eval_file):
    english = Record("Quick quiz: what is the boiling point of water at sea level? Reply briefly.")
    chinese = Record("小测验：水在海平面上的沸点是多少摄氏度？请简短回答。")
    assert verdict(stage, english) == f"{eval_file}:3 instruction: what is the boiling point of water at sea level"
    assert verdict(stage, chinese) == f"{eval_file}:4 instruction: 水在海平面上的沸点是多少摄氏度"


def test_part_of_a_short_eval_question_is_not_a_match(stage):
    assert verdict(stage, Record("The boiling point of water at sea level is a classic fact.")) is None
    assert verdict(stage, Record("水在海平面上的沸点是一百度。")) is None


def test_eval_fields_shorter_than_min_ngram_are_not_indexed(stage):
    # "Which planet is the largest one?" (6 words), "木星是最大的行星吗" (9 characters), and the
    # answers: contained verbatim, they still prove nothing.
    for text in ("Which planet is the largest one? Jupiter, of course.", "木星是最大的行星吗？是的。",
                 "The answer is 100 degrees Celsius."):
        assert verdict(stage, Record(text)) is None
    # 100 degrees celsius, 一百度, both planet questions and their answers, 见下文
    assert stage.skipped_short == 7


def test_min_ngram_zero_indexes_every_short_field(eval_file):
    stage = Decontam((eval_file,), min_ngram=0)
    assert verdict(stage, Record("Which planet is the largest one? Jupiter, of course.")).startswith(
        f"{eval_file}:5 instruction: which planet is the largest one")


def test_ngram_options_change_the_gram_length(eval_file):
    shorter = Decontam((eval_file,), ngram=12, ngram_chars=19)
    assert verdict(shorter, in_field("input", f"In my tale, {EN_SHORT_BY_ONE} slept.")) is not None
    assert verdict(shorter, in_field("input", f"故事里{ZH_SHORT_BY_ONE}条很好吃。")) is not None


# ---- which evaluation fields -----------------------------------------------------------------------
def test_decontam_fields_limits_the_indexed_eval_fields(eval_file):
    stage = Decontam((eval_file,), decontam_fields="instruction")
    assert verdict(stage, in_field("output", f"Say it again: {EN_GRAM}.")) is None       # from the eval input
    assert verdict(stage, Record("Quick quiz: what is the boiling point of water at sea level?")) is not None


def test_decontam_fields_can_map_other_key_names(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [
        {"question": "How many legs does a spider have, and how many does an insect have?", "answer": "Eight and six."},
    ])
    stage = Decontam((path,), decontam_fields="instruction=question,output=answer")
    record = Record("Trivia: how many legs does a spider have and how many does an insect have")
    assert verdict(stage, record) == (f"{path}:1 instruction: how many legs does a spider have and how many "
                                      f"does an insect")


def test_a_bad_decontam_fields_value_is_a_usage_error(eval_file):
    with pytest.raises(UsageError, match="decontam_fields: 'question' is not one of instruction, input, output"):
        Decontam((eval_file,), decontam_fields="question")


# ---- eval files: formats and errors ----------------------------------------------------------------
def test_an_alpaca_json_list_is_read_with_its_line_numbers(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps([ZH_ITEM, EN_ITEM], ensure_ascii=False, indent=1), encoding="utf-8")
    stage = Decontam((str(path),))
    detail = verdict(stage, in_field("input", EN_GRAM))
    assert detail.startswith(f"{path}:7 input: the lighthouse keeper")   # the second object starts on line 7


def test_an_hf_dataset_from_the_local_cache_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "local").mkdir()
    write_jsonl(tmp_path / "local" / "train.jsonl", [EN_ITEM])
    stage = Decontam((f"hf:{tmp_path / 'local'}",))
    assert verdict(stage, in_field("output", EN_GRAM)).startswith(f"hf:{tmp_path / 'local'}:1 input: the lighthouse")


def test_seed_tasks_index_every_instance(tmp_path):
    path = write_jsonl(tmp_path / "seed.jsonl", [{
        "id": "t1", "name": "alibi", "is_classification": False, "instruction": EN_ITEM["instruction"],
        "instances": [{"input": "", "output": EN_ITEM["output"]}, {"input": EN_ITEM["input"], "output": "The baker."}],
    }])
    stage = Decontam((path,))
    assert verdict(stage, in_field("output", EN_GRAM)).startswith(f"{path}:1 input: the lighthouse keeper")
    assert verdict(stage, Record(EN_ITEM["instruction"])).startswith(f"{path}:1 instruction: read the story")


def test_several_eval_files_are_all_indexed(tmp_path):
    english = write_jsonl(tmp_path / "en.jsonl", [EN_ITEM])
    chinese = write_jsonl(tmp_path / "zh.jsonl", [ZH_ITEM])
    stage = Decontam([english, chinese])
    assert verdict(stage, in_field("input", EN_GRAM)).startswith(f"{english}:1 input:")
    assert verdict(stage, in_field("input", ZH_GRAM)).startswith(f"{chinese}:1 input:")


def test_a_missing_eval_file_is_a_usage_error_naming_the_flag(tmp_path):
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(UsageError) as raised:
        Decontam((missing,))
    assert str(raised.value) == f"--decontam-against: no such file: {missing}"


def test_a_bad_eval_record_is_an_input_error_with_its_line(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps(EN_ITEM) + "\n" + '{"instruction": 3, "output": "x"}\n', encoding="utf-8")
    with pytest.raises(InputError) as raised:
        Decontam((str(path),))
    assert str(raised.value).startswith(f"{path}:2: ")


def test_an_hf_name_not_in_the_cache_is_an_input_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="not in the local Hugging Face cache"):
        Decontam(("hf:nobody/no-such-benchmark-xyz",))


def test_without_eval_files_every_record_is_kept():
    stage = Decontam()
    stage.prepare([Record(EN_GRAM)])
    assert stage.check(Record(EN_GRAM)) is None and stage.grams == 0


def test_the_detail_shortens_a_long_gram(tmp_path):
    text = ("Characterise the thermodynamically irreversible photosynthetic electron transport "
            "mechanisms underlying chlorophyll fluorescence quenching under fluctuating illumination conditions.")
    path = write_jsonl(tmp_path / "long.jsonl", [{"instruction": text, "output": "See textbooks."}])
    detail = verdict(Decontam((path,)), Record(text))
    gram = ("characterise the thermodynamically irreversible photosynthetic electron transport mechanisms "
            "underlying chlorophyll fluorescence quenching under")
    assert detail == f"{path}:1 instruction: {gram[:79]}…"


# ---- exactness ---------------------------------------------------------------------------------------
PROBES = [
    in_field("input", EN_GRAM), in_field("output", EN_SHORT_BY_ONE), in_field("instruction", ZH_GRAM),
    in_field("input", ZH_SHORT_BY_ONE), Record("Quick quiz: what is the boiling point of water at sea level?"),
    Record("The boiling point of water at sea level is a classic fact."), Record("小测验：水在海平面上的沸点是多少摄氏度？"),
    Record("请你使用 Python 编写一个函数：计算斐波那契数列的第 n 项"), Record("Write a haiku about autumn leaves."),
    in_field("output", "我觉得因为看守人有充分的理由在大门的事情上撒谎，而且没人作证。"),
]


@pytest.mark.parametrize("mask", [0, 3])
def test_hash_collisions_never_change_a_decision(eval_file, monkeypatch, mask):
    expected = [verdict(Decontam((eval_file,)), r) for r in PROBES]
    assert sum(v is not None for v in expected) == 6
    monkeypatch.setattr(decontam, "HASH_MASK", mask)      # every gram hashes to one of 1 or 4 values
    colliding = Decontam((eval_file,))
    assert len(set(colliding.index.keys[colliding.index.heads >= 0].tolist())) <= mask + 1
    assert [verdict(colliding, r) for r in PROBES] == expected
    colliding.prepare(PROBES)
    assert [verdict(colliding, r) for r in PROBES] == expected


def reference_details(eval_fields: list[list[list[str]]], path: str, records: list[list[list[str]]],
                      ngram: int, ngram_chars: int, min_ngram: int) -> list[str | None]:
    """The definition, naively: the grams of every eval field (see decontam's docstring) in file
    order, and per record the first of its token runs (fields, start, length) equal to one."""
    def weight(t: str) -> int:
        return ngram if decontam.is_han(t) else ngram_chars

    full, least = ngram * ngram_chars, min_ngram * ngram_chars
    grams: dict[tuple[str, ...], str] = {}
    for line, item in enumerate(eval_fields, 1):
        for name, toks in zip(("instruction", "input", "output"), item):
            total = sum(map(weight, toks))
            found = []
            if total < full:
                if toks and total >= least:
                    found.append(tuple(toks))
            else:
                for p in range(len(toks)):
                    w = 0
                    for k in range(p, len(toks)):
                        w += weight(toks[k])
                        if w >= full:
                            found.append(tuple(toks[p:k + 1]))
                            break
            for g in found:
                grams.setdefault(g, f"{path}:{line} {name}: {decontam.shortened(decontam.joined(list(g)))}")
    out = []
    for fields in records:
        hit = None
        for toks in fields:
            for i in range(len(toks)):
                for j in range(i + 1, len(toks) + 1):
                    if tuple(toks[i:j]) in grams:
                        hit = grams[tuple(toks[i:j])]
                        break
                if hit:
                    break
            if hit:
                break
        out.append(hit)
    return out


_TOKENS = st.lists(st.sampled_from(["a", "b", "c", "甲", "乙"]), max_size=9)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(eval_fields=st.lists(st.lists(_TOKENS, min_size=3, max_size=3), min_size=1, max_size=4),
       records=st.lists(st.lists(_TOKENS, min_size=3, max_size=3), min_size=1, max_size=6),
       mask=st.sampled_from([decontam.HASH_MASK, 1]))
def test_decisions_equal_the_definition(eval_fields, records, mask):
    """Random token soups from a tiny alphabet with grams of 3 words / 4 characters, so that shared
    grams, short fields and near misses are all frequent; with real and with 2-valued hashes."""
    with tempfile.TemporaryDirectory() as folder:
        rows = [dict(zip(("instruction", "input", "output"), (" ".join(f) or "-" for f in item)))
                for item in eval_fields]
        path = write_jsonl(os.path.join(folder, "e.jsonl"), rows)
        saved, decontam.HASH_MASK = decontam.HASH_MASK, mask
        try:
            stage = Decontam((path,), ngram=3, ngram_chars=4, min_ngram=2)
        finally:
            decontam.HASH_MASK = saved
        indexed = [[normalised_tokens(row[k]) for k in ("instruction", "input", "output")] for row in rows]
        expected = reference_details(indexed, path, records, 3, 4, 2)
        candidates = [Record(*(" ".join(f) for f in fields)) for fields in records]
        assert [verdict(stage, r) for r in candidates] == expected
        stage.prepare(candidates)
        assert [verdict(stage, r) for r in candidates] == expected


# ---- in a chain ------------------------------------------------------------------------------------
def test_in_a_chain_from_build_chain(eval_file):
    chain = build_chain([Decontam], {"decontam_against": [eval_file], "lang": "auto"})
    rejected: dict[str, str] = {}
    chain.on_reject = lambda r, v: rejected.setdefault(r.origin, v.detail)
    records = [Record(EN_GRAM, origin="c:1"), Record("Write a haiku about autumn leaves.", origin="c:2"),
               Record(f"故事里{ZH_SHORT_BY_ONE}条很好吃。", origin="c:3"), Record("x", output=ZH_GRAM, origin="c:4")]
    kept = [r.origin for r in chain.run(records, batch_size=3)]
    assert kept == ["c:2", "c:3"]
    assert rejected == {
        "c:1": f"{eval_file}:1 input: the lighthouse keeper had locked the gate before midnight but the baker swore",
        "c:4": f"{eval_file}:2 input: 灯塔看守人在半夜之前就锁上了大门但是面包"}
    assert chain.tally.per_stage() == {"decontam": {"benchmark_overlap": 2}}


def test_a_record_edited_after_prepare_is_checked_again(stage):
    record = Record("Write a haiku about autumn leaves.")
    stage.prepare([record])
    record.instruction = EN_GRAM
    assert verdict(stage, record) is not None


def test_opt_sets_one_eval_file(eval_file):
    options = declared(Decontam)
    assert set(options) == {"decontam_against", "ngram", "ngram_chars", "min_ngram", "decontam_fields"}
    [(component, kwargs)] = resolve(components([Decontam]), [f"decontam.decontam_against={eval_file}",
                                                             "decontam.ngram=12"]).items()
    assert kwargs == {"decontam_against": eval_file, "ngram": 12}
    stage = Decontam(**kwargs)
    assert verdict(stage, in_field("input", f"In my tale, {EN_SHORT_BY_ONE} slept.")) is not None


def test_a_nul_character_in_a_field_does_not_shift_the_fields(stage, eval_file):
    # Batches join fields with NUL; one inside a text must read as a space, not as a field boundary.
    records = [Record("Summarise\x00this.", "Nothing\x00here.", EN_GRAM), Record("Write a haiku about autumn leaves.")]
    stage.prepare(records)
    assert verdict(stage, records[0]).startswith(f"{eval_file}:1 input: the lighthouse keeper")
    assert verdict(stage, records[1]) is None
