"""records.jsonl is lossless: ``Record.to_dict()`` → one JSON line → the readers → the same ``Record``,
every field; and a generate → filter → filter chain changes nothing the second filter did not decide.

What a filter may set on a record it keeps (everything else passes through as read):
- ``source``: filled by the reader with ``path:line`` only when empty (a generated record has none
  until the first filter reads it); never changed afterwards.
- ``rouge`` / ``most_similar``: the rouge stage's verified best match in *this* run's pool. The
  first filter overwrites what generate wrote (generate's pool held the seeds). A second filter
  with the same threshold and no ``--against`` recomputes the same values: its pool at each record
  is the first filter's kept records before it, in the same order, which is exactly the first run's
  pool. Another threshold or ``--against`` changes them, and that is the second filter's decision.
- ``lang``: set by the language rule only when empty.
- ``judge_score`` / ``judge_reason``: set again only when the judge is asked for (not here).
"""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfinstruct import journal
from selfinstruct.curate import run_filter
from selfinstruct.generate import Settings, run_generate
from selfinstruct.readers import read_records
from selfinstruct.record import Record
from selfinstruct.writers import to_json
from tests.sim_teacher import ScriptedTeacher

FILTER_MAY_SET = {"source", "rouge", "most_similar", "lang"}
NEW_FIELDS = ("source", "nearest_seed", "nearest_seed_rouge", "judge_score", "judge_reason")


def write_records(path, records) -> str:
    """records.jsonl exactly as generate and filter write it."""
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(to_json(r.to_dict()) + "\n")
    return str(path)


def lines_of(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# --- one Record through a JSON line and back ------------------------------------------------------

JSON_SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
                | st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=10)
HAN = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=20)
TEXT = st.text(max_size=40) | HAN
OPTIONAL_TEXT = st.none() | TEXT
SIMILARITY = st.none() | st.floats(allow_nan=False)

RECORDS = st.builds(
    Record, instruction=TEXT, input=TEXT, output=TEXT, id=st.text(max_size=12),
    lang=st.sampled_from(["", "en", "zh"]), origin=st.sampled_from(["", "machine", "seed", "data.json:3"]) | TEXT,
    source=st.sampled_from(["", "data.json:3", "hf:team/set:12"]) | TEXT,
    most_similar=OPTIONAL_TEXT, rouge=SIMILARITY, nearest_seed=OPTIONAL_TEXT, nearest_seed_rouge=SIMILARITY,
    judge_score=st.none() | st.integers(1, 10) | st.integers(), judge_reason=OPTIONAL_TEXT,
    teacher=OPTIONAL_TEXT, request_id=OPTIONAL_TEXT,
    meta=st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4))


@settings(max_examples=150, deadline=None)
@given(st.lists(RECORDS, min_size=1, max_size=5))
def test_any_record_reads_back_equal_in_every_field(tmp_path_factory, records):
    path = write_records(tmp_path_factory.mktemp("rt") / "records.jsonl", records)
    got = list(read_records(path))
    # The one change reading makes: a record that was never read gets this line as its source.
    expected = [Record.from_dict({**r.to_dict(), "source": r.source or f"{path}:{i}", "meta": r.meta})
                for i, r in enumerate(records, 1)]
    assert got == expected
    assert [type(r.rouge) for r in got] == [type(r.rouge) for r in records]
    assert [type(r.judge_score) for r in got] == [type(r.judge_score) for r in records]
    # A second read of what the first read gives is the identity: provenance is kept.
    again = write_records(tmp_path_factory.mktemp("rt") / "records.jsonl", got)
    assert list(read_records(again)) == got


