"""`selfinstruct generate` bad input: one `Error: …` line, exit 2, no traceback, nothing overwritten."""
import os
import subprocess
import sys

import pytest


@pytest.fixture
def gen(invoke_cli):
    """``gen(*args)``: ``selfinstruct generate --no-progress *args`` in-process."""
    return lambda *args: invoke_cli("generate", "--no-progress", "--no-report", *args)


def test_num_zero_is_refused(tmp_path, gen, error_line):
    r = gen("--num", "0", "--out", str(tmp_path / "o"))
    assert error_line(r) == "Error: --num must be at least 1 (got 0)"


def test_an_unknown_recipe_teacher_or_language_is_refused_and_creates_nothing(tmp_path, gen, error_line):
    out = str(tmp_path / "o")
    assert error_line(gen("--num", "1", "--out", out, "--recipe", "evol")) == \
        "Error: unknown recipe 'evol' (choose from alpaca, documents, evol-instruct, magpie, self-instruct)"
    assert error_line(gen("--num", "1", "--out", out, "--teacher", "claude")) == \
        "Error: unknown teacher 'claude' (choose from embedded, openai)"
    assert error_line(gen("--num", "1", "--out", out, "--lang", "fr")) == \
        "Error: unknown language 'fr' (choose from en, zh)"
    assert not os.path.exists(out)


def test_out_that_is_a_file_is_refused_and_left_alone(tmp_path, gen, error_line):
    f = tmp_path / "data.json"
    f.write_text("precious")
    assert error_line(gen("--num", "1", "--out", str(f))) == f"Error: --out {f} is a file; give a folder"
    assert f.read_text() == "precious"


def test_a_missing_seed_file_is_no_such_file(tmp_path, gen, error_line):
    missing = tmp_path / "nope.jsonl"
    assert error_line(gen("--num", "1", "--out", str(tmp_path / "o"), "--seeds", str(missing))) == \
        f"Error: {missing}: no such file"
    assert not (tmp_path / "o").exists()


def test_a_seed_path_below_a_regular_file_is_no_such_file(tmp_path, gen, error_line):
    (tmp_path / "notes.txt").write_text("not a folder")
    below = tmp_path / "notes.txt" / "seeds.jsonl"
    assert error_line(gen("--num", "1", "--out", str(tmp_path / "o"), "--seeds", str(below))) == \
        f"Error: {below}: no such file"
    assert not (tmp_path / "o").exists()


def test_malformed_seed_line_names_file_and_line(tmp_path, gen, error_line):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"instruction": "Name a color.", "instances": [{"input": "", "output": "Red"}]}\n'
                     '{"instruction": "Name a fruit.", "instances": [\n')
    line = error_line(gen("--num", "1", "--out", str(tmp_path / "o"), "--seeds", str(seeds)))
    assert line.startswith(f"Error: {seeds}:2:") and "invalid JSON" in line


def test_an_empty_seed_file_has_no_records(tmp_path, gen, error_line):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("")
    assert error_line(gen("--num", "1", "--out", str(tmp_path / "o"), "--seeds", str(seeds))) == \
        f"Error: {seeds}: no records"


def test_a_seed_file_that_exists_but_cannot_be_read_is_not_readable_with_the_reason(tmp_path, gen, error_line):
    # /proc/self/mem is a regular file that nobody, root included, can read from offset 0 (the
    # first page of the address space is never mapped): the read fails with EIO.
    unreadable = "/proc/self/mem"
    assert os.path.isfile(unreadable)
    assert error_line(gen("--num", "1", "--out", str(tmp_path / "o"), "--seeds", unreadable)) == \
        f"Error: {unreadable}: not readable (Input/output error)"
    assert not (tmp_path / "o").exists()


def test_out_with_foreign_data_json_is_not_overwritten(tmp_path, gen, error_line):
    out = tmp_path / "o"
    out.mkdir()
    (out / "data.json").write_text("[]")
    assert error_line(gen("--num", "1", "--out", str(out))) == \
        f"Error: {out} has a data.json but no journal.jsonl: refusing to overwrite it; choose another --out"


def test_python_cli_py_is_the_same_app(invoke_cli):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    a = subprocess.run([sys.executable, "cli.py", "generate", "--help"], cwd=root, capture_output=True,
                       text=True, env={**os.environ, "COLUMNS": "80"})
    b = invoke_cli("generate", "--help", terminal_width=80, env={"COLUMNS": "80"})
    assert a.returncode == 0 and "Examples:" in a.stdout
    # the first line names the program; wrapping depends on the terminal: compare the words
    assert "".join(a.stdout.split("\n", 1)[1].split()) == "".join(b.output.split("\n", 1)[1].split())


def test_help_starts_without_heavy_imports():
    code = ("import sys; from selfinstruct.cli import app; "
            "print(sorted(m for m in ('torch','transformers','datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
    assert out == "[]"


def test_an_unknown_filter_name_is_refused_listing_the_known_ones(tmp_path, gen, error_line):
    assert error_line(gen("--num", "1", "--out", str(tmp_path / "o"), "--skip", "bogus")) == (
        "Error: unknown filter 'bogus' (known: exact, quality, decontam, minhash, rouge, judge, bad_start, blacklist, "
        "broken_text, chatter, echo, empty_output, ends_with_colon, lang, length, missing_material, nooutput, "
        "prompt_label, refusal, truncated, url)")
