"""The generate loop's hooks for scale-out: seed-derived record ids (shards never collide), teacher
events kept in the journal across runs, the stop rule deferring to a teacher with a healthy
endpoint, and a sample run that stops starting units after N requests (``--estimate``)."""
import json
import os

import pytest

from selfinstruct.errors import TeacherError
from selfinstruct.generate import run_generate
from selfinstruct.generate.outputs import record_id
from selfinstruct.teachers.base import Response
from tests.sim_teacher import ScriptedTeacher
from tests.test_generate import settings


def journal(out):
    return [json.loads(line) for line in open(os.path.join(out, "journal.jsonl"), encoding="utf-8")]


def test_record_ids_carry_the_seed_of_the_run_so_shards_never_collide(tmp_path):
    assert record_id("en", 0, 1) == "en-000001"
    assert record_id("zh", 3, 12) == "zh-s3-000012"
    ids = {}
    for seed in (1, 2):
        s = settings(tmp_path, num=3, random_seed=seed, out=str(tmp_path / f"run{seed}"))
        run_generate(s, ScriptedTeacher())
        ids[seed] = [json.loads(l)["id"] for l in open(os.path.join(s.out, "records.jsonl"))]
    assert ids[1] == ["en-s1-000001", "en-s1-000002", "en-s1-000003"]
    assert ids[2] == ["en-s2-000001", "en-s2-000002", "en-s2-000003"]


class _Remembering(ScriptedTeacher):
    """Journals one event per run and keeps what earlier runs journaled."""

    def attach(self, write, events):
        self.seen = [dict(e) for e in events]
        write({"ev": "teacher", "kind": "note", "run": len(events) + 1})


def test_teacher_events_are_journaled_and_handed_back_to_the_next_run(tmp_path):
    first = _Remembering()
    run_generate(settings(tmp_path, num=2), first)
    assert first.seen == []
    second = _Remembering()
    run_generate(settings(tmp_path, num=4), second)         # resumes the same folder
    assert second.seen == [{"ev": "teacher", "kind": "note", "run": 1}]
    assert [e["run"] for e in journal(str(tmp_path / "out")) if e["ev"] == "teacher"] == [1, 2]


class _FailsFirst(ScriptedTeacher):
    """Fails its first ``failures`` requests, then answers; ``healthy`` is what all_down denies."""

    def __init__(self, failures, healthy):
        super().__init__(concurrency=2)
        self.failures, self.healthy = failures, healthy

    async def complete(self, request):
        if len(self.calls) < self.failures:
            self.calls.append(request)
            return Response(text="", error="http 503 after 6 attempts")
        return await super().complete(request)

    def all_down(self):
        return not self.healthy


def test_failures_in_a_row_stop_the_run_only_while_every_endpoint_is_down(tmp_path):
    with pytest.raises(TeacherError, match="failed 24 requests in a row"):
        run_generate(settings(tmp_path, num=6, out=str(tmp_path / "down")), _FailsFirst(40, healthy=False))
    summary = run_generate(settings(tmp_path, num=6, out=str(tmp_path / "up")), _FailsFirst(40, healthy=True))
    assert summary["kept"] == 6 and summary["stopped"] == "done"
    assert summary["rejected"].get("teacher_failed", 0) >= 40 - 24


def test_a_sample_run_starts_no_unit_after_its_requests_and_finishes_the_started_ones(tmp_path):
    teacher = ScriptedTeacher(concurrency=2)
    s = settings(tmp_path, num=500, recipe="self-instruct", sample_requests=5)
    summary = run_generate(s, teacher)
    assert summary["stopped"] == "sampled: 5 requests"
    events = journal(s.out)
    started = {e["uid"] for e in events if e["ev"] == "start"}
    ended = {e["uid"] for e in events if e["ev"] == "end"}
    assert started == ended                   # every started unit ran to its end
    assert len(teacher.calls) >= 5            # the started units' own follow-up requests too
    first_requests = sum(1 for r in teacher.calls if r.stage == "instructions")
    assert first_requests == len(started) <= 5
