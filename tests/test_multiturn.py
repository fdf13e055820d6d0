"""``generate --turns K``: every recipe's candidates grow into conversations (the teacher plays the
user, then answers), each new turn meets the per-turn filters, and the loop's guarantees hold for
the new requests: journaled, replayed on resume, served by the cache.

The loopback server stands in for the teacher: ``Teacher`` below answers each recipe's first-turn
requests, the user simulator's and the turn answers, all as functions of the request alone (so a
request sent again gets the same reply, and two runs make the same data)."""
from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from selfinstruct.generate.conversation import (USER_SIMULATOR, Continuation, clean_user_turn, transcript,
                                                whole_sentences)
from selfinstruct.recipes import alpaca
from selfinstruct.record import Record
from selfinstruct.teachers.base import Request
from tests.fake_openai_server import FakeOpenAI, ok, prompt_of, serve_in_thread, server_error
from tests.kill_resume import assert_nothing_journaled_was_sent_again, journal_events, kill_and_resume
from tests.sim_teacher import WORDS, ZH

ROOT = Path(__file__).resolve().parents[1]
SIMULATOR_SYSTEMS = {p["system"] for p in USER_SIMULATOR.values()}
JUDGE_MARK = re.compile(r"<<<(example-[0-9a-f]+)>>>")


# -- cleaning the simulated user's reply ---------------------------------------------------------

@pytest.mark.parametrize("reply, message", [
    ("What about in winter?", "What about in winter?"),
    ("User: What about in winter?", "What about in winter?"),
    ("**User:** What about in winter?", "What about in winter?"),
    ("Sure, here is the next question:\nUser: \"What about in winter?\"", "What about in winter?"),
    ("Sure! Here's a natural follow-up question: What about in winter?", "What about in winter?"),
    ("Okay.\nFollow-up question: What about in winter?", "What about in winter?"),
    ("What about in winter?\nAssistant: In winter the river freezes.", "What about in winter?"),
    ("What about in winter?\n\nUser: And in spring?", "What about in winter?"),
    ("Assistant: In winter the river freezes.", ""),
    ("Sure!", ""),
    ("", ""),
    # the user's own words stay: a colon inside the message, a message that shares its material
    ("Here is my draft: \"The cat sat.\" Can you make it more vivid?",
     "Here is my draft: \"The cat sat.\" Can you make it more vivid?"),
    ("Question: is 17 prime? Explain briefly.", "is 17 prime? Explain briefly."),
    ("Can you compare \"war\" and 'peace' for me?", "Can you compare \"war\" and 'peace' for me?"),
    # Chinese
    ("用户：那冬天呢？", "那冬天呢？"),
    ("好的，以下是用户的下一条消息：\n用户：“那冬天呢？”", "那冬天呢？"),
    ("追问：能再举一个例子吗？", "能再举一个例子吗？"),
    ("那冬天呢？\n助手：冬天河面会结冰。", "那冬天呢？"),
    ("好的。", ""),
    ("下面是我的作文：春天来了。请帮我改得更生动。", "下面是我的作文：春天来了。请帮我改得更生动。"),
])
def test_the_user_simulators_reply_is_cleaned_to_the_message(reply, message):
    assert clean_user_turn(reply) == message


@pytest.mark.parametrize("cut, kept", [
    ("Why is it blue? And what about the sea, which is also", "Why is it blue?"),
    ('So the answer is "yes." But then', 'So the answer is "yes."'),
    ("About 3.5 percent of the", ""),
    ("为什么？还有海", "为什么？"),
    ("请再讲讲", ""),
])
def test_a_user_message_cut_at_its_limit_keeps_its_finished_sentences(cut, kept):
    assert whole_sentences(cut) == kept


# -- the requests ---------------------------------------------------------------------------------

CONVERSATION = [{"role": "user", "content": "Name three rivers in Europe."},
                {"role": "assistant", "content": "The Danube, the Rhine and the Loire."}]


