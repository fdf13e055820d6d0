"""``selfinstruct filter``: a round trip through the default chain, counts that add up, malformed
input handled (skip) or refused before anything is written (error), exact messages, exit code 2."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from selfinstruct.curate import run_filter
from selfinstruct.errors import UsageError

RECORDS = [
    {"instruction": "Give three tips for staying healthy during the winter.", "input": "",
     "output": "Eat well, sleep enough and keep moving."},
    {"instruction": "Translate the following sentence into French.", "input": "The cat sleeps.",
     "output": "Le chat dort."},
    {"instruction": "Name the largest planet in our solar system.", "input": "",
     "output": "Jupiter is the largest planet."},
    {"instruction": "Explain why leaves change colour in autumn.", "input": "",
     "output": "Chlorophyll breaks down and reveals the yellow and red pigments."},
    {"instruction": "give three tips for staying healthy during the winter", "input": "",
     "output": "Dress warmly."},                                   # exact duplicate of the first
    {"instruction": "Hi.", "input": "", "output": "Hello!"},     # too short
]
SEEDS = [  # Self-Instruct seed tasks: the pool the inputs are checked against
    {"id": "seed_task_0", "name": "autumn", "instruction": "Explain why leaves change colour in autumn.",
     "instances": [{"input": "", "output": "Less daylight."}], "is_classification": False},
]


def write_json_list(path: Path, rows) -> str:
    path.write_text("[\n" + ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n",
                    encoding="utf-8")
    return str(path)


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def invoke(invoke_cli):
    """``invoke(*args)``: ``selfinstruct filter --no-progress --no-report *args`` in-process (a test
    about the report passes ``--report``)."""
    return lambda *args: invoke_cli("filter", "--no-progress", "--no-report", *args)


def assert_counts_add_up(summary: dict) -> None:
    """Every input record is kept or rejected once; malformed rows are rejected as "malformed"."""
    assert summary["kept"] + summary["rejected_total"] == summary["input_records"]
    assert summary["rejected_total"] == sum(summary["rejected"].values())
    assert summary["rejected"].get("malformed", 0) == summary["malformed"]


@pytest.fixture
def files(tmp_path, write_jsonl):
    return (write_json_list(tmp_path / "data.json", RECORDS), write_jsonl(tmp_path / "seed_tasks.jsonl", SEEDS))


def test_round_trip_keeps_the_novel_records_and_explains_the_rest(tmp_path, files, invoke, read_json, read_jsonl):
    data, seeds = files
    before = digest(data), digest(seeds)
    out = tmp_path / "out"
    result = invoke(data, "--against", seeds, "--out", out)
    assert result.exit_code == 0, result.output
    assert (digest(data), digest(seeds)) == before            # inputs are never modified

    summary = read_json(out / "summary.json")
    assert_counts_add_up(summary)
    assert (summary["input_records"], summary["kept"], summary["malformed"]) == (6, 3, 0)
    assert summary["rejected"] == {"exact_duplicate": 2, "too_short": 1}
    assert summary["inputs"] == [{"path": data, "records": 6}]
    assert summary["against"] == {"paths": [seeds], "records": 1, "malformed": 0}
    assert set(summary["seconds_per_stage"]) >= {"read", "exact", "quality"}
    assert summary["settings"]["rouge_threshold"] == 0.7
    assert read_json(out / "data.json") == [RECORDS[i] for i in (0, 1, 2)]

    rejects = read_jsonl(out / "rejects.jsonl")
    assert [(r["reason"], r["source"]) for r in rejects] == [
        ("exact_duplicate", f"{data}:5"), ("exact_duplicate", f"{data}:6"), ("too_short", f"{data}:7")]
    assert rejects[0]["record"]["instruction"] == RECORDS[3]["instruction"]
    assert result.stdout.splitlines()[0].startswith(f"kept 3 of 6 records -> {out}/data.json (")
    assert result.stdout.splitlines()[1] == f"rejected 3: exact_duplicate 2, too_short 1 -> {out}/rejects.jsonl"


def test_the_kept_data_json_loads_with_hugging_face_datasets(tmp_path, files, invoke):
    import datasets

    out = tmp_path / "out"
    assert invoke(files[0], "--against", files[1], "--out", out).exit_code == 0
    kept = datasets.load_dataset("json", data_files=str(out / "data.json"), split="train",
                                 cache_dir=str(tmp_path / "hf_cache"))
    assert kept["instruction"] == [RECORDS[i]["instruction"] for i in (0, 1, 2)]
    assert kept.column_names == ["instruction", "input", "output"]


def test_only_runs_the_named_stage(tmp_path, files, invoke, read_json):
    out = tmp_path / "out"
    result = invoke(files[0], "--only", "exact", "--out", out)
    assert result.exit_code == 0, result.output
    summary = read_json(out / "summary.json")
    assert summary["filters"] == ["exact"]
    assert (summary["kept"], summary["rejected"]) == (5, {"exact_duplicate": 1})


def test_skip_leaves_the_named_filters_out(tmp_path, files):
    summary = run_filter([files[0]], tmp_path / "out", skip="exact,length", progress=False)
    assert "exact" not in summary["filters"] and "length" not in summary["filters"]
    assert "exact_duplicate" not in summary["rejected"] and "too_short" not in summary["rejected"]
    assert_counts_add_up(summary)


def test_several_inputs_are_counted_one_by_one(tmp_path, files, write_jsonl):
    more = write_jsonl(tmp_path / "more.jsonl", [{"instruction": "Describe the water cycle in two sentences.",
                                                  "output": "Water evaporates, then falls as rain."}])
    summary = run_filter([files[0], more], tmp_path / "out", only=["exact"], progress=False)
    assert summary["inputs"] == [{"path": files[0], "records": 6}, {"path": more, "records": 1}]
    assert summary["kept"] == 6


def test_fields_map_a_question_answer_dataset(tmp_path, invoke, read_json, write_jsonl):
    data = write_jsonl(tmp_path / "qa.jsonl", [{"question": "What is the boiling point of water at sea level?",
                                                "answer": "100 degrees Celsius."}])
    out = tmp_path / "out"
    result = invoke(data, "--fields", "instruction=question,output=answer", "--only", "exact", "--out", out)
    assert result.exit_code == 0, result.output
    assert read_json(out / "data.json") == [
        {"instruction": "What is the boiling point of water at sea level?", "input": "",
         "output": "100 degrees Celsius."}]


def test_a_chinese_belle_file_filters_with_lang_zh(tmp_path, read_json, write_jsonl):
    rows = [{"input": "请写一首关于秋天的短诗，描写落叶和凉风。", "target": "秋风起，落叶飞，凉意满山川。"},
            {"input": "请写一首关于秋天的短诗，描写落叶和凉风。", "target": "重复。"},
            {"input": "把下面的句子翻译成英文：我喜欢读书和旅行。", "target": "I like reading and travelling."}]
    data = write_jsonl(tmp_path / "belle.json", rows)
    summary = run_filter([data], tmp_path / "out", lang="zh", progress=False)
    assert_counts_add_up(summary)
    assert summary["rejected"].get("exact_duplicate") == 1
    kept = read_json(tmp_path / "out" / "data.json")
    assert kept[0] == {"instruction": rows[0]["input"], "input": "", "output": rows[0]["target"]}


def test_skip_mode_writes_malformed_records_to_rejects(tmp_path, invoke, read_json, read_jsonl):
    data = tmp_path / "data.jsonl"
    data.write_bytes(json.dumps(RECORDS[0]).encode() + b"\n"
                     + b'{"instruction": "Broken \xff line", "output": "x"}\n'
                     + json.dumps({"instruction": "Name a colour.", "output": 3}).encode() + b"\n"
                     + b'{"instruction": \n'
                     + json.dumps(RECORDS[2]).encode() + b"\n")
    out = tmp_path / "out"
    result = invoke(data, "--on-bad-record", "skip", "--out", out)
    assert result.exit_code == 0, result.output
    summary = read_json(out / "summary.json")
    assert_counts_add_up(summary)
    assert (summary["input_records"], summary["kept"], summary["malformed"]) == (5, 2, 3)
    malformed = [(r["reason"], r["source"], r["detail"]) for r in read_jsonl(out / "rejects.jsonl")]
    assert malformed == [("malformed", f"{data}:2", "invalid UTF-8"),
                         ("malformed", f"{data}:3", "field 'output' is int, expected a string"),
                         ("malformed", f"{data}:4", "invalid JSON: Expecting value")]
    assert "malformed 3" in result.stdout


def bad_inputs(tmp_path: Path) -> list[tuple[str, str]]:
    """(path, the message it must fail with) for every kind of bad input."""
    cases = {
        "syntax.json": ('[\n  {"instruction": "A", "output": "1"},\n  {"instruction": "B" "output": "2"}\n]',
                        "3:23: invalid JSON: Expecting ',' delimiter"),
        "utf8.jsonl": (b'{"instruction": "A", "output": "1"}\n{"instruction": "\xff"}\n', "2: invalid UTF-8"),
        "number.jsonl": ('{"instruction": "A", "output": "1"}\n{"instruction": "B", "output": 7}\n',
                         "2: field 'output' is int, expected a string"),
        "noinstr.jsonl": ('{"instruction": "A", "output": "1"}\n{"prompt": "B", "output": "2"}\n',
                          "2: record has no 'instruction' field"),
        "empty.json": ("", "no records"),
    }
    out = []
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        out.append((str(path), f"{path}:{message}" if message[0].isdigit() else f"{path}: {message}"))
    (tmp_path / "folder").mkdir()
    out.append((str(tmp_path / "folder"), f"{tmp_path / 'folder'}: not a readable file or dataset folder"))
    out.append((str(tmp_path / "missing.json"), f"{tmp_path / 'missing.json'}: no such file"))
    return out


def test_every_bad_input_exits_2_with_its_message_and_writes_nothing(tmp_path, invoke):
    for path, message in bad_inputs(tmp_path):
        out = tmp_path / "out"
        result = invoke(path, "--out", out)
        assert (result.exit_code, result.stderr) == (2, f"Error: {message}\n"), path
        assert not out.exists(), path


def test_a_bad_against_file_exits_2_too(tmp_path, files, invoke):
    bad = tmp_path / "seeds.jsonl"
    bad.write_text('{"id": "t", "instruction": "A", "instances": []}\n')
    result = invoke(files[0], "--against", bad, "--out", tmp_path / "out")
    assert (result.exit_code, result.stderr) == (2, f"Error: {bad}:1: field 'instances' is empty\n")


def test_a_failed_run_leaves_earlier_outputs_untouched(tmp_path, files, invoke):
    out = tmp_path / "out"
    assert invoke(files[0], "--out", out, "--report").exit_code == 0
    before = {p.name: digest(p) for p in out.iterdir()}
    assert {"data.json", "records.jsonl", "rejects.jsonl", "summary.json", "report.html"} <= set(before)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(RECORDS[1]) + "\n" + '{"output": "no instruction"}\n')
    result = invoke(files[0], broken, "--out", out)
    assert (result.exit_code, result.stderr) == (2, f"Error: {broken}:2: record has no 'instruction' field\n")
    assert {name: digest(out / name) for name in before} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(before)   # no temporary files left


@pytest.mark.parametrize("args, message", [
    (["--lang", "fr"], "--lang must be one of auto, en, zh, not 'fr'"),
    (["--only", "nosuch"], "unknown filter 'nosuch' (known: "),
    (["--skip", "rouge,nosuch"], "unknown filter 'nosuch' (known: "),
    (["--fields", "prompt=question"], "--fields: unknown field 'prompt' (known: instruction, input, output)"),
    (["--rouge-threshold", "1.5"], "--rouge-threshold must be in (0, 1], not 1.5"),
    (["--minhash-threshold", "0"], "--minhash-threshold must be in (0, 1], not 0.0"),
    (["--on-bad-record", "ignore"], "--on-bad-record must be one of error, skip, not 'ignore'"),
])
def test_bad_options_exit_2_with_their_message(tmp_path, files, args, message, invoke):
    result = invoke(files[0], "--out", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {message}")
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_a_usage_error(tmp_path, files, invoke):
    result = invoke(files[0], "--out", files[1])
    assert (result.exit_code, result.stderr) == (2, f"Error: --out {files[1]} is a file; give a folder\n")


def test_run_filter_raises_usage_errors_for_bad_settings(tmp_path, files):
    with pytest.raises(UsageError) as info:
        run_filter([], tmp_path / "out", progress=False)
    assert str(info.value) == "give at least one INPUT file"


def test_out_below_a_file_is_a_usage_error(tmp_path, files, invoke):
    result = invoke(files[0], "--out", f"{files[1]}/out")
    assert (result.exit_code, result.stderr) == (2, f"Error: --out {files[1]}/out: cannot create the folder "
                                                    "(Not a directory)\n")


@pytest.mark.report
def test_filter_writes_the_report_at_the_end_and_prints_its_path(tmp_path, files, invoke):
    out = tmp_path / "out"
    result = invoke(files[0], "--out", out, "--report")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"report: {out / 'report.html'}"
    page = (out / "report.html").read_text(encoding="utf-8")
    summary = json.loads((out / "summary.json").read_text())
    assert f"{summary['kept']:,}" in page and "<script" not in page
    assert (out / "report_funnel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
