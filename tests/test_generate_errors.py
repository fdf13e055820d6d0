"""generate's own failures are one `Error: …` line and exit 2: an unwritable --out or cache, a failed
final render, the embedded teacher's batch failing, options that do not apply; and the summary
schema both commands share."""
import asyncio
import json

import pytest
from typer.testing import CliRunner

from selfinstruct.cli import app
from selfinstruct.errors import TeacherError, UsageError
from selfinstruct.generate import Settings, run_generate
from selfinstruct.teachers.base import Request
from selfinstruct.teachers.embedded import EmbeddedTeacher
from tests.sim_teacher import ScriptedTeacher

runner = CliRunner()
COMMON = ["kept", "rejected", "rejected_total", "rejected_per_stage", "elapsed_seconds", "seconds_per_stage"]


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_an_out_folder_under_a_regular_file_is_one_error_line(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    out = tmp_path / "notes.txt" / "out"
    r = runner.invoke(app, ["generate", "--num", "1", "--out", str(out), "--no-progress",
                            "--teacher", "openai", "--base-url", "http://127.0.0.1:9/v1"])
    assert one_error_line(r) == f"Error: --out {out}: cannot write there (Not a directory)"


def test_an_unusable_cache_folder_is_one_error_line_with_the_fix(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("x")
    monkeypatch.setenv("SELFINSTRUCT_CACHE_DIR", str(tmp_path / "notes.txt" / "cache"))
    r = runner.invoke(app, ["generate", "--num", "1", "--out", str(tmp_path / "o"), "--no-progress",
                            "--teacher", "openai", "--base-url", "http://127.0.0.1:9/v1"])
    line = one_error_line(r)
    assert line.startswith(f"Error: cannot open the response cache {tmp_path}/notes.txt/cache/responses.sqlite")
    assert line.endswith("set SELFINSTRUCT_CACHE_DIR to a writable folder, or pass --no-cache")
    assert not (tmp_path / "o").exists()


def test_a_flag_of_another_teacher_is_refused_not_ignored(tmp_path):
    r = runner.invoke(app, ["generate", "--num", "1", "--out", str(tmp_path / "o"), "--model", "gpt-4o"])
    assert one_error_line(r) == "Error: --model does not apply to --teacher embedded"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("opt, message", [
    ("length.max_words=abc", "--opt length.max_words=abc: expected a whole number"),
    ("nosuch=1", "--opt nosuch=1: unknown option 'nosuch' (options here: "),
    ("bogus.max_words=3", "--opt bogus.max_words=3: no component 'bogus' here (components: "),
    ("max_words", "--opt 'max_words': expected NAME=VALUE (e.g. --opt length.max_words=200)"),
    ("lang=zh", "--opt lang=zh: 'lang' is an option of several components; prefix it: lang.lang, "
                "minhash.lang"),
])
def test_bad_opt_settings_are_one_error_line(tmp_path, opt, message):
    data = tmp_path / "d.json"
    data.write_text('[{"instruction": "Name three rivers in Asia.", "input": "", "output": "Ganges."}]')
    r = runner.invoke(app, ["filter", str(data), "--out", str(tmp_path / "o"), "--no-progress",
                            "--only", "quality,minhash", "--opt", opt])
    assert one_error_line(r).startswith("Error: " + message)


def test_an_opt_reaches_the_filter_that_declares_it(tmp_path):
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"instruction": "Write a haiku about autumn leaves falling slowly.",
                                 "input": "", "output": "Red leaves drift."}]))
    r = runner.invoke(app, ["filter", str(data), "--out", str(tmp_path / "o"), "--no-progress",
                            "--opt", "quality.max_words=5"])
    assert r.exit_code == 0, r.output
    summary = json.load(open(tmp_path / "o" / "summary.json"))
    assert summary["rejected"] == {"too_long": 1}


