"""Sharded generation: several ``selfinstruct generate`` runs with different ``--seed`` (one per machine),
sharing one response cache, merged by ``selfinstruct filter run*/records.jsonl`` into one novel set.

The loopback OpenAI server answers like a capable teacher (tests/sim_teacher.py), and can be told to
slip a near-copy or an exact copy of an earlier shard's instruction into its next answers: each shard's
own filters cannot see the other shard, so only the merge can catch those.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fake_openai_server import FakeOpenAI, serve_in_thread
from tests.sim_teacher import reply

NUM = 8


class PlantingTeacher:
    """``reply``, except that while ``planted`` holds instructions, each answer that lists new tasks
    has its first task replaced by the next planted one."""

    def __init__(self, lang: str):
        self.lang, self.planted = lang, []

    def __call__(self, prompt: str) -> str:
        text = reply(prompt, self.lang)
        if not self.planted or not _lists_tasks(text):
            return text
        head, sep, rest = text.partition("\n")
        return " " + self.planted.pop(0) + sep + rest


def _lists_tasks(text: str) -> bool:
    return any(mark in text for mark in ("Task ", "任务"))


@pytest.fixture(params=["en", "zh"])
def shards(request, tmp_path, invoke_cli):
    """``shards.generate(seed)`` runs one shard into tmp/run<seed> against the planting server, with
    the test's one response cache; ``shards.teacher`` plants instructions."""
    lang = request.param
    teacher = PlantingTeacher(lang)
    with serve_in_thread(FakeOpenAI(text_fn=teacher)) as server:
        class Shards:
            def __init__(self):
                self.lang, self.teacher, self.server = lang, teacher, server

            def generate(self, seed: int) -> Path:
                out = tmp_path / f"run{seed}"
                result = invoke_cli("generate", "--teacher", "openai", "--base-url", server.url,
                                    "--model", "fake-model", "--lang", lang, "--num", NUM, "--seed", seed,
                                    "--out", out, "--no-progress", "--no-report", "--concurrency", 2,
                                    env={"OPENAI_API_KEY": "sk-test"})
                assert result.exit_code == 0, (result.stdout, result.stderr)
                return out
        yield Shards()


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def _near_copy(instruction: str, lang: str) -> str:
    """One word (one character in Chinese) changed: ROUGE-L far above 0.7, not an exact duplicate."""
    if lang == "zh":
        return instruction.replace("请介绍", "请说明", 1)
    first, rest = instruction.split(" ", 1)
    return ("Explain" if first != "Explain" else "Describe") + " " + rest


def test_shards_merge_into_one_novel_set_that_keeps_each_records_origin(shards, tmp_path, invoke_cli):
    lang = shards.lang
    run1 = shards.generate(1)
    first = _rows(run1 / "records.jsonl")
    assert len(first) == NUM
    machine = [r for r in first if r["origin"] == "machine"]
    near, same = machine[0]["instruction"], machine[1]["instruction"]
    shards.teacher.planted = [_near_copy(near, lang), same]

    run2 = shards.generate(2)
    second = _rows(run2 / "records.jsonl")
    assert len(second) == NUM
    second_texts = [r["instruction"] for r in second]
    assert _near_copy(near, lang) in second_texts and same in second_texts    # each shard alone kept them

    # One cache for both shards, yet the second replayed nothing of the first: another --seed draws
    # other prompts, so the shards are different work, not copies of each other.
    assert (Path(os.environ["SELFINSTRUCT_CACHE_DIR"]) / "responses.sqlite").is_file()
    assert json.loads((run2 / "summary.json").read_text("utf-8"))["requests"].get("cached", 0) == 0

    # Ids never collide: each is derived from its run's seed.
    assert all(r["id"].startswith(f"{lang}-s1-") for r in first)
    assert all(r["id"].startswith(f"{lang}-s2-") for r in second)
    assert len({r["id"] for r in first + second}) == 2 * NUM

    merged = tmp_path / "merged"
    result = invoke_cli("filter", run1 / "records.jsonl", run2 / "records.jsonl", "--out", merged,
                        "--no-progress")
    assert result.exit_code == 0, result.stderr
    kept = _rows(merged / "records.jsonl")
    rejects = _rows(merged / "rejects.jsonl")
    kept_texts = [r["instruction"] for r in kept]

    # The merge is novel across shards: the planted copies go, the first shard's originals stay.
    assert near in kept_texts and same in kept_texts
    assert _near_copy(near, lang) not in kept_texts
    why = {r["record"]["instruction"]: r["reason"] for r in rejects}
    # MinHash sees the whole record (the same answer, one word apart), so it is first to name it.
    assert why[_near_copy(near, lang)] in ("minhash_duplicate", "rouge_too_similar")
    assert why[same] == "exact_duplicate"
    assert len(kept) + len(rejects) == 2 * NUM
    assert len(kept) == len(set(kept_texts))

    # Each kept record keeps where it came from: its id (hence its shard), origin, teacher, and the
    # shard file and line it was read from.
    by_id = {r["id"]: (shard, line) for shard, rows in (("run1", first), ("run2", second))
             for line, r in enumerate(rows, 1)}
    assert len({r["id"] for r in kept}) == len(kept)
    for r in kept:
        shard, line = by_id[r["id"]]
        original = (first if shard == "run1" else second)[line - 1]
        assert r["instruction"] == original["instruction"]
        assert r["origin"] == original["origin"] == "machine"
        assert r["teacher"] == original["teacher"] == "openai:fake-model"
        assert r["source"] == f"{tmp_path / shard / 'records.jsonl'}:{line}"
    assert {r["id"].split("-")[1] for r in kept} == {"s1", "s2"}
    for row in rejects:                                      # a reject names its shard too
        assert row["source"].startswith(str(tmp_path / "run2" / "records.jsonl"))
        assert row["record"]["id"].startswith(f"{lang}-s2-")

    # Without MinHash, ROUGE-L novelty (the paper's rule) rejects the near-copy against the other shard.
    result = invoke_cli("filter", run1 / "records.jsonl", run2 / "records.jsonl", "--out",
                        tmp_path / "merged-rouge", "--skip", "minhash", "--no-progress")
    assert result.exit_code == 0, result.stderr
    why = {r["record"]["instruction"]: (r["reason"], r["detail"])
           for r in _rows(tmp_path / "merged-rouge" / "rejects.jsonl")}
    reason, detail = why[_near_copy(near, lang)]
    assert reason == "rouge_too_similar" and detail.endswith(f"with: {near}")
