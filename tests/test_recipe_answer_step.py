"""The answer step of the alpaca and self-instruct recipes: a block with an instruction but no output
is completed by a second request through the teacher's chat template (stage ``answer``), instead of
being thrown away. Through the CLI against the loopback OpenAI-compatible server, with a scripted
teacher whose replies mix whole triples, instruction-only blocks, blocks cut by the token limit and
garbage, in English and Chinese; a run killed with SIGKILL and resumed sends no journaled request
again. The parsing of blocks is tested on its own too."""
from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
import sys

import pytest

from selfinstruct.recipes.alpaca import AlpacaRecipe, answer_request, parse_block
from selfinstruct.teachers.base import Request
from tests.fake_openai_server import FakeOpenAI, length, ok, serve_in_thread
from tests.kill_resume import assert_nothing_journaled_was_sent_again, journal_events, kill_and_resume
from tests.sim_teacher import VERBS, WORDS, ZH

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HEADERS = ("Below are examples of diverse tasks", "下面是一些不同类型任务的例子")


def user_turn(body: dict) -> str:
    return body["messages"][-1]["content"] if "messages" in body else body["prompt"]


def system_turn(body: dict) -> str:
    msgs = body.get("messages") or []
    return msgs[0]["content"] if msgs and msgs[0]["role"] == "system" else ""


def fresh(prompt: str, i: int, zh: bool) -> str:
    """An instruction that is a function of the prompt (so that reruns see the same replies) and
    differs from every other one the script writes."""
    rng = random.Random(hashlib.sha256(f"{i}\x1f{prompt}".encode()).digest())
    if zh:
        return "请介绍" + "".join(rng.sample(ZH, 8)) + "的特点。"
    return f"{rng.choice(VERBS)} the {' '.join(rng.sample(WORDS, 7))} idea briefly."


def answer_for(instruction: str) -> str:
    """The scripted teacher's answer to an answer request (a function of the instruction)."""
    rng = random.Random(hashlib.sha256(instruction.encode()).digest())
    if re.search(r"[\u4e00-\u9fff]", instruction):
        return "它们各有特点，" + "".join(rng.sample(ZH, 6)) + "都很常见，也很有用处。"
    return f"In short, {' '.join(rng.sample(WORDS, 6))} all matter here, each in its own way."


def alpaca_reply(prompt: str) -> tuple[str, bool]:
    """(reply, cut by the token limit) to an alpaca prompt: block 0 instruction only (the model
    stopped), block 1 a whole triple, block 2 garbage without labels; one prompt in four has its
    reply cut inside block 1's output instead, so that block 1 is asked for too."""
    zh = HEADERS[1] in prompt
    nxt = int(re.findall(r"(?:Task |任务)(\d+)", prompt)[-1])
    a, b = fresh(prompt, 0, zh), fresh(prompt, 1, zh)
    cut = hashlib.sha256(prompt.encode()).digest()[0] % 4 == 0
    if zh:
        reply = f"{a}\n\n任务{nxt + 1}\n指令：{b}\n输入：<无输入>\n输出："
        reply += "这是一个很好的问题，答案" if cut else "它们各有用处，也都很好看。\n\n任务{}\n嗯嗯嗯".format(nxt + 2)
    else:
        reply = f" {a}\n\nTask {nxt + 1}\nInstruction: {b}\nInput: <noinput>\nOutput: "
        reply += "This is a good question and the" if cut else (
            f"Each one has its own use and charm.\n\nTask {nxt + 2}\nI am not sure what you mean here.")
    return reply, cut


def scripted(body: dict, n: int):
    prompt = user_turn(body)
    if any(h in prompt for h in HEADERS):
        reply, cut = alpaca_reply(prompt)
        return length(reply) if cut else ok(reply)
    return ok(answer_for(prompt.split("\n\n")[0]))


@pytest.fixture
def server():
    with serve_in_thread(FakeOpenAI(responder=scripted)) as s:
        yield s


@pytest.fixture
def gen(invoke_cli, server):
    def run(out, *args):
        return invoke_cli("generate", "--teacher", "openai", "--base-url", server.url, "--model", "fake-model",
                          "--no-progress", "--no-report", "--no-cache", "--concurrency", "1", "--out", out,
                          *args, env={"OPENAI_API_KEY": ""})
    return run


def answer_requests(server) -> list[dict]:
    return [r.json for r in server.requests if not any(h in user_turn(r.json) for h in HEADERS)]


