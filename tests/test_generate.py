"""The generate loop with an in-process scripted teacher: exact counts, outputs, rejects, resume."""
import json
import os

import pytest

from selfinstruct.errors import InputError, UsageError
from selfinstruct.generate import Settings, run_generate
from tests.sim_teacher import ScriptedTeacher, reply


def settings(tmp_path, **kw):
    kw.setdefault("num", 12)
    kw.setdefault("out", str(tmp_path / "out"))
    kw.setdefault("progress", False)
    return Settings(**kw)


def load_out(out):
    data = json.load(open(os.path.join(out, "data.json"), encoding="utf-8"))
    rejects = [json.loads(l) for l in open(os.path.join(out, "rejects.jsonl"), encoding="utf-8")]
    summary = json.load(open(os.path.join(out, "summary.json"), encoding="utf-8"))
    return data, rejects, summary


@pytest.mark.parametrize("recipe", ["alpaca", "self-instruct"])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_generate_ends_with_exactly_num_distinct_examples(tmp_path, recipe, lang):
    s = settings(tmp_path, recipe=recipe, lang=lang)
    summary = run_generate(s, ScriptedTeacher(lang=lang))
    data, rejects, written = load_out(s.out)
    assert len(data) == 12 and summary["kept"] == 12
    assert len({(d["instruction"], d["input"]) for d in data}) == 12
    assert all(set(d) == {"instruction", "input", "output"} for d in data)
    assert written["requested"] == 12 and written["stopped"] == "done"
    assert written["rejected_total"] == len(rejects) == sum(written["rejected"].values())


def test_self_instruct_asks_classification_then_instances(tmp_path):
    teacher = ScriptedTeacher()
    run_generate(settings(tmp_path, recipe="self-instruct", num=3), teacher)
    stages = [r.stage for r in teacher.calls]
    assert stages[0] == "instructions" and "classification" in stages and "instances" in stages
    first_cls = stages.index("classification")
    assert stages.index("instances", first_cls) > first_cls


def test_records_carry_metadata(tmp_path):
    s = settings(tmp_path, num=3)
    run_generate(s, ScriptedTeacher())
    recs = [json.loads(l) for l in open(os.path.join(s.out, "records.jsonl"))]
    assert [r["id"] for r in recs] == ["en-000001", "en-000002", "en-000003"]
    assert all(r["teacher"] == "scripted:sim" and r["lang"] == "en" and r["origin"] == "machine" for r in recs)
    assert all(r["request_id"].startswith("u") for r in recs)


def test_similar_candidates_are_rejected_by_rouge_with_the_pool_item_named(tmp_path):
    calls = []

    def first_a_paraphrase_then_fresh(prompt, lang):
        calls.append(prompt)
        if len(calls) == 1:   # two near-identical tasks in one reply: the second must be rejected
            return (" Explain the river mountain coffee budget idea to a child.\nInput: <noinput>\nOutput: Fine."
                    "\n\nTask 5\nInstruction: Explain the river mountain coffee budget idea to a teenager.\n"
                    "Input: <noinput>\nOutput: Also fine.\n\n")
        return reply(prompt, lang)
    s = settings(tmp_path, num=3)
    run_generate(s, ScriptedTeacher(concurrency=1, reply_fn=first_a_paraphrase_then_fresh))
    data, rejects, summary = load_out(s.out)
    similar = [r for r in rejects if r["reason"] == "rouge_too_similar"]
    assert len(similar) == 1 and summary["rejected"]["rouge_too_similar"] == 1
    assert similar[0]["record"]["instruction"].endswith("to a teenager.")
    assert similar[0]["detail"].endswith("with: Explain the river mountain coffee budget idea to a child.")
    assert data[0]["instruction"].endswith("to a child.")


def test_failed_requests_are_recorded_not_dropped(tmp_path):
    s = settings(tmp_path, num=5)
    summary = run_generate(s, ScriptedTeacher(fail_every=3))
    _, rejects, _ = load_out(s.out)
    failed = [r for r in rejects if r["reason"] == "teacher_failed"]
    assert failed and failed[0]["detail"] == "http 503 after 6 attempts"
    assert summary["kept"] == 5


def test_rerun_with_same_out_continues_without_asking_again(tmp_path):
    s = settings(tmp_path, num=4)
    run_generate(s, ScriptedTeacher())
    first = load_out(s.out)[0]
    t2 = ScriptedTeacher()
    run_generate(settings(tmp_path, num=4), t2)
    assert t2.calls == [] and load_out(s.out)[0] == first
    t3 = ScriptedTeacher()
    run_generate(settings(tmp_path, num=9), t3)
    data = load_out(s.out)[0]
    assert len(data) == 9 and data[:4] == first and t3.calls