def test_a_record_with_everything_set_in_chinese_reads_back_whole(tmp_path):
    record = Record("把下面的句子翻译成英文。", "今天天气很好。", "The weather is nice today.", id="zh-000003",
                    lang="zh", origin="machine", source="gen/records.jsonl:3", most_similar="翻译这句话。",
                    rouge=0.4166666666666667, nearest_seed="将以下中文翻译成英文。", nearest_seed_rouge=0.5,
                    judge_score=9, judge_reason="翻译准确", teacher="openai:qwen2.5-7b", request_id="u12:0",
                    meta={"is_classification": False, "timings": {"instructions": 1.25, "instances": None},
                          "tags": ["翻译", 3, 2.5, True]})
    path = write_records(tmp_path / "records.jsonl", [record])
    assert list(read_records(path)) == [record]


# --- old journals ----------------------------------------------------------------------------------

def test_an_old_journal_without_the_new_fields_loads_with_their_defaults(tmp_path):
    old = {k: v for k, v in Record("Name a river.", "", "The Nile.", id="en-000001", lang="en", origin="machine",
                                   teacher="scripted:sim", request_id="u0:0").to_dict().items()
           if k not in NEW_FIELDS}
    assert Record.from_dict(old) == Record("Name a river.", "", "The Nile.", id="en-000001", lang="en",
                                           origin="machine", teacher="scripted:sim", request_id="u0:0")
    path = tmp_path / journal.FILENAME
    path.write_text("".join(json.dumps(ev) + "\n" for ev in (
        {"ev": "header", "settings": {"num": 1}},
        {"ev": "pool", "key": "c0", "record": old},
        {"ev": "accept", "key": "c1", "record": old})), encoding="utf-8")
    state = journal.load(str(path))
    assert state.accepted == state.pooled == [Record.from_dict(old)]
    assert all(getattr(state.accepted[0], name) in ("", None) for name in NEW_FIELDS)


# --- generate → filter → filter ---------------------------------------------------------------------

# Hand-written inputs for the first filter beside the generated records: in each language a pair with
# the same words in another order, so that the rouge stage cannot prune the comparison and verifies
# a ROUGE-L below the threshold (kept, with its rouge set: 0.4 and 0.5625), and records carrying every
# kind of metadata.
EXTRA_ALPACA = [
    {"instruction": "Write a short poem about the sea and the moon.", "input": "",
     "output": "The moon pulls softly at the tide,\nthe sea replies in silver light."},
    {"instruction": "About the moon and the sea, write a short poem.", "input": "",
     "output": "Above the waves the pale moon glows;\nbelow, the restless water flows."},
    {"instruction": "把这首诗翻译成英文并解释它的意思。", "input": "床前明月光，疑是地上霜。",
     "output": "Moonlight before my bed looks like frost on the ground. The poet misses home."},
    {"instruction": "解释它的意思并把这首诗翻译成英文。", "input": "春眠不觉晓，处处闻啼鸟。",
     "output": "诗人写春天睡得香甜。英文：In spring I sleep past dawn, and birds sing everywhere."},
]
EXTRA_RECORDS = [
    Record("Explain why the sky looks blue at noon but red at sunset.", "",
           "Sunlight scatters off air molecules; blue light scatters most, so the noon sky looks blue, while "
           "at sunset light crosses more air and mostly red remains.", id="en-900001", lang="en",
           origin="machine", nearest_seed="Explain a natural phenomenon.", nearest_seed_rouge=0.35,
           judge_score=8, judge_reason="accurate, clear", teacher="openai:gpt-4o-mini", request_id="u7:2",
           meta={"is_classification": False, "timings": {"instructions": 2.5, "judge": 0.75}}),
    Record("为下面这段话拟一个标题。", "春天来了，公园里的花都开了，孩子们在草地上放风筝。", "春日公园", id="zh-900002",
           lang="zh", origin="belle.json:41", source="belle.json:41", judge_score=7, judge_reason="标题贴切",
           teacher="embedded:SmolLM2-135M-Instruct", request_id="u9:0", meta={"tags": ["标题", "摘要"]}),
]