def by_unit(records: list[dict]) -> dict[str, list[dict]]:
    units: dict[str, list[dict]] = {}
    for rec in records:
        units.setdefault(rec["request_id"].split(":")[0], []).append(rec)
    return units


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_an_instruction_only_block_gets_one_answer_request_and_is_accepted(tmp_path, gen, server, read_json,
                                                                           read_jsonl, lang):
    out = tmp_path / "o"
    r = gen(out, "--num", "6", "--lang", lang)
    assert r.exit_code == 0, r.output
    records = read_jsonl(out / "records.jsonl")
    assert len(read_json(out / "data.json")) == len(records) == 6
    answered = [rec for rec in records if rec["meta"].get("answered") == "separately"]
    whole = [rec for rec in records if "answered" not in rec["meta"]]
    # every unit: block 0 answered separately, block 1 from the reply, or answered when the script
    # cut the reply inside block 1's output
    prompts = {ev["uid"]: ev["req"]["prompt"] for ev in read_jsonl(out / "journal.jsonl") if ev["ev"] == "start"}
    for uid, recs in by_unit(records).items():
        assert [rec["request_id"] for rec in recs] == [f"{uid}:0", f"{uid}:1"][: len(recs)]
        assert recs[0]["meta"]["answered"] == "separately"
        if len(recs) == 2:
            assert (recs[1]["meta"].get("answered") == "separately") == alpaca_reply(prompts[uid])[1]
    assert len(answered) >= 3
    for rec in answered:
        assert rec["output"] == answer_for(rec["instruction"]) and rec["input"] == ""
    for rec in whole:
        assert rec["output"] in ("Each one has its own use and charm.", "它们各有用处，也都很好看。")
    # exactly one answer request per answered record, sent as a chat turn; none for a whole triple
    asked = [user_turn(b) for b in answer_requests(server)]
    for rec in answered:
        assert asked.count(rec["instruction"]) == 1
    assert not {rec["instruction"] for rec in whole} & set(asked)
    for body in answer_requests(server):
        assert body["temperature"] == answer_request(lang, user_turn(body)).temperature
        assert system_turn(body) == ("" if lang == "en" else "你是一个乐于助人的助手。请用简体中文回答。")
    # the run stops once it has --num: a request still in flight then is sent but not counted
    summary = read_json(out / "summary.json")
    assert len(answered) <= summary["requests_per_stage"]["answer"]["paid"] <= len(asked)
    assert summary["requests_per_stage"]["triples"]["paid"] <= len(server.requests) - len(asked)
    # the garbage block of each unit that decided is unparseable, nothing else is rejected before the filters
    rejects = read_jsonl(out / "rejects.jsonl")
    garbage = {rej["source"] for rej in rejects if rej["reason"] == "unparseable"}
    assert {f"{uid}:2" for uid, recs in by_unit(records).items() if len(recs) == 2
            and "answered" not in recs[1]["meta"]} <= garbage
    assert all(k.endswith(":2") for k in garbage)


def test_a_reply_cut_inside_a_triples_output_asks_for_that_output(tmp_path, gen, server, read_jsonl):
    # units whose reply the script cuts: their block 1 is answered separately, not rejected as truncated
    out = tmp_path / "o"
    r = gen(out, "--num", "16")
    assert r.exit_code == 0, r.output
    records = read_jsonl(out / "records.jsonl")
    cut_units = [recs for recs in by_unit(records).values()
                 if len(recs) == 2 and recs[1]["meta"].get("answered") == "separately"]
    assert cut_units, "the script cuts one prompt in four: some unit of 8 should have been cut"
    for recs in cut_units:
        assert recs[1]["output"] == answer_for(recs[1]["instruction"])
        assert "truncated" not in recs[1]["meta"]
    rejects = read_jsonl(out / "rejects.jsonl")
    assert not [rej for rej in rejects if rej["reason"] == "truncated"]


# -- parsing a block -----------------------------------------------------------------------------