def test_the_answer_request_sends_the_conversation_so_far_as_history():
    c = Continuation("en", 3, 256, short=False)
    req = c.answer_request(CONVERSATION, "Which is the longest?")
    assert req.kind == "chat" and req.stage == "turn_answer" and req.max_tokens == 256
    assert req.turns()[-3:] == CONVERSATION + [{"role": "user", "content": "Which is the longest?"}]
    # a function of the conversation: the same request (and key) again, another for another conversation
    assert req.key() == c.answer_request(CONVERSATION, "Which is the longest?").key()
    assert req.key() != c.answer_request(CONVERSATION, "Which is the shortest?").key()
    short = Continuation("en", 3, alpaca.SHORT_ANSWER_TOKENS, short=True).answer_request(CONVERSATION, "Why?")
    assert short.stop == ("\n\n",) and short.max_tokens == alpaca.SHORT_ANSWER_TOKENS
    zh = Continuation("zh", 3, 256, short=False).answer_request(CONVERSATION, "为什么？")
    assert "简体中文" in zh.system


def test_the_user_simulator_reads_a_transcript_in_one_user_turn():
    req = Continuation("en", 3, 256, short=False).user_turn_request(CONVERSATION)
    assert req.kind == "chat" and req.stage == "user_turn" and not req.history
    assert req.system == USER_SIMULATOR["en"]["system"]
    assert "User: Name three rivers in Europe.\n\nAssistant: The Danube, the Rhine and the Loire." in req.prompt
    assert req.prompt.endswith("Write the user's next message.")
    zh = Continuation("zh", 3, 256, short=False).user_turn_request(
        [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"}])
    assert "用户：你好\n\n助手：你好！" in zh.prompt
    long = transcript([{"role": "user", "content": "x" * 5000}], "en")
    assert len(long) < 1600 and long.endswith("…")


def test_a_short_answer_that_stops_before_its_content_is_no_answer():
    import asyncio

    from selfinstruct.filters.base import FilterChain
    from selfinstruct.teachers.base import Response

    async def ask(request):
        if request.stage == "user_turn":
            return Response("Can you add more detail?")
        return Response("Here is a revised version with more detail:")

    rec = Record("Name three rivers in Europe.", output="The Danube, the Rhine and the Loire.")
    short = Continuation("en", 2, alpaca.SHORT_ANSWER_TOKENS, short=True)
    stopped = asyncio.run(short.grow(rec, ask, FilterChain([])))
    assert stopped.reason == "no_answer" and stopped.detail.startswith("turn 2: the answer stopped before")
    # a teacher that is not asked for one short paragraph goes on after its colon
    rec = Record("Name three rivers in Europe.", output="The Danube, the Rhine and the Loire.")
    assert asyncio.run(Continuation("en", 2, 256, short=False).grow(rec, ask, FilterChain([]))) is None
    assert [m["role"] for m in rec.messages] == ["user", "assistant"] * 2


class _Recipe:
    answer_tokens = None


class _Magpie:
    answer_tokens = 512


class _Small:
    answers_separately = True


def test_the_answer_budget_is_the_recipes():
    from selfinstruct.recipes.documents import ANSWER_TOKENS as DOCUMENTS_TOKENS, DocumentsRecipe

    assert Continuation.for_recipe(_Magpie(), object(), "en", 2).answer_tokens == 512
    assert Continuation.for_recipe(_Recipe(), object(), "en", 2).answer_tokens == alpaca.ANSWER_TOKENS
    small = Continuation.for_recipe(_Recipe(), _Small(), "en", 2)
    assert small.short and small.answer_tokens == alpaca.SHORT_ANSWER_TOKENS
    documents = DocumentsRecipe.__new__(DocumentsRecipe)
    assert Continuation.for_recipe(documents, object(), "en", 2).answer_tokens == DOCUMENTS_TOKENS


# -- the loopback teacher ---------------------------------------------------------------------------

def digest(*parts: str) -> random.Random:
    return random.Random(hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest())


def words(*parts: str, k: int = 5) -> str:
    return " ".join(digest(*parts).sample(WORDS, k))


def han(*parts: str, k: int = 6) -> str:
    return "".join(digest(*parts).sample(ZH, k))


GIVEN = re.compile(r"#(?:Given Prompt|给定提示)#[:：]\n(.*?)\n\n#(?:Rewritten Prompt|Created Prompt|改写后的提示|新提示)#[:：]$",
                   re.S)


class Teacher:
    """The first turn of every recipe, the user simulator and the turn answers, each a function of
    its request. ``answer_for(messages)`` may override a turn answer (None: the usual one)."""

    def __init__(self, lang: str = "en", latency: float = 0.0, answer_for=None, follow_up_for=None):
        self.lang, self.latency = lang, latency
        self.answer_for, self.follow_up_for = answer_for, follow_up_for

    def __call__(self, body, n):
        messages = body.get("messages")
        if messages is None:                                    # magpie's raw request
            return self.ok(f"Explain how the {words(str(body['seed']), k=4)} fit together in plain words.")
        turns = [m for m in messages if m["role"] != "system"]
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        judged = JUDGE_MARK.search(prompt_of(body))
        if judged:                                              # the judge: a score from the instruction
            instruction = prompt_of(body).split("[Instruction]\n", 1)[1].split("\n", 1)[0]
            low = digest(instruction, "judge").random() < 0.4
            return self.ok("Score: 3\nReason: vague" if low else "Score: 8\nReason: clear and correct")
        if system in SIMULATOR_SYSTEMS:
            return self.follow_up(turns[-1]["content"])
        if len(turns) > 1:
            return self.turn_answer(turns)
        return self.first_turn(prompt_of(body), body)

    def ok(self, text, **kw):
        return ok(text, latency=self.latency, **kw)

    def follow_up(self, prompt: str):
        if self.follow_up_for is not None:
            special = self.follow_up_for(prompt)
            if special is not None:
                return special
        if self.lang == "zh":
            return self.ok(f"好的，以下是用户的下一条消息：\n用户：能再举一个关于{han(prompt, k=4)}的例子吗？")
        return self.ok(f"Sure, here is the next question:\nUser: \"Could you give one more example with "
                       f"{words(prompt, k=3)}?\"")

    def turn_answer(self, turns):
        if self.answer_for is not None:
            special = self.answer_for(turns)
            if special is not None:
                return special
        key = [m["content"] for m in turns]
        if self.lang == "zh":
            return self.ok(f"当然可以。比如{han(*key)}，这个例子从另一个角度说明了同样的道理。")
        return self.ok(f"Of course. Take {words(*key)}: together they show the same idea in a new setting.")

    def first_turn(self, prompt: str, body):
        zh = self.lang == "zh"
        seed = str(body.get("seed"))
        given = GIVEN.search(prompt)
        if given:                                                  # evol-instruct's rewrite
            inst = given.group(1).split("\n#")[0]
            return self.ok(f"#Rewritten Prompt#:\n{inst.rstrip('.')} and mention {words(inst, seed, k=3)}.")
        if '"""' in prompt and ("Write one task" in prompt or "different tasks" in prompt):   # documents
            w = words(prompt, k=3)
            return self.ok(f"Task 1\nInstruction: Which {w} does the passage mention first?\n"
                           f"Output: The passage mentions the {w.split()[0]} first.")
        if prompt.rstrip().endswith(("Instruction:", "指令：")):    # alpaca: three triples
            return self.ok(self.triples(prompt, seed))
        m = re.search(r"(?:Task |任务)(\d+)[:：]$", prompt.rstrip())
        if m:                                                      # self-instruct: numbered tasks
            n = int(m.group(1))
            return self.ok("\n".join([f" Describe the {words(prompt, seed)} idea briefly."]
                                     + [f"Task {n + i}: Describe the {words(prompt, seed, str(i))} idea briefly."
                                        for i in range(1, 3)]))
        if prompt.rstrip().endswith(("Is it classification?", "是分类任务吗？")):
            return self.ok(" No")
        if prompt.rstrip().endswith(("Input:", "输入：")):
            return self.ok(" <noinput>\nOutput: A short, helpful answer about it.")
        # an answer request (magpie's, evol's, documents')
        return self.ok(f"Consider the {words(prompt)}: each matters, and together they answer it well.")


    def triples(self, prompt: str, seed: str) -> str:
        n = int(re.findall(r"(?:Task |任务)(\d+)\n", prompt)[-1])
        blocks = []
        for i in range(3):
            if self.lang == "zh":
                head = "" if i == 0 else f"任务{n + i}\n指令："
                blocks.append(f"{head}请介绍{han(prompt, seed, str(i))}的特点。\n输入：<无输入>\n输出：它们各有特色，值得一看。")
            else:
                head = "" if i == 0 else f"Task {n + i}\nInstruction:"
                blocks.append(f"{head} Describe the {words(prompt, seed, str(i))} idea briefly.\nInput: <noinput>\n"
                              "Output: Each part has its own charm and purpose.")
        return "\n\n".join(blocks)


def generate(invoke_cli, server, out, recipe, *args, cache=False):
    return invoke_cli("generate", "--teacher", "openai", "--base-url", server.url, "--model", "qwen2.5-7b-instruct",
                      "--recipe", recipe, "--out", out, "--no-progress", "--no-report", "--format", "messages",
                      "--cache" if cache else "--no-cache", *args, env={"OPENAI_API_KEY": ""})


def recipe_args(recipe: str, tmp_path: Path) -> list[str]:
    if recipe == "documents":
        doc = tmp_path / "town.txt"
        doc.write_text("\n\n".join(f"Paragraph {n}: the {words(str(n), k=3)} of the old town stand near the "
                                   f"river bend number {n}, and people still visit them." for n in range(30)),
                       encoding="utf-8")
        return ["--documents", str(doc), "--opt", "documents.chunk_tokens=40", "--opt", "documents.overlap_tokens=0"]
    return []


def turn_requests(server) -> tuple[list[dict], list[dict]]:
    """(user simulator requests, turn answer requests) the server received, as their bodies."""
    chat = [q.json for q in server.requests if "messages" in q.json]
    sim = [b for b in chat if b["messages"][0]["content"] in SIMULATOR_SYSTEMS]
    answers = [b for b in chat if b not in sim and len([m for m in b["messages"] if m["role"] != "system"]) > 1]
    return sim, answers


def without_system(messages):
    return [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]


@pytest.mark.parametrize("recipe", ["alpaca", "self-instruct", "evol-instruct", "magpie", "documents"])
def test_every_recipe_ends_with_exactly_num_conversations_of_k_turns(recipe, invoke_cli, tmp_path, read_json,
                                                                   read_jsonl):
    with serve_in_thread(FakeOpenAI(responder=Teacher())) as server:
        r = generate(invoke_cli, server, tmp_path / "o", recipe, "--turns", "3", "--num", "4",
                     "--concurrency", "2", *recipe_args(recipe, tmp_path))
        assert r.exit_code == 0, r.output + r.stderr
        sim, answers = turn_requests(server)
    records = read_jsonl(tmp_path / "o" / "records.jsonl")
    assert len(records) == 4
    for rec in records:
        messages = rec["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"] * 3
        # the first exchange is the recipe's, mirrored in instruction / output
        first = rec["instruction"] + (f"\n\n{rec['input']}" if rec["input"].strip() else "")
        assert messages[0]["content"] == first and messages[1]["content"] == rec["output"]
        assert "User:" not in messages[2]["content"] and not messages[2]["content"].startswith(("Sure", '"'))
        # each later answer was asked with the conversation so far as history, the new message last
        for k in (2, 3):
            assert messages[: 2 * k - 1] in [without_system(b["messages"]) for b in answers]
            # and its user turn came from a simulator that was shown the conversation before it
            shown = [b["messages"][-1]["content"] for b in sim]
            assert transcript(messages[: 2 * k - 2], "en") in "\n".join(shown)
    summary = read_json(tmp_path / "o" / "summary.json")
    assert summary["kept"] == 4
    assert {"user_turn", "turn_answer"} <= set(summary["requests_per_stage"])
    assert summary["settings"]["turns"] == 3


def test_a_chinese_run_grows_chinese_conversations(invoke_cli, tmp_path, read_jsonl):
    with serve_in_thread(FakeOpenAI(responder=Teacher("zh"))) as server:
        r = generate(invoke_cli, server, tmp_path / "o", "alpaca", "--lang", "zh", "--turns", "2", "--num", "3",
                     "--concurrency", "2")
        assert r.exit_code == 0, r.output + r.stderr
        sim, answers = turn_requests(server)
    records = read_jsonl(tmp_path / "o" / "records.jsonl")
    assert len(records) == 3
    for rec in records:
        assert rec["lang"] == "zh" and len(rec["messages"]) == 4
        assert rec["messages"][2]["content"].startswith("能再举一个关于")       # label and chatter cleaned
    assert all(b["messages"][0]["content"] == USER_SIMULATOR["zh"]["system"] for b in sim)
    assert all("简体中文" in b["messages"][0]["content"] for b in answers)


def test_the_per_turn_filters_reject_a_bad_second_answer_and_name_the_turn(invoke_cli, tmp_path, read_json,
                                                                           read_jsonl):
    bad = set()

    def answer_for(turns):
        # every other conversation's second answer is a refusal; a third of the third answers are empty
        first = turns[0]["content"]
        if len(turns) == 3 and digest(first).random() < 0.5:
            bad.add(first)
            return ok("As an AI language model, I cannot give more examples.")
        if len(turns) == 5 and digest(first, "3").random() < 0.3:
            return ok("")
        return None

    with serve_in_thread(FakeOpenAI(responder=Teacher(answer_for=answer_for))) as server:
        r = generate(invoke_cli, server, tmp_path / "o", "alpaca", "--turns", "3", "--num", "8",
                     "--concurrency", "2")
        assert r.exit_code == 0, r.output + r.stderr
        sim, answers = turn_requests(server)
    records = read_jsonl(tmp_path / "o" / "records.jsonl")
    assert len(records) == 8 and all(len(rec["messages"]) == 6 for rec in records)
    assert not bad & {rec["instruction"] for rec in records}
    rejects = [x for x in read_jsonl(tmp_path / "o" / "rejects.jsonl") if x["reason"] in ("refusal", "no_answer")]
    refused = [x for x in rejects if x["reason"] == "refusal"]
    assert refused and all(x["detail"].startswith("turn 2: ") for x in refused)
    assert {x["record"]["instruction"] for x in refused} <= bad
    # the rejected conversation is in its reject row as far as it went; no third turn was paid for it
    assert all(len(x["record"]["messages"]) == 4 for x in refused)
    third_turn_histories = [without_system(b["messages"])[0]["content"] for b in answers
                            if len(without_system(b["messages"])) == 5]
    assert not {x["record"]["instruction"] for x in refused} & set(third_turn_histories)
    # they passed the novelty filters before their turns were rejected: a resumed run remembers them
    refused_keys = {ev["key"] for ev in journal_events(tmp_path / "o", "reject") if ev["reason"] == "refusal"
                    and ev.get("passed_head")}
    assert len(refused_keys) == len(refused)
    empty = [x for x in rejects if x["reason"] == "no_answer"]
    assert all(x["detail"] == "turn 3: the answer request came back empty" for x in empty)
    summary = read_json(tmp_path / "o" / "summary.json")
    assert summary["rejected"]["refusal"] == len(refused)
    assert summary["rejected_per_stage"]["quality"]["refusal"] == len(refused)


def test_teacher_failures_and_unusable_follow_ups_are_rejects_counted_per_reason(invoke_cli, tmp_path,
                                                                                read_json, read_jsonl):
    def follow_up_for(prompt):
        r = digest(prompt).random()
        if r < 0.2:
            return server_error(503)                 # every attempt fails: the turn fails
        if r < 0.4:
            return ok("Assistant: Here is another example for you.")     # it answered instead
        if r < 0.5:
            return ok("Sure, here is the next question:\nUser: \"" + prompt.split("User: ")[1].split("\n")[0] + "\"")
        if r < 0.6:
            return ok("Could you tell me more about the second part, and also how it", finish_reason="length")
        if r < 0.7:
            return ok("Could you say more? And also how the", finish_reason="length")
        return None

    with serve_in_thread(FakeOpenAI(responder=Teacher(follow_up_for=follow_up_for))) as server:
        r = generate(invoke_cli, server, tmp_path / "o", "alpaca", "--turns", "2", "--num", "6",
                     "--concurrency", "2", "--opt", "openai.max_attempts=2", "--opt", "openai.backoff_base=0.01")
        assert r.exit_code == 0, r.output + r.stderr
    summary = read_json(tmp_path / "o" / "summary.json")
    assert summary["kept"] == 6
    rejects = read_jsonl(tmp_path / "o" / "rejects.jsonl")
    by_reason = Counter(x["reason"] for x in rejects)
    for reason in ("turn_failed", "turn_unparseable", "turn_repeated"):
        assert by_reason[reason] > 0, by_reason
        assert summary["rejected"][reason] == by_reason[reason]
        assert summary["rejected_per_stage"]["generate"][reason] == by_reason[reason]
        assert all(x["detail"].startswith("turn 2: ") for x in rejects if x["reason"] == reason)
    assert summary["requests_per_stage"]["user_turn"]["failed"] == by_reason["turn_failed"]
    # a follow-up cut at the token limit keeps its finished sentences, or is truncated without any
    truncated = [x for x in rejects if x["reason"] == "truncated"]
    assert truncated and all(x["detail"].startswith("turn 2: ") for x in truncated)
    assert all(x["record"]["messages"][2]["content"].endswith("how it") for x in truncated)
    kept = read_jsonl(tmp_path / "o" / "records.jsonl")
    assert "Could you say more?" in [rec["messages"][2]["content"] for rec in kept]


def test_the_judge_judges_whole_conversations_after_their_turns(invoke_cli, tmp_path, read_json, read_jsonl):
    def answer_for(turns):
        if len(turns) == 3 and digest(turns[0]["content"]).random() < 0.3:
            return ok("As an AI language model, I cannot give more examples.")
        return None

    with serve_in_thread(FakeOpenAI(responder=Teacher(answer_for=answer_for))) as server:
        r = generate(invoke_cli, server, tmp_path / "o", "alpaca", "--turns", "2", "--num", "6",
                     "--concurrency", "2", "--judge", "--judge-min-score", "5")
        assert r.exit_code == 0, r.output + r.stderr
        judged = [prompt_of(q.json).split("[Instruction]\n", 1)[1].split("\n", 1)[0] for q in server.requests
                  if "messages" in q.json and JUDGE_MARK.search(prompt_of(q.json))]
    records = read_jsonl(tmp_path / "o" / "records.jsonl")
    assert len(records) == 6 and all(len(rec["messages"]) == 4 for rec in records)
    assert all(rec["judge_score"] == 8 for rec in records)
    rejects = read_jsonl(tmp_path / "o" / "rejects.jsonl")
    low = [x for x in rejects if x["reason"] == "judge_low_score"]
    refused = [x for x in rejects if x["reason"] == "refusal"]
    assert low and refused
    # the judge saw every whole conversation, and none that a turn had rejected
    assert {rec["instruction"] for rec in records} | {x["record"]["instruction"] for x in low} <= set(judged)
    assert not {x["record"]["instruction"] for x in refused} & set(judged)
    assert all(len(x["record"]["messages"]) == 4 for x in low)


def test_a_rerun_with_the_cache_pays_nothing_and_makes_the_same_conversations(invoke_cli, tmp_path, read_jsonl):
    with serve_in_thread(FakeOpenAI(responder=Teacher())) as server:
        args = ("--turns", "3", "--num", "6", "--concurrency", "3")
        a = generate(invoke_cli, server, tmp_path / "a", "alpaca", *args, cache=True)
        assert a.exit_code == 0, a.output + a.stderr
        paid = server.count
        b = generate(invoke_cli, server, tmp_path / "b", "alpaca", *args, cache=True)
        assert b.exit_code == 0, b.output + b.stderr
        assert server.count == paid
    first = [rec["messages"] for rec in read_jsonl(tmp_path / "a" / "records.jsonl")]
    assert len(first) == 6 and first == [rec["messages"] for rec in read_jsonl(tmp_path / "b" / "records.jsonl")]


def test_a_run_into_a_folder_made_with_other_turns_is_refused(invoke_cli, tmp_path, fake_openai):
    r = generate(invoke_cli, fake_openai, tmp_path / "o", "alpaca", "--turns", "2", "--num", "1")
    assert r.exit_code == 0, r.output + r.stderr
    again = generate(invoke_cli, fake_openai, tmp_path / "o", "alpaca", "--num", "1")
    assert again.exit_code != 0 and "--turns 2" in again.stderr


# -- resume after SIGKILL ---------------------------------------------------------------------------

def request_keys(body: dict) -> list[str]:
    """The journal keys a request the server received may have (a chat body with one user turn and
    no system turn was a "text" or a "chat" request)."""
    common = dict(max_tokens=body["max_tokens"], temperature=body["temperature"], top_p=body["top_p"],
                  stop=tuple(body.get("stop", ())), seed=body.get("seed"))
    turns = body["messages"]
    system = turns[0]["content"] if turns[0]["role"] == "system" else ""
    history = tuple((m["role"], m["content"]) for m in turns[1 if system else 0: -1])
    keys = [Request(prompt=turns[-1]["content"], kind="chat", system=system, history=history, **common).key()]
    if not system and not history:
        keys.append(Request(prompt=turns[-1]["content"], **common).key())
    return keys


@pytest.mark.slow
def test_sigkill_in_mid_run_then_resume_pays_no_turn_twice_and_ends_with_the_uninterrupted_runs_data(
        tmp_path, read_jsonl, read_json):
    num = 60

    def command(server, out):
        return [sys.executable, "cli.py", "generate", "--teacher", "openai", "--base-url", server.url,
                "--model", "fake-model", "--recipe", "alpaca", "--turns", "3", "--num", str(num), "--out", str(out),
                "--format", "messages", "--no-progress", "--no-report", "--no-cache", "--concurrency", "4"]

    def answer_for(turns):
        # some conversations fail a turn, so that rejected conversations are part of what resumes
        if len(turns) == 3 and digest(turns[0]["content"]).random() < 0.15:
            return ok("As an AI language model, I cannot give more examples.", latency=0.03)
        return None

    env = {**os.environ, "OPENAI_API_KEY": ""}
    with serve_in_thread(FakeOpenAI(responder=Teacher(latency=0.03, answer_for=answer_for))) as server:
        ref = subprocess.run(command(server, tmp_path / "ref"), cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
        assert ref.returncode == 0, ref.stderr
        server.requests.clear()
        out = tmp_path / "o"
        runs = kill_and_resume(command(server, out), out, env, seed=5, num=num)
        sent = [(q.t, key) for q in server.requests for key in request_keys(q.json)]
        stages = Counter("user_turn" if q.json["messages"][0]["content"] in SIMULATOR_SYSTEMS else "other"
                         for q in server.requests)
    records = read_jsonl(out / "records.jsonl")
    assert len(records) == num and all(len(rec["messages"]) == 6 for rec in records)
    assert [rec["messages"] for rec in records] == [rec["messages"] for rec in read_jsonl(tmp_path / "ref" / "records.jsonl")]
    assert_nothing_journaled_was_sent_again(runs, out, sent)
    assert stages["user_turn"] > 0
    # units a kill interrupted were among those that ended as conversations
    assert runs.interrupted & {rec["request_id"].split(":")[0] for rec in records}
    rejected = Counter(x["reason"] for x in read_jsonl(out / "rejects.jsonl"))
    assert rejected["refusal"] > 0
    assert read_json(out / "summary.json")["rejected"]["refusal"] == rejected["refusal"]


def test_a_rejected_conversation_still_counts_for_novelty_after_a_resume(tmp_path):
    """A candidate whose later turn is rejected passed the novelty filters (they remember it at once,
    so that no decision depends on when a continuation ends): a resumed run preloads it too."""
    from selfinstruct import journal as jr

    rec = Record("Describe the violin garden idea briefly.", output="x")
    journal = jr.Journal(str(tmp_path / jr.FILENAME))
    journal.write({"ev": "reject", "key": "u0:0", "reason": "refusal", "detail": "turn 2: As an AI",
                   "stage": "quality", "record": rec.to_dict(), "passed_head": True})
    journal.write({"ev": "reject", "key": "u0:1", "reason": "too_short", "detail": "",
                   "stage": "quality", "record": Record("Hi.").to_dict()})
    journal.close()
    state = jr.load(str(tmp_path / jr.FILENAME))
    assert [r.instruction for r in state.judged_out] == [rec.instruction]


# -- the real embedded model --------------------------------------------------------------------------

@pytest.mark.embedded
@pytest.mark.slow
def test_the_embedded_model_writes_two_turn_conversations(tmp_path, read_jsonl, read_json):
    from selfinstruct.generate import Settings, run_generate
    from selfinstruct.publish import Publish
    from selfinstruct.teachers.embedded import EmbeddedTeacher

    out = tmp_path / "o"
    # batches of 4: two conversations need few units, and a smaller batch ends sooner on a CPU
    summary = run_generate(Settings(num=2, out=str(out), turns=2, progress=False, publish=Publish(format="messages")),
                           EmbeddedTeacher(concurrency=4))
    assert summary["kept"] == 2 and summary["stopped"] == "done"
    for rec in read_jsonl(out / "records.jsonl"):
        assert [m["role"] for m in rec["messages"]] == ["user", "assistant", "user", "assistant"]
        assert all(m["content"].strip() for m in rec["messages"])
        assert "<|im_" not in "".join(m["content"] for m in rec["messages"])
    assert summary["requests_per_stage"]["user_turn"]["paid"] >= 2
    assert summary["requests_per_stage"]["turn_answer"]["paid"] >= 2