def test_a_unit_interrupted_mid_way_is_finished_from_the_journal_without_paying_again(tmp_path):
    s = settings(tmp_path, num=30, recipe="self-instruct")
    t1 = ScriptedTeacher(concurrency=2)
    run_generate(s, t1)
    journal = os.path.join(s.out, "journal.jsonl")
    lines = open(journal, encoding="utf-8").read().splitlines()
    # cut the journal right after the 5th accept (as a kill would), tearing the next line in half
    accepts = [i for i, l in enumerate(lines) if '"ev": "accept"' in l]
    cut = accepts[4]
    with open(journal, "w", encoding="utf-8") as f:
        f.write("\n".join(lines[: cut + 1]) + "\n" + lines[cut + 1][:17])
    paid_before_cut = sum('"ev": "resp"' in l for l in lines[: cut + 1])
    t2 = ScriptedTeacher(concurrency=2)
    run_generate(settings(tmp_path, num=30, recipe="self-instruct"), t2)
    data = load_out(s.out)[0]
    assert len(data) == 30 and len({d["instruction"] for d in data}) == 30
    replayed = json.load(open(os.path.join(s.out, "summary.json")))["requests"].get("replayed", 0)
    assert replayed >= 1
    assert len(t2.calls) + paid_before_cut >= paid_before_cut   # nothing asked twice is checked below
    asked_again = {r.key() for r in t2.calls} & {json.loads(l)["key"] for l in lines[: cut + 1]
                                                  if '"ev": "resp"' in l}
    assert asked_again == set()


def test_bad_settings_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match=r"^--num must be at least 1 \(got 0\)$"):
        run_generate(settings(tmp_path, num=0), ScriptedTeacher())
    with pytest.raises(UsageError, match=r"^unknown language 'fr' \(choose from en, zh\)$"):
        run_generate(settings(tmp_path, lang="fr"), ScriptedTeacher())
    with pytest.raises(UsageError, match=r"^unknown recipe 'evol' \(choose from alpaca, documents, evol-instruct, magpie, self-instruct\)$"):
        run_generate(settings(tmp_path, recipe="evol"), ScriptedTeacher())


def test_a_run_folder_is_not_continued_with_another_recipe(tmp_path):
    run_generate(settings(tmp_path, num=2), ScriptedTeacher())
    with pytest.raises(UsageError, match="holds a run made with --recipe alpaca --lang en --teacher embedded"):
        run_generate(settings(tmp_path, num=2, recipe="self-instruct"), ScriptedTeacher())


def test_empty_seed_file_is_an_input_error(tmp_path):
    empty = tmp_path / "seeds.jsonl"
    empty.write_text("\n")
    with pytest.raises(InputError):
        run_generate(settings(tmp_path, seed_files=[str(empty)]), ScriptedTeacher())
    assert not (tmp_path / "out").exists()


def test_a_teacher_that_keeps_failing_stops_the_run_with_a_clear_error(tmp_path):
    from selfinstruct.errors import TeacherError
    s = settings(tmp_path, num=5)
    with pytest.raises(TeacherError, match=r"^the teacher failed 24 requests in a row \(last: http 503 after "
                                           r"6 attempts\); check --base-url"):
        run_generate(s, ScriptedTeacher(fail_every=1))
    _, rejects, summary = load_out(s.out)      # what there is was still written
    assert summary["stopped"] == "error: TeacherError" and rejects[0]["reason"] == "teacher_failed"


def test_the_serialisation_round_trips_records_requests_and_responses():
    from selfinstruct.record import Record
    from selfinstruct.teachers.base import Request, Response
    recs = [Record("指令", "in", "out", id="x", rouge=0.5, meta={"is_classification": True}), Record("plain")]
    for r in recs:
        assert Record.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert "meta" not in Record("plain").to_dict()
    for resp in [Response("t", prompt_tokens=3), Response("t", extra={"usage_estimated": True})]:
        assert Response.from_dict(json.loads(json.dumps(resp.to_dict()))) == resp
    req = Request("p", stop=("a", "b"), seed=3)
    assert Request.from_dict(json.loads(json.dumps(req.to_dict()))) == req


