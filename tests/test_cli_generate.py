"""`selfinstruct generate` bad input: one `Error: …` line, exit 2, no traceback, nothing overwritten."""
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from selfinstruct.cli import app

runner = CliRunner()


def gen(*args):
    return runner.invoke(app, ["generate", "--no-progress", *args])


def error_line(result):
    assert result.exit_code == 2, result.output
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_num_zero(tmp_path):
    r = gen("--num", "0", "--out", str(tmp_path / "o"))
    assert error_line(r) == "Error: --num must be at least 1 (got 0)"


def test_unknown_recipe_teacher_language(tmp_path):
    out = str(tmp_path / "o")
    assert error_line(gen("--num", "1", "--out", out, "--recipe", "evol")) == \
        "Error: unknown recipe 'evol' (choose from alpaca, self-instruct)"
    assert error_line(gen("--num", "1", "--out", out, "--teacher", "claude")) == \
        "Error: unknown teacher 'claude' (choose from embedded, openai)"
    assert error_line(gen("--num", "1", "--out", out, "--lang", "fr")) == \
        "Error: unknown language 'fr' (choose from en, zh)"
    assert not os.path.exists(out)


def test_out_that_is_a_file_is_refused_and_left_alone(tmp_path):
    f = tmp_path / "data.json"
    f.write_text("precious")
    assert error_line(gen("--num", "1", "--out", str(f))) == f"Error: --out {f} is a file; give a folder"
    assert f.read_text() == "precious"


def test_missing_seed_file(tmp_path):
    missing = tmp_path / "nope.jsonl"
    assert error_line(gen("--num", "1", "--out", str(tmp_path / "o"), "--seeds", str(missing))) == \
        f"Error: {missing}: no such file"
    assert not (tmp_path / "o").exists()


def test_malformed_seed_line_names_file_and_line(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"instruction": "Name a color.", "instances": [{"input": "", "output": "Red"}]}\n'
                     '{"instruction": "Name a fruit.", "instances": [\n')
    line = error_line(gen("--num", "1", "--out", str(tmp_path / "o"), "--seeds", str(seeds)))
    assert line.startswith(f"Error: {seeds}:2:") and "invalid JSON" in line


def test_empty_seed_file(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("")
    assert error_line(gen("--num", "1", "--out", str(tmp_path / "o"), "--seeds", str(seeds))) == \
        f"Error: {seeds}: no records"


def test_unreadable_seed_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("{}")
    seeds.chmod(0)
    assert error_line(gen("--num", "1", "--out", str(tmp_path / "o"), "--seeds", str(seeds))).startswith(
        f"Error: {seeds}: not readable")


def test_out_with_foreign_data_json_is_not_overwritten(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "data.json").write_text("[]")
    assert error_line(gen("--num", "1", "--out", str(out))) == \
        f"Error: {out} has a data.json but no journal.jsonl: refusing to overwrite it; choose another --out"


def test_python_cli_py_is_the_same_app():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    a = subprocess.run([sys.executable, "cli.py", "generate", "--help"], cwd=root, capture_output=True,
                       text=True, env={**os.environ, "COLUMNS": "80"})
    b = runner.invoke(app, ["generate", "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert a.returncode == 0 and "Examples:" in a.stdout
    # the first line names the program; wrapping depends on the terminal: compare the words
    assert "".join(a.stdout.split("\n", 1)[1].split()) == "".join(b.output.split("\n", 1)[1].split())


def test_help_starts_without_heavy_imports():
    code = ("import sys; from selfinstruct.cli import app; "
            "print(sorted(m for m in ('torch','transformers','datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
    assert out == "[]"


def test_unknown_filter_name(tmp_path):
    assert error_line(gen("--num", "1", "--out", str(tmp_path / "o"), "--skip", "bogus")) == (
        "Error: unknown filter 'bogus' (known: exact, quality, minhash, rouge, bad_start, blacklist, echo, "
        "empty_output, lang, length, nooutput, refusal, truncated, url)")