@pytest.mark.parametrize("block, cut, expected", [
    # a whole triple
    ("Instruction: Name a colour.\nInput: <noinput>\nOutput: Blue.", False, ("Name a colour.", "", "Blue.")),
    ("指令：说出一种水果。\n输入：<无输入>\n输出：苹果。", False, ("说出一种水果。", "", "苹果。")),
    # the model wrote a task and stopped: ask for the output
    ("Instruction: In what country do you find alligators?", False,
     ("In what country do you find alligators?", "", None)),
    ("Instruction: Summarise the text.\nInput: The cat sat on the mat all day.", False,
     ("Summarise the text.", "The cat sat on the mat all day.", None)),
    ("指令：用一句话介绍长城。\n\n嗯", False, ("用一句话介绍长城。", "", None)),
    # an empty output label is asked for too
    ("Instruction: Name a colour.\nOutput:", False, ("Name a colour.", "", None)),
    # labels copied from the prompt's format are not part of the task
    ("Instruction: Question: What is the boiling point of water?", False,
     ("What is the boiling point of water?", "", None)),
    # the model answering under another label, or rambling after a blank line, is not the task
    ("Instruction: Which planet is largest?\nAnswer: Jupiter, by far", False,
     ("Which planet is largest?", "", None)),
    ("指令：推荐一本好书。\n答案：红楼梦", False, ("推荐一本好书。", "", None)),
    ("Instruction: Classify the review.\nOptions: positive, negative", False,
     ("Classify the review.\nOptions: positive, negative", "", None)),
    # cut by the token limit inside the output: the instruction and input are whole, ask again
    ("Instruction: Explain tides.\nInput: <noinput>\nOutput: Tides are caused by the mo", True,
     ("Explain tides.", "", None)),
    # cut on a later line of an instruction: its first line is the task
    ("Instruction: Write a story about a cat.\nThe story should be funny and sh", True,
     ("Write a story about a cat.", "", None)),
    # cut in a line the model rambled on: its finished sentences are the task
    ("Instruction: Write a poem about the sea. Then explain why it is blue and how it aff", True,
     ("Write a poem about the sea.", "", None)),
    ("指令：写一首关于大海的诗。然后解释为什么海", True, ("写一首关于大海的诗。", "", None)),
])
def test_parse_block_keeps_what_is_whole(block, cut, expected):
    b = parse_block(block, cut)
    assert not b.reason, (b.reason, b.detail)
    assert (b.instruction, b.input, b.output) == expected


@pytest.mark.parametrize("block, cut, reason", [
    ("I am not sure what you mean.", False, "unparseable"),
    ("这个我不太清楚。", False, "unparseable"),
    ("Instruction:   \n\n", False, "unparseable"),
    ("Instruction: Write a poem about the se", True, "truncated"),
    ("指令：写一首关于大海的", True, "truncated"),
    # cut inside the input: the task is not whole
    ("Instruction: Summarise the text.\nInput: The cat sat on the mat and then it", True, "truncated"),
])
def test_parse_block_rejects_what_cannot_be_completed(block, cut, reason):
    assert parse_block(block, cut).reason == reason


def test_the_answer_request_is_a_function_of_the_task_alone():
    a = answer_request("en", "Name a colour.")
    assert a == answer_request("en", "Name a colour.") and a.key() == answer_request("en", "Name a colour.").key()
    assert (a.kind, a.stage, a.prompt, a.system) == ("chat", "answer", "Name a colour.", "")
    b = answer_request("zh", "总结这段话。", "今天天气很好。")
    assert b.prompt == "总结这段话。\n\n今天天气很好。" and b.system and b.kind == "chat"
    assert answer_request("en", "Name a colour.", "x").key() != a.key()
    # a teacher that answers separately (a small model) is asked for one short paragraph
    short = answer_request("zh", "总结这段话。", short=True)
    assert short.stop == ("\n\n",) and "一段" in short.system and short.max_tokens < a.max_tokens
    assert short.key() != answer_request("zh", "总结这段话。").key()


def test_first_request_carries_topic_and_persona_only_when_configured():
    from selfinstruct.conditioning import Conditions
    from selfinstruct.seedtasks import load_seeds
    seeds = load_seeds(None, "en")
    plain = AlpacaRecipe(seeds, "en", per_request=2)
    a, b = plain.first_request(random.Random(5), []), plain.first_request(random.Random(5), [])
    assert a == b and not a.carry
    conditioned = AlpacaRecipe(seeds, "en", per_request=2)
    conditioned.conditions = Conditions(["beekeeping"], ["a retired sailor"], "en")
    c = conditioned.first_request(random.Random(5), [])
    assert c.carry == {"topic": "beekeeping", "persona": "a retired sailor"}
    assert "beekeeping" in c.prompt and "a retired sailor" in c.prompt
    assert c.prompt.index("beekeeping") < c.prompt.index("Task 1")


class _SeparateAnswers:
    """A teacher that wants each task's output asked for separately (as the embedded one does)."""
    answers_separately = True


@pytest.mark.parametrize("lang, output_label", [("en", "Output"), ("zh", "输出")])
def test_a_teacher_that_answers_separately_is_asked_for_tasks_alone(lang, output_label):
    from selfinstruct.seedtasks import load_seeds
    recipe = AlpacaRecipe(load_seeds(None, lang), lang, per_request=1)
    recipe.bind(_SeparateAnswers(), {})
    req = recipe.first_request(random.Random(3), [])
    assert output_label not in req.prompt            # the examples show tasks, not answers
    assert "\n" + output_label in req.stop and "\n\n" in req.stop
    triples = AlpacaRecipe(load_seeds(None, lang), lang, per_request=1)
    triples.bind(object(), {})
    full = triples.first_request(random.Random(3), [])
    assert output_label in full.prompt and len(req.prompt) < len(full.prompt)