class _OneAtATimeTeacher(ScriptedTeacher):
    """Answers its outstanding requests one by one, oldest first, a few loop turns apart, and counts
    how many it holds (asked and not yet returned to the loop)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.outstanding = 0
        self._waiting: list = []
        self._releaser = None

    async def complete(self, request):
        import asyncio
        self.outstanding += 1
        if self._releaser is None:
            self._releaser = asyncio.ensure_future(self._release())
        fut = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        try:
            await fut
        finally:
            self.outstanding -= 1
        return await super().complete(request)

    async def _release(self):
        import asyncio
        while True:
            for _ in range(3):
                await asyncio.sleep(0)
            while self._waiting and self._waiting[0].done():
                self._waiting.pop(0)
            if self._waiting:
                self._waiting.pop(0).set_result(None)


def test_a_new_request_goes_out_before_an_answer_is_filtered(tmp_path, monkeypatch):
    """The pipe stays full: when an answer comes back, the unit that takes its slot has already
    asked by the time the answer's candidates reach the filters."""
    from selfinstruct.generate.context import Context
    teacher = _OneAtATimeTeacher(concurrency=5)
    seen = []
    offer = Context.offer

    async def counting_offer(self, record, key):
        seen.append((self.outputs.accepted, teacher.outstanding))
        return await offer(self, record, key)

    monkeypatch.setattr(Context, "offer", counting_offer)
    num = 60
    run_generate(settings(tmp_path, num=num), teacher)
    early = [held for accepted, held in seen if accepted < num - 3 * 5]
    assert len(early) > 20
    assert set(early) == {5}


def test_each_accepted_record_carries_its_most_similar_seed_exactly(tmp_path):
    """nearest_seed / nearest_seed_rouge (the report's Figure 3) against every seed instruction, by
    the reference formula on the project's tokens."""
    from rouge_score.rouge_scorer import _score_lcs

    from selfinstruct.generate import Settings, run_generate
    from selfinstruct.seedtasks import load_seeds
    from selfinstruct.text import tokens
    from tests.sim_teacher import ScriptedTeacher

    run_generate(Settings(num=6, out=str(tmp_path / "o"), progress=False), ScriptedTeacher())
    records = [json.loads(line) for line in open(tmp_path / "o" / "records.jsonl", encoding="utf-8")]
    seeds = list(dict.fromkeys(r.instruction for r in load_seeds([], "en")))
    for r in records:
        scores = [_score_lcs(tokens(s), tokens(r["instruction"])).fmeasure for s in seeds]
        best = max(scores)
        assert r["nearest_seed_rouge"] == pytest.approx(best, abs=1e-12)
        assert r["nearest_seed"] == seeds[scores.index(best)]


def test_each_record_carries_the_teacher_time_of_the_requests_it_came_from(tmp_path):
    """meta["seconds"]: per request stage, the seconds its unit's paid requests took."""
    import asyncio

    from tests.sim_teacher import ScriptedTeacher

    class SlowTeacher(ScriptedTeacher):
        async def complete(self, request):
            await asyncio.sleep(0.05 if request.stage == "instructions" else 0.02)
            return await super().complete(request)

    run_generate(settings(tmp_path, num=4, recipe="self-instruct"), SlowTeacher())
    records = [json.loads(line) for line in open(tmp_path / "out" / "records.jsonl", encoding="utf-8")]
    for r in records:
        seconds = r["meta"]["seconds"]
        assert seconds["instructions"] >= 0.05 and seconds["instances"] >= 0.02
        assert set(seconds) <= {"instructions", "classification", "instances"}


def test_a_run_that_accepts_nothing_stops_as_stalled_instead_of_paying_forever(tmp_path, monkeypatch):
    # The scripted teacher answers a follow-up with the text it was asked, so every second turn
    # echoes its instruction and every conversation is rejected: nothing is ever accepted.
    from selfinstruct.generate import settings as settings_module
    from selfinstruct.publish import Publish

    monkeypatch.setattr(settings_module, "STALL_UNITS", 40)
    s = Settings(num=6, out=str(tmp_path / "o"), recipe="self-instruct", turns=3, progress=False,
                 publish=Publish(format="messages"))
    import signal

    def never_stopped(*_):         # without the rule the run goes on forever: fail instead of hanging
        raise AssertionError("the run did not stop")
    previous = signal.signal(signal.SIGALRM, never_stopped)
    signal.alarm(120)
    try:
        summary = run_generate(s, ScriptedTeacher("en"))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert summary["kept"] == 0
    assert summary["stopped"].startswith("stalled: the last 40 units accepted nothing (rejected most: ")
    assert sum(summary["rejected"].values()) > 0