@pytest.mark.parametrize("lang, recipe", [("en", "self-instruct"), ("zh", "alpaca")])
def test_generate_filter_filter_the_second_filter_changes_nothing_it_did_not_decide(tmp_path, lang, recipe):
    gen = tmp_path / "gen"
    run_generate(Settings(num=8, out=str(gen), lang=lang, recipe=recipe, progress=False), ScriptedTeacher(lang=lang))
    generated = lines_of(gen / "records.jsonl")
    assert {r["teacher"] for r in generated} == {"scripted:sim"} and all(r["request_id"] for r in generated)

    alpaca = tmp_path / "extra.json"
    # The first generated instruction again (an exact duplicate the first filter rejects) and the pairs.
    dup = {k: generated[0][k] for k in ("instruction", "input", "output")}
    alpaca.write_text(json.dumps(EXTRA_ALPACA + [dup], ensure_ascii=False, indent=1), encoding="utf-8")
    own = write_records(tmp_path / "own.jsonl", EXTRA_RECORDS)
    inputs = [str(gen / "records.jsonl"), str(alpaca), own]

    first = run_filter(inputs, str(tmp_path / "f1"), progress=False)
    second = run_filter([str(tmp_path / "f1" / "records.jsonl")], str(tmp_path / "f2"), progress=False)

    assert first["rejected"].get("exact_duplicate") == 1            # the first filter decided something
    f1, f2 = lines_of(tmp_path / "f1" / "records.jsonl"), lines_of(tmp_path / "f2" / "records.jsonl")
    assert second["rejected"] == {} and second["kept"] == first["kept"] == len(f1)
    assert f2 == f1                                                  # every record, every field, in order
    assert (tmp_path / "f2" / "data.json").read_bytes() == (tmp_path / "f1" / "data.json").read_bytes()
    rouge_of = {r["instruction"]: r["rouge"] for r in f1}           # the rouge stage's values were compared
    assert rouge_of[EXTRA_ALPACA[1]["instruction"]] == pytest.approx(0.4)
    assert rouge_of[EXTRA_ALPACA[3]["instruction"]] == pytest.approx(0.5625)

    # What the first filter changed, against what it read: only the fields a filter sets.
    read_from = {f"{inputs[0]}:{i}": row for i, row in enumerate(generated, 1)}
    read_from |= {r.source: r.to_dict() for r in EXTRA_RECORDS if r.source}
    read_from |= {f"{own}:{i}": r.to_dict() for i, r in enumerate(EXTRA_RECORDS, 1) if not r.source}
    checked = 0
    for row in f1:
        before = read_from.get(row["source"])
        if before is None:                                           # from the Alpaca file: text only
            assert row["origin"] == row["source"] and row["source"].startswith(f"{alpaca}:")
            assert {k: row[k] for k in dup} in EXTRA_ALPACA
            continue
        changed = {k for k in row.keys() | before.keys() if row.get(k) != before.get(k)}
        assert changed <= FILTER_MAY_SET, (row["id"], changed)
        assert "source" not in changed or before["source"] == ""
        assert row["origin"] == before["origin"] and row.get("meta") == before.get("meta")
        checked += 1
    assert checked == len(f1) - len(EXTRA_ALPACA)
    by_id = {row["id"]: row for row in f1}
    assert by_id["en-900001"]["judge_score"] == 8 and by_id["zh-900002"]["meta"] == {"tags": ["标题", "摘要"]}
    assert by_id["zh-900002"]["source"] == "belle.json:41"           # the first provenance, kept


def test_filter_reads_a_generated_records_jsonl_with_its_metadata(tmp_path):
    gen = tmp_path / "gen"
    run_generate(Settings(num=3, out=str(gen), progress=False), ScriptedTeacher())
    records = list(read_records(str(gen / "records.jsonl")))
    assert [(r.id, r.origin, r.teacher, r.source) for r in records] == [
        (f"en-00000{i}", "machine", "scripted:sim", f"{gen / 'records.jsonl'}:{i}") for i in (1, 2, 3)]
    assert [r.to_alpaca() for r in records] == json.loads((gen / "data.json").read_text(encoding="utf-8"))