def test_a_failed_final_render_is_one_error_line_and_the_journal_keeps_the_run(tmp_path, monkeypatch):
    import selfinstruct.publish as publish

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(publish, "write_data", full_disk)
    s = Settings(num=3, out=str(tmp_path / "o"), progress=False)
    with pytest.raises(UsageError, match=r"cannot write the outputs in .*/o \(No space left on device\); "
                                         r"the journal holds everything"):
        run_generate(s, ScriptedTeacher())
    monkeypatch.undo()
    summary = run_generate(s, ScriptedTeacher())       # the rerun renders what the journal holds
    assert summary["kept"] == 3 and summary["requests"].get("paid", 0) == 0


def test_an_exception_in_the_embedded_batch_is_a_teacher_error_for_every_request_of_the_batch():
    teacher = EmbeddedTeacher(concurrency=4)

    def broken(requests):
        raise RuntimeError("CUDA out of memory")
    teacher.generate_batch = broken
    teacher.model = object()                 # skip loading: the worker is what is tested

    async def go():
        await teacher.start()
        try:
            return await asyncio.gather(*(teacher.complete(Request(f"p{i}")) for i in range(3)),
                                        return_exceptions=True)
        finally:
            await teacher.aclose()
    results = asyncio.run(go())
    assert all(isinstance(e, TeacherError) for e in results)
    assert str(results[0]) == ("the embedded model failed on a batch of 3 prompts: "
                               "RuntimeError: CUDA out of memory")


def test_generate_and_filter_write_the_same_summary_schema(tmp_path):
    s = Settings(num=3, out=str(tmp_path / "g"), progress=False)
    generated = run_generate(s, ScriptedTeacher())
    r = runner.invoke(app, ["filter", str(tmp_path / "g" / "data.json"), "--out", str(tmp_path / "f"),
                            "--no-progress", "--no-report"])
    assert r.exit_code == 0, r.output
    filtered = json.load(open(tmp_path / "f" / "summary.json"))
    for summary in (generated, filtered):
        assert list(summary)[:6] == COMMON
        assert summary["rejected_total"] == sum(summary["rejected"].values())
        assert summary["elapsed_seconds"] > 0
    assert generated["kept"] == 3 and filtered["kept"] + filtered["rejected_total"] == filtered["input_records"]
    assert {"requested", "stopped", "tokens", "requests", "cost_usd", "teacher", "settings"} <= set(generated)
    assert {"input_records", "malformed"} <= set(filtered)


@pytest.mark.parametrize("how", [["--rules", "alpaca"], ["--opt", "quality.rules=alpaca"]])
def test_a_rule_set_reaches_every_quality_filter(tmp_path, how):
    """Alpaca's released rules count words by spaces (a Chinese instruction is one word: too short)
    and drop an instruction naming a blacklisted word; the default set keeps both."""
    data = tmp_path / "d.json"
    data.write_text(json.dumps([
        {"instruction": "请写一首关于秋天落叶的短诗。", "input": "", "output": "秋风起，落叶飞。"},
        {"instruction": "Suggest a title for a video about baking bread at home.", "input": "",
         "output": "Crusty Loaves in Your Own Kitchen"}], ensure_ascii=False))
    default = runner.invoke(app, ["filter", str(data), "--out", str(tmp_path / "d"), "--no-progress",
                                  "--no-report", "--only", "quality"])
    assert default.exit_code == 0, default.output
    assert json.load(open(tmp_path / "d" / "summary.json"))["rejected"] == {}
    r = runner.invoke(app, ["filter", str(data), "--out", str(tmp_path / "o"), "--no-progress", "--no-report",
                            "--only", "quality", *how])
    assert r.exit_code == 0, r.output
    assert json.load(open(tmp_path / "o" / "summary.json"))["rejected"] == {"too_short": 1, "blacklist_word": 1}


def test_an_unknown_rule_set_is_one_error_line(tmp_path):
    data = tmp_path / "d.json"
    data.write_text('[{"instruction": "Name three rivers in Asia.", "input": "", "output": "Ganges."}]')
    r = runner.invoke(app, ["filter", str(data), "--out", str(tmp_path / "o"), "--rules", "strict"])
    assert one_error_line(r) == ("Error: --rules must be one of default, paper, self-instruct, alpaca, belle, "
                                 "not 'strict'")
