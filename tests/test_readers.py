"""Readers: every input format, recognised from content, with exact error messages and locations."""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfinstruct.errors import InputError, UsageError
from selfinstruct.readers import parse_fields, read_records, source_json
from selfinstruct.record import Record
from selfinstruct.writers import write_alpaca


def write(path, text: str | bytes):
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return str(path)


def jsonl(*rows) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def error_of(path, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        list(read_records(path, **kwargs))
    return str(info.value)


def triples(records):
    return [(r.instruction, r.input, r.output) for r in records]


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Make the JSON document reader refill its window every few characters."""
    monkeypatch.setattr(source_json, "_CHUNK", 7)


# --- formats -------------------------------------------------------------------------------------

ALPACA = """[
  {
    "instruction": "Give three tips for staying healthy.",
    "input": "",
    "output": "Eat well."
  },
  {"instruction": "Translate to French.", "input": "Hello", "output": "Bonjour"},
  {"instruction": "Name a colour.", "output": "Blue"}
]
"""


def test_alpaca_json_list_gives_records_with_the_line_each_object_starts_on(tmp_path):
    path = write(tmp_path / "data.json", ALPACA)
    records = list(read_records(path))
    assert triples(records) == [("Give three tips for staying healthy.", "", "Eat well."),
                                ("Translate to French.", "Hello", "Bonjour"),
                                ("Name a colour.", "", "Blue")]
    assert [r.origin for r in records] == [f"{path}:2", f"{path}:7", f"{path}:8"]


def test_alpaca_json_list_reads_the_same_when_split_into_tiny_chunks(tmp_path, tiny_chunks):
    path = write(tmp_path / "data.json", ALPACA)
    records = list(read_records(path))
    assert [r.origin for r in records] == [f"{path}:2", f"{path}:7", f"{path}:8"]
    assert records[2].output == "Blue"


def test_a_one_line_json_list_puts_every_record_on_line_1(tmp_path):
    rows = [{"instruction": f"Task {i}", "input": "", "output": str(i)} for i in range(3)]
    path = write(tmp_path / "data.json", json.dumps(rows))
    records = list(read_records(path))
    assert [r.output for r in records] == ["0", "1", "2"]
    assert {r.origin for r in records} == {f"{path}:1"}


def test_jsonl_gives_one_record_per_line_and_skips_blank_lines(tmp_path):
    text = jsonl({"instruction": "A", "output": "1"}) + "\n  \n" + jsonl({"instruction": "B", "input": "x",
                                                                          "output": "2"})
    path = write(tmp_path / "data.jsonl", text)
    records = list(read_records(path))
    assert triples(records) == [("A", "", "1"), ("B", "x", "2")]
    assert [r.origin for r in records] == [f"{path}:1", f"{path}:4"]


def test_self_instruct_seed_tasks_give_one_record_per_instance(tmp_path):
    path = write(tmp_path / "seed_tasks.jsonl", jsonl(
        {"id": "seed_task_0", "name": "breakfast", "instruction": "Suggest a breakfast.",
         "instances": [{"input": "", "output": "Oatmeal."}], "is_classification": False},
        {"id": "seed_task_1", "name": "sentiment", "instruction": "Classify the sentiment.",
         "instances": [{"input": "I love it", "output": "positive"}, {"input": "Awful", "output": "negative"}],
         "is_classification": True}))
    records = list(read_records(path))
    assert triples(records) == [("Suggest a breakfast.", "", "Oatmeal."),
                                ("Classify the sentiment.", "I love it", "positive"),
                                ("Classify the sentiment.", "Awful", "negative")]
    assert [r.id for r in records] == ["seed_task_0", "seed_task_1#0", "seed_task_1#1"]
    assert records[2].meta == {"task_id": "seed_task_1", "name": "sentiment", "is_classification": True,
                               "instance": 1}
    assert records[2].origin == f"{path}:2"


def test_belle_seed_tasks_are_json_lines_despite_the_json_name_and_are_chinese(tmp_path):
    path = write(tmp_path / "zh_seed_tasks.json", jsonl(
        {"id": "seed_task_8", "name": "haiku", "instruction": "请以下面词语为主题写一首诗",
         "instances": [{"input": "夏天", "output": "夏日炎炎。"}], "is_classification": False},
        {"id": "seed_task_9", "name": "en", "instruction": "Write a poem about summer.",
         "instances": [{"input": "", "output": "Sun."}], "is_classification": False}))
    records = list(read_records(path))
    assert triples(records)[0] == ("请以下面词语为主题写一首诗", "夏天", "夏日炎炎。")
    assert [r.lang for r in records] == ["zh", ""]


def test_belle_input_target_records_use_the_input_as_instruction(tmp_path):
    path = write(tmp_path / "belle.json", jsonl({"input": "写一首关于秋天的诗。", "target": "秋风起。"},
                                               {"input": "翻译：你好", "target": "Hello"}))
    assert triples(read_records(path)) == [("写一首关于秋天的诗。", "", "秋风起。"), ("翻译：你好", "", "Hello")]


def test_belle_generated_instruction_input_output_records_read_as_alpaca(tmp_path):
    path = write(tmp_path / "belle_gen.json", jsonl({"instruction": "总结下面的文章。", "input": "文章", "output": "摘要"}))
    [record] = read_records(path)
    assert (record.instruction, record.input, record.output, record.lang) == ("总结下面的文章。", "文章", "摘要", "zh")


def test_machine_generated_instructions_are_instruction_only_and_keep_their_similarity(tmp_path):
    path = write(tmp_path / "machine_generated_instructions.jsonl", jsonl(
        {"instruction": "Write a limerick about cats.", "most_similar": {"Write a poem.": 0.4, "Write a haiku.": 0.5},
         "avg_similarity_score": 0.2, "metadata": {"x": 1}, "request_idx": 3},
        {"instruction": "List three rivers.", "most_similar": {}, "avg_similarity_score": 0.1}))
    first, second = read_records(path)
    assert triples([first, second]) == [("Write a limerick about cats.", "", ""), ("List three rivers.", "", "")]
    assert (first.most_similar, first.rouge, first.meta) == ("Write a haiku.", 0.5, {"avg_similarity_score": 0.2})
    assert second.most_similar is None


def test_a_pretty_printed_single_object_is_one_record(tmp_path):
    path = write(tmp_path / "one.json", '{\n  "instruction": "Add 2 and 3.",\n  "output": "5"\n}\n')
    [record] = read_records(path)
    assert (record.instruction, record.output, record.origin) == ("Add 2 and 3.", "5", f"{path}:1")


def test_parquet_rows_are_read_in_order_with_row_numbers(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"instruction": [f"Task {i}" for i in range(5)], "input": ["", "x", None, "", ""],
                      "output": [str(i) for i in range(5)]})
    path = str(tmp_path / "data.parquet")
    pq.write_table(table, path, row_group_size=2)
    records = list(read_records(path))
    assert triples(records)[:3] == [("Task 0", "", "0"), ("Task 1", "x", "1"), ("Task 2", "", "2")]
    assert [r.origin for r in records] == [f"{path}:{i}" for i in range(1, 6)]


def test_a_save_to_disk_folder_is_read_as_a_dataset(tmp_path):
    import datasets

    folder = str(tmp_path / "saved")
    datasets.Dataset.from_dict({"instruction": ["A", "B"], "input": ["", "b"], "output": ["1", "2"]}) \
        .save_to_disk(folder)
    records = list(read_records(folder))
    assert triples(records) == [("A", "", "1"), ("B", "b", "2")]
    assert records[1].origin == f"{folder}:2"


def test_a_saved_dataset_dict_reads_train_or_the_split_after_a_colon(tmp_path):
    import datasets

    folder = str(tmp_path / "saved")
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"instruction": ["T"], "output": ["t"]}),
        "test": datasets.Dataset.from_dict({"instruction": ["E"], "output": ["e"]}),
    }).save_to_disk(folder)
    assert [r.instruction for r in read_records(folder)] == ["T"]
    assert [r.instruction for r in read_records(f"{folder}:test")] == ["E"]
    assert error_of(f"{folder}:dev") == f"{folder}:dev: no split 'dev' (splits: train, test)"


def test_hf_name_not_in_the_local_cache_is_an_input_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = error_of("hf:nobody/no-such-dataset-xyz")
    assert message.startswith("hf:nobody/no-such-dataset-xyz: not in the local Hugging Face cache (")


def test_hf_name_reads_a_local_dataset_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "local").mkdir()
    write(tmp_path / "local" / "train.jsonl", jsonl({"instruction": "A", "output": "1"}))
    records = list(read_records(f"hf:{tmp_path / 'local'}"))
    assert triples(records) == [("A", "", "1")]
    assert records[0].origin == f"hf:{tmp_path / 'local'}:1"


def test_fields_map_other_key_names(tmp_path):
    path = write(tmp_path / "qa.jsonl", jsonl({"question": "What is 2+2?", "answer": "4", "input": "ignored?"}))
    [record] = read_records(path, fields={"instruction": "question", "output": "answer"})
    assert (record.instruction, record.input, record.output) == ("What is 2+2?", "ignored?", "4")
    [record] = read_records(path, fields="instruction=question,input=answer,output=answer")
    assert (record.instruction, record.input, record.output) == ("What is 2+2?", "4", "4")


def test_fields_name_the_missing_key_in_the_error(tmp_path):
    path = write(tmp_path / "qa.jsonl", jsonl({"question": "Q?", "answer": "A"}, {"answer": "B"}))
    assert error_of(path, fields="instruction=question,output=answer") == f"{path}:2: record has no 'question' field"


@pytest.mark.parametrize("spec, message", [
    ("instrucion=question", "--fields: unknown field 'instrucion' (known: instruction, input, output)"),
    ("instruction", "--fields: 'instruction' is not FIELD=NAME (e.g. instruction=question)"),
    ("output=", "--fields: 'output=' is not FIELD=NAME (e.g. instruction=question)"),
])
def test_bad_fields_specs_are_usage_errors(spec, message):
    with pytest.raises(UsageError) as info:
        parse_fields(spec)
    assert str(info.value) == message


def test_parse_fields_strips_spaces():
    assert parse_fields(" instruction = question , output=answer ") == {"instruction": "question", "output": "answer"}


# --- encodings and sizes -------------------------------------------------------------------------

@pytest.mark.parametrize("name, text", [("bom.json", ALPACA), ("bom.jsonl", jsonl({"instruction": "A", "output": "1"}))])
def test_a_utf8_bom_is_ignored(tmp_path, name, text):
    path = write(tmp_path / name, b"\xef\xbb\xbf" + text.encode())
    assert list(read_records(path))[0].instruction in ("Give three tips for staying healthy.", "A")


def test_invalid_utf8_in_jsonl_names_its_line(tmp_path):
    path = write(tmp_path / "x.jsonl", jsonl({"instruction": "A", "output": "1"}).encode()
                 + b'{"instruction": "B\xff", "output": "2"}\n')
    assert error_of(path) == f"{path}:2: invalid UTF-8"


def test_invalid_utf8_in_a_json_list_names_its_line(tmp_path, tiny_chunks):
    path = write(tmp_path / "x.json", b'[\n{"instruction": "A", "output": "1"},\n{"instruction": "\xc3(", "output": "2"}]')
    assert error_of(path) == f"{path}:3: invalid UTF-8"


def test_very_long_lines_are_read_whole(tmp_path):
    long_output = "word " * 400_000
    path = write(tmp_path / "long.jsonl", jsonl({"instruction": "Repeat.", "output": long_output},
                                                {"instruction": "B", "output": "2"}))
    assert [len(r.output) for r in read_records(path)] == [len(long_output), 1]
    path = write(tmp_path / "long.json", json.dumps([{"instruction": "Repeat.", "output": long_output}] * 2))
    assert [len(r.output) for r in read_records(path)] == [len(long_output)] * 2


def test_a_json_list_is_streamed_record_by_record(tmp_path):
    # The first record comes out before the reader reaches the broken end of the file.
    path = write(tmp_path / "data.json", '[{"instruction": "A", "output": "1"},\n' + "\n" * 10 + "{oops")
    records = read_records(path)
    assert next(records).instruction == "A"
    with pytest.raises(InputError) as info:
        next(records)
    assert str(info.value) == f"{path}:12:2: invalid JSON: Expecting property name enclosed in double quotes"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1), st.text(), st.text()), min_size=1, max_size=8),
       st.sampled_from([7, 64, 1 << 20]))
def test_write_alpaca_then_read_records_round_trips(tmp_path_factory, rows, chunk):
    path = tmp_path_factory.mktemp("rt") / "data.json"
    write_alpaca(path, [Record(*row) for row in rows])
    old, source_json._CHUNK = source_json._CHUNK, chunk
    try:
        assert triples(read_records(str(path))) == rows
    finally:
        source_json._CHUNK = old


# --- errors --------------------------------------------------------------------------------------

BROKEN_JSON = [
    '[\n  {"instruction": "A", "output": "1"}\n  {"instruction": "B", "output": "2"}\n]',
    '[{"instruction": "A", "output": "1"},]',
    '[{"instruction": "A", "output": "1"}',
    '[{"instruction": "A", "output": "1"},\n',
    '[\n{"instruction": "A",\n "output" "1"}]',
    '[{"instruction": "A", "output": "1"}] trailing',
    '[{"instruction": "unterminated, "output": "1"}]',
    '[\n\n\n   {"instruction": "A", "output": 1e}]',
    '{"instruction": "A",\n "output": "1"\n',
]


@pytest.mark.parametrize("text", BROKEN_JSON)
@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_broken_json_reports_the_same_message_line_and_column_as_json(tmp_path, monkeypatch, text, chunk):
    monkeypatch.setattr(source_json, "_CHUNK", chunk)
    path = write(tmp_path / "data.json", text)
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    e = expected.value
    assert error_of(path) == f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}"


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(ALPACA) - 1), st.sampled_from(["", "[", "]", "{", "}", ",", ":", '"', " ", "\n", "1", "a"]),
       st.sampled_from([7, 1 << 20]))
def test_a_json_list_broken_anywhere_fails_where_json_fails(tmp_path_factory, at, insert, chunk):
    # Replace one character of a valid list; whenever json rejects the result, so do we, alike, unless
    # a record before the syntax error is already wrong (the reader streams: first error first).
    text = ALPACA[:at] + insert + ALPACA[at + 1:]
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        expected, line = f"{e.lineno}:{e.colno}: invalid JSON: {e.msg}", e.lineno
    else:
        return
    path = write(tmp_path_factory.mktemp("broken") / "data.json", text)
    old, source_json._CHUNK = source_json._CHUNK, chunk
    try:
        message = error_of(path)
    finally:
        source_json._CHUNK = old
    if not text.lstrip().startswith("["):
        return
    if "invalid JSON" in message:
        assert message == f"{path}:{expected}"
    else:
        assert int(message[len(path) + 1:].split(":")[0]) <= line, message


def test_a_missing_comma_reads_like_the_documented_example(tmp_path):
    path = write(tmp_path / "data.json", '[\n  {"instruction": "A", "output": "1"},\n  {"instruction": "B" "output": "2"}\n]')
    assert error_of(path) == f"{path}:3:23: invalid JSON: Expecting ',' delimiter"


def test_broken_jsonl_line_names_line_and_column(tmp_path):
    path = write(tmp_path / "data.jsonl", jsonl({"instruction": "A", "output": "1"}) + '{"instruction": "B",, }\n')
    assert error_of(path) == f"{path}:2:21: invalid JSON: Expecting property name enclosed in double quotes"


def test_a_record_without_instruction_names_its_line(tmp_path):
    rows = [{"instruction": f"T{i}", "output": "x"} for i in range(6)] + [{"prompt": "P", "output": "x"}]
    path = write(tmp_path / "data.jsonl", jsonl(*rows))
    assert error_of(path) == f"{path}:7: record has no 'instruction' field"


def test_a_first_record_without_instruction_names_line_1(tmp_path):
    path = write(tmp_path / "data.json", '[\n{"prompt": "P", "output": "x"}]')
    assert error_of(path) == f"{path}:2: record has no 'instruction' field"


def test_an_alpaca_record_without_output_is_an_error_once_the_file_has_outputs(tmp_path):
    path = write(tmp_path / "data.jsonl", jsonl({"instruction": "A", "output": "1"}, {"instruction": "B"}))
    assert error_of(path) == f"{path}:2: record has no 'output' field"


@pytest.mark.parametrize("row, message", [
    ({"instruction": "A", "output": 5}, "field 'output' is int, expected a string"),
    ({"instruction": ["A"], "output": "x"}, "field 'instruction' is list, expected a string"),
    ({"instruction": None, "output": "x"}, "field 'instruction' is null, expected a string"),
    ({"instruction": "A", "input": 1.5, "output": "x"}, "field 'input' is float, expected a string"),
    (["instruction", "A"], "record is list, expected an object"),
    ({"id": "t", "instruction": "A", "instances": {}}, "field 'instances' is dict, expected a list"),
    ({"id": "t", "instruction": "A", "instances": []}, "field 'instances' is empty"),
    ({"id": "t", "instruction": "A", "instances": [{"input": "", "output": True}]},
     "instance 0: field 'output' is bool, expected a string"),
])
def test_malformed_records_name_the_field_and_line(tmp_path, row, message):
    path = write(tmp_path / "data.json", "[\n" + json.dumps(row) + "\n]")
    assert error_of(path) == f"{path}:2: {message}"


def test_a_null_input_or_output_is_empty(tmp_path):
    path = write(tmp_path / "data.jsonl", jsonl({"instruction": "A", "input": None, "output": ""}))
    assert triples(read_records(path)) == [("A", "", "")]


@pytest.mark.parametrize("text", ["", "  \n\n", "[]", "[ \n ]", "\n\n\n"])
def test_an_empty_input_has_no_records(tmp_path, text):
    path = write(tmp_path / "empty.json", text)
    assert error_of(path) == f"{path}: no records"


def test_a_missing_file_says_so(tmp_path):
    path = str(tmp_path / "missing.json")
    assert error_of(path) == f"{path}: no such file"


def test_a_folder_that_is_no_dataset_says_so(tmp_path):
    (tmp_path / "dir").mkdir()
    path = str(tmp_path / "dir") + "/"
    assert error_of(path) == f"{path}: not a readable file or dataset folder"


def test_content_that_is_no_known_format_says_so(tmp_path):
    path = write(tmp_path / "data.csv", "instruction,output\nA,1\n")
    assert error_of(path) == f"{path}: not JSON, JSON lines or parquet"


def test_unknown_on_bad_record_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError) as info:
        read_records(write(tmp_path / "d.jsonl", jsonl({"instruction": "A"})), on_bad_record="ignore")
    assert str(info.value) == "--on-bad-record must be one of error, skip, not 'ignore'"


# --- skip mode -----------------------------------------------------------------------------------

def test_skip_mode_collects_bad_rows_and_reads_on(tmp_path):
    path = write(tmp_path / "data.jsonl",
                 jsonl({"instruction": "A", "output": "1"}).encode()
                 + b'{"instruction": "bad\xff"}\n'
                 + b'{"instruction": "B", "output": 2}\n'
                 + b"not json\n"
                 + jsonl({"output": "no instruction"}, [1, 2], {"instruction": "C", "output": "3"}).encode())
    bad: list = []
    records = list(read_records(path, on_bad_record="skip", bad=bad))
    assert triples(records) == [("A", "", "1"), ("C", "", "3")]
    assert [(origin, message) for _, origin, message in bad] == [
        (f"{path}:2", "invalid UTF-8"),
        (f"{path}:3", "field 'output' is int, expected a string"),
        (f"{path}:4", "invalid JSON: Expecting value"),
        (f"{path}:5", "record has no 'instruction' field"),
        (f"{path}:6", "record is list, expected an object"),
    ]
    assert bad[0][0] is None
    assert bad[1][0].meta == {"raw": {"instruction": "B", "output": 2}}
    assert bad[2][0].meta == {"raw_line": "not json"}


def test_skip_mode_picks_the_schema_from_the_first_good_row(tmp_path):
    path = write(tmp_path / "data.jsonl", jsonl({"prompt": "x"}, {"instruction": "A", "output": "1"}))
    bad: list = []
    assert triples(read_records(path, on_bad_record="skip", bad=bad)) == [("A", "", "1")]
    assert [m for _, _, m in bad] == ["record has no 'instruction' field"]


def test_skip_mode_still_stops_at_a_broken_json_document(tmp_path):
    path = write(tmp_path / "data.json", '[{"instruction": "A", "output": "1"} {"instruction": "B"}]')
    assert error_of(path, on_bad_record="skip") == f"{path}:1:38: invalid JSON: Expecting ',' delimiter"


def test_reading_never_modifies_the_input(tmp_path):
    path = write(tmp_path / "data.json", ALPACA)
    before = os.stat(path).st_mtime_ns, open(path, "rb").read()
    list(read_records(path))
    assert (os.stat(path).st_mtime_ns, open(path, "rb").read()) == before


# --- our own records.jsonl: every field read back as written ---------------------------------------

def own_row(**changes) -> dict:
    """One line of records.jsonl as ``Record.to_dict`` writes it (every field, null when unset)."""
    record = Record("Name three rivers in Europe.", "", "The Danube, the Rhine and the Loire.", id="en-000007",
                    lang="en", origin="machine", most_similar="Name two rivers.", rouge=0.42,
                    nearest_seed="List three cities.", nearest_seed_rouge=0.31, judge_score=8,
                    judge_reason="correct and concise", teacher="openai:gpt-4o-mini", request_id="u3:1",
                    meta={"is_classification": False, "timings": {"instructions": 1.5, "instances": 0.25}})
    return {**record.to_dict(), **changes}


def test_our_records_are_read_back_with_every_field_and_the_first_read_as_source(tmp_path):
    row = own_row()
    path = write(tmp_path / "records.jsonl", jsonl(row, own_row(id="en-000008", source="gen/records.jsonl:4")))
    first, second = read_records(path)
    assert first == Record.from_dict({**row, "source": f"{path}:1"})
    assert (first.origin, first.teacher, first.judge_score, first.meta["timings"]) == (
        "machine", "openai:gpt-4o-mini", 8, {"instructions": 1.5, "instances": 0.25})
    assert (second.origin, second.source) == ("machine", "gen/records.jsonl:4")    # read before: kept


def test_our_chinese_records_keep_their_language_and_a_file_line_origin(tmp_path):
    row = own_row(instruction="写一首关于秋天的短诗。", output="秋风起，落叶飞。", lang="zh",
                  origin="belle.json:12", source="belle.json:12", teacher=None, request_id=None,
                  judge_reason="意境完整")
    path = write(tmp_path / "records.jsonl", jsonl(row))
    [record] = read_records(path)
    assert record == Record.from_dict(row)


def test_records_from_before_the_new_fields_read_with_their_defaults(tmp_path):
    old = {k: v for k, v in own_row().items()
           if k not in ("source", "nearest_seed", "nearest_seed_rouge", "judge_score", "judge_reason")}
    path = write(tmp_path / "records.jsonl", jsonl(old))
    [record] = read_records(path)
    assert (record.source, record.nearest_seed, record.nearest_seed_rouge, record.judge_score,
            record.judge_reason) == (f"{path}:1", None, None, None, None)
    assert (record.teacher, record.request_id, record.rouge) == ("openai:gpt-4o-mini", "u3:1", 0.42)


def test_a_field_from_a_newer_version_is_kept_in_meta_not_lost(tmp_path):
    path = write(tmp_path / "records.jsonl", jsonl(own_row(toxicity={"score": 0.01}, stage_seconds=[0.5])))
    [record] = read_records(path)
    assert record.meta == {"is_classification": False, "timings": {"instructions": 1.5, "instances": 0.25},
                           "toxicity": {"score": 0.01}, "stage_seconds": [0.5]}


@pytest.mark.parametrize("changes, message", [
    ({"rouge": "x"}, "field 'rouge' is str, expected a number or null"),
    ({"nearest_seed_rouge": True}, "field 'nearest_seed_rouge' is bool, expected a number or null"),
    ({"judge_score": 7.5}, "field 'judge_score' is float, expected an integer or null"),
    ({"judge_score": "8"}, "field 'judge_score' is str, expected an integer or null"),
    ({"teacher": 3}, "field 'teacher' is int, expected a string or null"),
    ({"origin": ["x"]}, "field 'origin' is list, expected a string"),
    ({"instruction": None}, "field 'instruction' is null, expected a string"),
    ({"output": 4}, "field 'output' is int, expected a string"),
    ({"meta": ["a"]}, "field 'meta' is list, expected an object or null"),
    ({"timings": 1}, "field 'timings' is both a field of its own and a key of 'meta'"),
])
def test_malformed_metadata_is_a_bad_record_at_its_line(tmp_path, changes, message):
    path = write(tmp_path / "records.jsonl", jsonl(own_row(), own_row(**changes)))
    assert error_of(path) == f"{path}:2: {message}"
    bad: list = []
    assert len(list(read_records(path, on_bad_record="skip", bad=bad))) == 1
    [(record, origin, got)] = bad
    assert (origin, got, record.source, record.meta["raw"]) == (f"{path}:2", message, f"{path}:2", own_row(**changes))


def test_whole_numbers_for_similarity_are_floats_and_nulls_are_defaults(tmp_path):
    path = write(tmp_path / "records.jsonl", jsonl(own_row(rouge=1, input=None, lang=None, meta=None)))
    [record] = read_records(path)
    assert (record.rouge, type(record.rouge), record.input, record.lang, record.meta) == (1.0, float, "", "", {})


@pytest.mark.parametrize("row, schema", [
    ({"id": "alpaca_1", "instruction": "Name a colour.", "input": "", "output": "Blue"}, "alpaca"),
    ({"id": 7, "lang": "en", "source": "dolly", "instruction": "Name a colour.", "output": "Blue"}, "alpaca"),
    ({"instruction": "把这句话翻译成英文。", "input": "你好", "output": "Hello", "id": "zh-1", "lang": "zh"}, "alpaca"),
    ({"input": "写一首诗。", "target": "春眠不觉晓。"}, "belle_target"),
    ({"instruction": "Write a limerick.", "most_similar": {"Write a poem.": 0.4}, "avg_similarity_score": 0.2,
      "request_idx": 3, "metadata": {}}, "instruction"),
    ({"instruction": "A", "origin": "x", "teacher": "t", "output": "1"}, "alpaca"),
])
def test_other_peoples_rows_with_an_id_or_lang_are_not_taken_for_ours(tmp_path, row, schema):
    from selfinstruct.readers import components

    names = {key: key for key in ("instruction", "input", "output")}
    assert next(c.name for c in components()[1] if c.matches(row, names)) == schema
    path = write(tmp_path / "data.jsonl", jsonl(row))
    [record] = read_records(path)
    assert (record.origin, record.source) == (f"{path}:1", f"{path}:1")


def test_every_other_format_sets_source_to_where_it_was_read(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    seeds = write(tmp_path / "seeds.jsonl", jsonl(
        {"id": "s1", "name": "n", "instruction": "Classify.", "is_classification": True,
         "instances": [{"input": "a", "output": "x"}, {"input": "b", "output": "y"}]}))
    assert [(r.origin, r.source) for r in read_records(seeds)] == [(f"{seeds}:1", f"{seeds}:1")] * 2
    alpaca = write(tmp_path / "data.json", ALPACA)
    assert [r.source for r in read_records(alpaca)] == [f"{alpaca}:2", f"{alpaca}:7", f"{alpaca}:8"]
    table = str(tmp_path / "t.parquet")
    pq.write_table(pa.table({"instruction": ["A", "B"], "output": ["1", "2"]}), table)
    assert [r.source for r in read_records(table)] == [f"{table}:1", f"{table}:2"]


def test_our_records_read_from_parquet_and_a_saved_dataset_keep_their_metadata(tmp_path):
    import datasets

    rows = [own_row(meta={}), own_row(id="en-000008", rouge=None, judge_score=None, meta={})]
    for row in rows:
        del row["meta"]
    folder = str(tmp_path / "saved")
    datasets.Dataset.from_list(rows).save_to_disk(folder)
    parquet = str(tmp_path / "records.parquet")
    datasets.Dataset.from_list(rows).to_parquet(parquet)
    for path in (folder, parquet):
        got = list(read_records(path))
        assert got == [Record.from_dict({**row, "source": f"{path}:{i}"}) for i, row in enumerate(rows, 1)]


def test_read_located_says_where_each_record_is_in_this_file(tmp_path):
    from selfinstruct.readers import read_located

    path = write(tmp_path / "records.jsonl",
                 jsonl(own_row(source="gen/records.jsonl:4")) + "\n" + jsonl(own_row(id="en-000009")))
    pairs = list(read_located(path))
    assert [(where, r.source) for where, r in pairs] == [(f"{path}:1", "gen/records.jsonl:4"),
                                                        (f"{path}:3", f"{path}:3")]


@pytest.mark.parametrize("source, path_of", [
    ("source_hf_disk", lambda tmp: str(tmp / "saved")), ("source_hf_hub", lambda tmp: "hf:someone/set")])
def test_a_missing_datasets_package_is_named_as_a_dependency_not_an_extra(tmp_path, monkeypatch, source, path_of):
    import builtins
    import importlib

    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")     # hf: sets them itself; put them back after
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if source == "source_hf_disk":
        datasets.Dataset.from_dict({"instruction": ["A"], "output": ["1"]}).save_to_disk(path_of(tmp_path))
    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("No module named 'datasets'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_datasets)
    importlib.import_module(f"selfinstruct.readers.{source}")
    message = error_of(path_of(tmp_path))
    assert message == (f"{path_of(tmp_path)}: datasets is not installed, though selfinstruct depends on it "
                       f"(pip install datasets)")
    assert "[hf]" not in message


def test_the_records_schema_knows_every_record_field():
    """A field added to Record must be read back as that field, not land in meta as an unknown key."""
    from dataclasses import fields

    from selfinstruct.readers import schema_record

    assert schema_record._KNOWN == {f.name for f in fields(Record)}