# -- self-instruct: an instance reply with an input but no output ------------------------------


def self_instruct_scripted(body: dict, n: int):
    prompt = user_turn(body)
    zh = "任务" in prompt
    if prompt.rstrip().endswith(("Is it classification?", "是分类任务吗？")):
        return ok("否" if zh else " No")
    if prompt.rstrip().endswith(("Input:", "输入：")):
        task = prompt.rstrip().rsplit("\n", 1)[0].split("：" if zh else ": ", 1)[-1]
        # every other task: the model writes the input and stops
        if hashlib.sha256(task.encode()).digest()[0] % 2:
            return ok("<无输入>" if zh else " <noinput>")
        return ok("<无输入>\n输出：这是一个完整的回答。" if zh else " <noinput>\nOutput: A complete answer.")
    if prompt.startswith(("Come up with a series of tasks", "请列出一系列任务")):
        nxt = int(re.findall(r"(?:Task |任务)(\d+)", prompt)[-1])
        sep = "：" if zh else ": "
        return ok(" " + fresh(prompt, 0, zh) + f"\n{'任务' if zh else 'Task '}{nxt + 1}{sep}" + fresh(prompt, 1, zh))
    return ok(answer_for(prompt.split("\n\n")[0]))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_self_instruct_answers_an_instance_that_stopped_after_its_input(tmp_path, invoke_cli, read_jsonl, lang):
    with serve_in_thread(FakeOpenAI(responder=self_instruct_scripted)) as srv:
        out = tmp_path / "si"
        r = invoke_cli("generate", "--teacher", "openai", "--base-url", srv.url, "--model", "fake-model",
                       "--recipe", "self-instruct", "--lang", lang, "--num", "8", "--no-progress", "--no-report",
                       "--no-cache", "--concurrency", "2", "--out", out, env={"OPENAI_API_KEY": ""})
        assert r.exit_code == 0, r.output
        records = read_jsonl(out / "records.jsonl")
        assert len(records) == 8
        answered = [rec for rec in records if rec["meta"].get("answered") == "separately"]
        assert answered and len(answered) < 8
        asked = [user_turn(rq.json) for rq in srv.requests if rq.json.get("temperature") == 0.3]
        for rec in answered:
            assert rec["output"] == answer_for(rec["instruction"])
            assert asked.count(rec["instruction"]) == 1
        for rec in records:
            if rec not in answered:
                assert rec["output"] in ("A complete answer.", "这是一个完整的回答。")


# -- SIGKILL and resume --------------------------------------------------------------------------


def request_key(body: dict) -> str:
    """The journal's key of a request the server received: the triples prompt is a plain request
    (one user turn), an answer request a chat one (with its system turn)."""
    prompt = user_turn(body)
    kind = "text" if any(h in prompt for h in HEADERS) else "chat"
    return Request(prompt=prompt, max_tokens=body["max_tokens"], temperature=body["temperature"],
                   top_p=body["top_p"], stop=tuple(body.get("stop", ())), seed=body.get("seed"),
                   kind=kind, system=system_turn(body)).key()


def test_sigkill_then_resume_sends_no_journaled_answer_request_again(tmp_path, read_json, read_jsonl):
    num = 60

    def command(url, out):
        return [sys.executable, "cli.py", "generate", "--teacher", "openai", "--base-url", url, "--model",
                "fake-model", "--num", str(num), "--out", str(out), "--no-progress", "--no-report",
                "--no-cache", "--concurrency", "3"]

    env = {**os.environ, "OPENAI_API_KEY": ""}
    with serve_in_thread(FakeOpenAI(responder=lambda body, n: _slow(scripted(body, n)))) as srv:
        ref = subprocess.run(command(srv.url, tmp_path / "ref"), cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
        assert ref.returncode == 0, ref.stderr
        srv.requests.clear()
        out = tmp_path / "o"
        runs = kill_and_resume(command(srv.url, out), out, env, seed=11)
        sent = [(q.t, request_key(q.json)) for q in srv.requests]
    data = read_json(out / "data.json")
    assert len(data) == num and data == read_json(tmp_path / "ref" / "data.json")
    records = read_jsonl(out / "records.jsonl")
    assert [rec.get("meta", {}).get("answered") for rec in records] == \
        [rec.get("meta", {}).get("answered") for rec in read_jsonl(tmp_path / "ref" / "records.jsonl")]
    assert "answer" in {ev["stage"] for ev in journal_events(out, "resp")}
    assert_nothing_journaled_was_sent_again(runs, out, sent)


def _slow(behaviour):
    """The scripted answer after a short latency, so that a kill lands in mid-run."""
    return type(behaviour)(**{**behaviour.__dict__, "latency": 0.02})
