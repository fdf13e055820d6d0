"""`selfinstruct generate --recipe evol-instruct` end to end, through the CLI, against the loopback
OpenAI-compatible server with a scripted teacher: good rewrites (with and without an input), a
rewrite that copies the operator prompt, one that adds nothing, garbled and truncated rewrites,
refused and empty answers, a near-copy of an unrelated seed task, Chinese. Exact counts of what is
accepted and why the rest was rejected, the lineage of every record, topics, --from, --rounds, the
exhaustion message, and a run killed with SIGKILL and resumed (exactly --num, no journaled request
sent again). The parsing and elimination rules are checked on their own first, on the teacher
failures they must catch and on human-written tasks they must leave alone."""
from __future__ import annotations

import json
import os
import random
import re
import sys
from collections import Counter

import pytest

from selfinstruct.errors import InputError, UsageError
from selfinstruct.recipes import recipe_class
from selfinstruct.recipes.evol_instruct import (OPERATIONS, PROMPTS, EvolInstructRecipe, Parent,
                                                 answer_failure, copied_prompt_words,
                                                 new_content_tokens, parse_evolved)
from selfinstruct.teachers.base import Request
from selfinstruct.text import tokens
from tests.fake_openai_server import FakeOpenAI, api_error, ok, serve_in_thread, server_error
from tests.kill_resume import assert_nothing_journaled_was_sent_again, kill_and_resume

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# -- fixtures written for these tests ---------------------------------------------------------------

SEEDS_EN = [
    ("t1", "Plan a three-day walking tour of Lisbon for a retired couple who love history.", ""),
    ("t2", "Rewrite the sentence in the passive voice.", "The committee approved the new budget."),
    ("t3", "Suggest a name for a bakery that sells only sourdough bread.", ""),
]
SEEDS_ZH = [
    ("z1", "写一首关于江南春雨的七言绝句。", ""),
    ("z2", "把下面这句话翻译成英文。", "今天的会议推迟到下午三点。"),
    ("z3", "给一家只卖手工饺子的小店起个名字。", ""),
    ("z4", "解释为什么秋天树叶会变黄。", ""),
]

# The tasks --from gives (one per line) and, per task, the clauses a good rewrite appends in turn.
HAIKU = "Write a haiku about autumn leaves falling in a quiet park."
DETECTIVE = "Summarise the plot of a detective novel in three sentences."
SODA = "List five uses of baking soda around the house."
GARBLED = "Describe the water cycle to a ten-year-old."
TIDES = "Explain how tides are caused by the moon and the sun."
CONVERT = "Convert this temperature from Celsius to Fahrenheit."
FROM_TASKS = [(HAIKU, ""), (DETECTIVE, ""), (SODA, ""), (GARBLED, ""), (TIDES, ""),
              (CONVERT, "25 degrees Celsius")]
CLAUSES = {
    HAIKU: ["Mention a red bench beside the pond.", "Use the word amber exactly once.",
            "End the poem with a question about winter."],
    DETECTIVE: ["Do not reveal the culprit's name.", "Mention the weather on the night of the crime.",
                "Keep every sentence under twenty words."],
    SODA: ["Explain the chemistry behind each use.", "Rank them from cheapest to costliest.",
           "Add one safety warning."],
    GARBLED: ["Use a kettle as the example.", "Finish with a rhyme.", "Avoid the word evaporation."],
    TIDES: ["Include a diagram description.", "Compare spring and neap tides.",
            "Give one fishing tip that depends on them."],
    CONVERT: ["Round each result to one decimal place.", "Flag any city below freezing.",
              "Show the formula once at the top."],
    "写一首关于江南春雨的七言绝句。": ["诗中要出现一座石桥。", "最后一句用问句收尾。"],
    "把下面这句话翻译成英文。": ["译文要用正式的商务语气。", "再给出一个口语化的版本。"],
    "给一家只卖手工饺子的小店起个名字。": ["名字要带一个数字。", "并说明名字的寓意。"],
    "解释为什么秋天树叶会变黄。": ["提到叶绿素和胡萝卜素。", "用一个比喻帮助小学生理解。"],
}
NEAR_SEED = "Plan a three-day walking tour of Lisbon for a retired couple who love old history."
TABLE = "| city | C |\n| Oslo | -3 |\n| Cairo | 31 |"
CONVERT_TABLE = "Convert each temperature in the table from Celsius to Fahrenheit."


def write_seeds(path, seeds) -> str:
    rows = [{"id": sid, "name": sid, "instruction": inst, "is_classification": False,
             "instances": [{"input": inp, "output": f"An example answer for {sid}."}]}
            for sid, inst, inp in seeds]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def write_from(path, tasks) -> str:
    rows = [{"instruction": inst, "input": inp, "output": "x"} for inst, inp in tasks]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


# -- reading what the server received ---------------------------------------------------------------

GIVEN = re.compile(r"#(?:Given Prompt|给定提示)#[:：]\n(.*?)\n\n#(?:Rewritten Prompt|Created Prompt|改写后的提示|新提示)#[:：]$",
                   re.S)
INPUT_LINE = re.compile(r"\n#(?:Input|输入)#[:：]\n")


def turns(body) -> tuple[str, str]:
    """(system, user) of a chat request."""
    system = "".join(m["content"] for m in body["messages"] if m["role"] == "system")
    user = "".join(m["content"] for m in body["messages"] if m["role"] == "user")
    return system, user


def given_task(user: str) -> tuple[str, str] | None:
    """(instruction, input) of the task a rewrite request shows; None for an answer request."""
    m = GIVEN.search(user)
    if not m:
        return None
    parts = INPUT_LINE.split(m.group(1), maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def operation_asked(user: str, lang: str) -> str:
    """The operation a rewrite request asks for, read from the method sentence it holds."""
    p = PROMPTS[lang]
    if p["ask"]["breadth"] in user:
        return "mutation"
    return next(op for op, method in p["methods"].items() if method in user)


def request_key(body) -> str:
    """The journal's key (``Request.key``) of a chat request the server received."""
    system, user = turns(body)
    return Request(prompt=user, system=system, kind="chat", max_tokens=body["max_tokens"],
                   temperature=body["temperature"], top_p=body["top_p"],
                   stop=tuple(body.get("stop", ())), seed=body.get("seed")).key()


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure on the project's tokens (a plain LCS, independent of the filter's index)."""
    x, y = tokens(a), tokens(b)
    if not x or not y:
        return 0.0
    prev = [0] * (len(y) + 1)
    for xi in x:
        cur = [0]
        for j, yj in enumerate(y):
            cur.append(prev[j] + 1 if xi == yj else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(y), lcs / len(x)
    return 2 * p * r / (p + r)


# -- the scripted teacher ---------------------------------------------------------------------------

class ScriptedTeacher:
    """Answers rewrite requests by the script of the task line they belong to (the root the given
    task starts with), one step per visit, and answer requests likewise; everything is logged."""

    def __init__(self, lang: str, rewrites: dict[str, list[str]], answers: dict[str, list[str]]):
        self.lang, self.rewrites, self.answers = lang, rewrites, answers
        self.visits: Counter = Counter()
        self.answer_visits: Counter = Counter()
        self.asked: list[tuple[str, str, str]] = []        # (given instruction, its input, operation)
        self.answered: list[tuple[str, str]] = []          # (system, user) of answer requests

    def root(self, text: str) -> str | None:
        if text.startswith(CONVERT_TABLE):          # the rewrite that swapped the task for a table
            return CONVERT
        return next((r for r in CLAUSES if text.startswith(r)), None)

    def __call__(self, body, n):
        try:
            return self.reply(body)
        except Exception as e:               # a script error fails the run at once, visibly
            return api_error(400, f"scripted teacher: {type(e).__name__}: {e}")

    def reply(self, body):
        system, user = turns(body)
        given = given_task(user)
        if given is None:
            self.answered.append((system, user))
            return ok(self.answer(user))
        inst, inp = given
        self.asked.append((inst, inp, operation_asked(user, self.lang)))
        root = self.root(inst)
        step = self.rewrites.get(root, ["good"] * 3)[self.visits[root]]
        self.visits[root] += 1
        return self.rewrite(step, root, inst, inp)

    def rewrite(self, step: str, root: str, inst: str, inp: str):
        label = "#Rewritten Prompt#:" if self.lang == "en" else "#改写后的提示#："
        nxt = next(c for c in CLAUSES[root] if c not in inst)
        sep = " " if self.lang == "en" else ""
        if step == "good":
            styles = [f"{label}\n{{}}", "**Rewritten Prompt:** \"{}\"", "{}"]
            text = styles[self.visits[root] % 3].format(inst + sep + nxt)
            return ok(text + (f"\n#Input#:\n{inp}" if inp else ""))
        if step == "table":
            return ok(f"{label}\n{CONVERT_TABLE}\n#Input#:\n{TABLE}")
        if step == "copy":
            given = "#Given Prompt#:" if self.lang == "en" else "#给定提示#："
            return ok(f"{given} {inst}\n{label} {inst}{sep}{nxt}")
        if step == "same":
            return ok(f"{label}\n{inst.rstrip('.。')}{'' if self.lang == 'zh' else '.'}")
        if step == "garbled":
            return ok(f"{label}\n\n")
        if step == "truncated":
            return ok(f"{label}\n{inst} {nxt} Furthermore, the answer must consider", finish_reason="length")
        if step == "near_seed":
            return ok(f"{label}\n{NEAR_SEED}")
        if step == "server_error":
            return server_error(503)
        raise AssertionError(step)

    def answer(self, user: str) -> str:
        root = self.root(user)
        steps = self.answers.get(root, [])
        i = self.answer_visits[root]
        self.answer_visits[root] += 1
        step = steps[i] if i < len(steps) else "good"
        if step == "refuse":
            return "I'm sorry, but I can't help with that request."
        if step == "refuse_zh":
            return "抱歉，我无法完成这个请求。"
        if step == "punctuation":
            return "... !!! ?"
        digest = sum(map(ord, user)) % 997
        if self.lang == "zh":
            return f"这是一个完整的回答，编号{digest}：先说明要点，再举出具体的例子，最后总结。"
        return (f"Answer {digest}: start from the main idea, support it with two concrete details, "
                "and finish with a short conclusion that ties them together.")


def generate(invoke_cli, server, out, *args, cache=False):
    return invoke_cli("generate", "--teacher", "openai", "--base-url", server.url, "--model", "fake-model",
                      "--out", out, "--no-progress", "--no-report", "--cache" if cache else "--no-cache",
                      "--recipe", "evol-instruct", *args, env={"OPENAI_API_KEY": "sk-test"})


def rejects_by_reason(rows) -> Counter:
    return Counter(r["reason"] for r in rows)


# -- the rules on their own -------------------------------------------------------------------------

@pytest.mark.parametrize("reply, expected", [
    ("#Rewritten Prompt#:\nWrite a haiku about rain.", ("Write a haiku about rain.", "")),
    ("**Rewritten Prompt:** \"Write a haiku about rain.\"", ("Write a haiku about rain.", "")),
    ("#Created Prompt#:\nTask: Name three rare birds.", ("Name three rare birds.", "")),
    ("Sort the rows by age.\n#Input#:\n| a | 3 |\n| b | 1 |", ("Sort the rows by age.", "| a | 3 |\n| b | 1 |")),
    ("#改写后的提示#：\n写一首诗。\n#输入#：\n春天", ("写一首诗。", "春天")),
    ("#新提示#：指令：给猫起三个名字。", ("给猫起三个名字。", "")),
    ("#Rewritten Prompt#:\n\n", ("", "")),
    # the task's own words are kept: "New prompting…" is no heading, a colon inside is no label
    ("New prompting techniques: list three for chatbots.",
     ("New prompting techniques: list three for chatbots.", "")),
    ("新提示音有哪些设计原则？", ("新提示音有哪些设计原则？", "")),
    ("Explain what \"Input: a list\" means in a spec.", ("Explain what \"Input: a list\" means in a spec.", "")),
])
def test_parse_evolved_strips_headings_and_splits_the_input(reply, expected):
    assert parse_evolved(reply) == expected


def test_copied_prompt_words_are_caught_unless_the_parent_had_them():
    parent = Parent("p", "Summarise the plot of a film.")
    copied = copied_prompt_words(parent, "#Given Prompt#: Summarise the plot of a film in detail.", "")
    assert copied == "#Given Prompt#"
    assert copied_prompt_words(parent, "Make the rewritten prompt longer.", "") == "rewritten prompt"
    assert copied_prompt_words(Parent("p", "总结一部电影。"), "根据给定提示总结一部电影的情节。", "") == "给定提示"
    assert copied_prompt_words(parent, "Summarise the plot of a film in two sentences.", "") == ""
    # a human task about prompts keeps its words when its evolution keeps them
    human = Parent("p", "Write a short story from the given prompt: a lighthouse keeper finds a key.")
    assert copied_prompt_words(human, human.instruction + " Use the first person.", "") == ""
    assert copied_prompt_words(Parent("p", "写一段话介绍手机的新提示音。"), "写一段话介绍手机的新提示音和铃声。", "") == ""


def test_no_gain_counts_new_content_words_not_stop_words_or_punctuation():
    parent = Parent("p", "List five uses of baking soda.")
    assert new_content_tokens(parent, "List five uses of baking soda!", "") == set()
    assert new_content_tokens(parent, "List the five uses of the baking soda.", "") == set()
    assert new_content_tokens(parent, "List five uses of baking soda in the kitchen.", "") == {"kitchen"}
    assert new_content_tokens(parent, "List five uses of baking soda.", "| pan | stain |") == {"pan", "stain"}
    zh = Parent("p", "解释为什么秋天树叶会变黄。")
    assert new_content_tokens(zh, "解释一下为什么秋天的树叶会变黄？", "") == {"一", "下"}
    assert len(new_content_tokens(zh, "解释为什么秋天树叶会变黄，提到叶绿素。", "")) >= 3


@pytest.mark.parametrize("answer", [
    "I'm sorry, but I can't help with that request.",
    "Sorry, this task is impossible to complete.",
    "抱歉，我无法完成这个请求。",
    "对不起，这个问题我回答不了。",
    "... !!! ?",
    "",
    "It is what it is.",
    "这个。",
])
def test_failed_answers_are_caught(answer):
    assert answer_failure(answer)


@pytest.mark.parametrize("answer, instruction", [
    ("Write to the customer: We are sorry for the delay; your parcel ships today with express delivery.",
     "Write a two-sentence apology to a customer whose parcel is late."),
    ("我们对这次延误深表歉意，非常抱歉给您带来不便。", "替快递公司写一句向客户道歉的话。"),
])
def test_an_apology_the_task_asks_for_is_left_alone(answer, instruction):
    assert answer_failure(answer, instruction) == ""
    assert answer_failure(answer, "Translate the sentence.")


@pytest.mark.parametrize("answer", [
    "Sorry seems to be the hardest word: " + "the song's narrator keeps apologising without being heard. " * 10,
    "The character says \"sorry\" three times, which shows her guilt.",
    "42",
    "很遗憾，这次比赛他输了。" + "但他从失败中学到了很多，包括如何分配体力、如何调整心态以及如何在逆境中保持专注。" * 4,
    "小明说：“对不起，我来晚了。”这句话表达了歉意，语气诚恳。",
])
def test_human_answers_that_mention_sorry_are_left_alone(answer):
    assert answer_failure(answer) == ""


def test_options_are_checked(tmp_path):
    assert recipe_class("evol-instruct") is EvolInstructRecipe
    from selfinstruct.seedtasks import load_seeds
    seed_records = load_seeds([write_seeds(tmp_path / "s.jsonl", SEEDS_EN)], "en")
    with pytest.raises(UsageError, match="--rounds must be at least 1"):
        EvolInstructRecipe(seed_records, "en", rounds=0)
    with pytest.raises(UsageError, match="unknown operation 'widen'"):
        EvolInstructRecipe(seed_records, "en", operations="deepen,widen")
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"instruction": " ", "output": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="no instructions to evolve"):
        EvolInstructRecipe(seed_records, "en", source=str(empty))


def test_parents_are_shuffled_by_the_run_seed_and_the_operation_by_the_text(tmp_path):
    from selfinstruct.seedtasks import load_seeds
    seed_records = load_seeds([write_seeds(tmp_path / "s.jsonl", SEEDS_ZH)], "zh")
    a, b = EvolInstructRecipe(seed_records, "zh"), EvolInstructRecipe(seed_records, "zh")
    assert a.order() == b.order() and sorted(a.order()) == [0, 1, 2, 3]
    orders = set()
    for seed in range(8):
        r = EvolInstructRecipe(seed_records, "zh")
        r.random_seed = seed
        orders.add(tuple(r.order()))
    assert len(orders) > 1
    first = [a.request_for_unit(n, random.Random(n), []) for n in range(4)]
    assert [q.carry["parent"]["instruction"] for q in first] == [a.parents[i].instruction for i in a.order()]
    assert a.request_for_unit(4, random.Random(4), []) is None
    assert all(q.kind == "chat" and q.stage == "evolve" and "#给定提示#：" in q.prompt for q in first)
    ops = {a.operation(p, r) for p in a.parents for r in (1, 2, 3)}
    assert ops <= set(OPERATIONS) and len(ops) > 1
    only = EvolInstructRecipe(seed_records, "zh", operations="mutation")
    assert {only.operation(p, 1) for p in only.parents} == {"mutation"}


# -- whole runs ---------------------------------------------------------------------------------

@pytest.fixture
def scripted():
    """A loopback server whose responder is set by the test (``server.responder = ScriptedTeacher``)."""
    with serve_in_thread(FakeOpenAI(latency=0.0)) as server:
        yield server


def test_english_run_counts_lineage_and_novelty(scripted, tmp_path, invoke_cli, read_json, read_jsonl):
    teacher = ScriptedTeacher("en", rewrites={
        HAIKU: ["good", "good", "good"],
        DETECTIVE: ["copy", "good", "good"],
        SODA: ["same", "good", "good"],
        GARBLED: ["garbled", "good", "truncated"],
        TIDES: ["good", "good", "near_seed"],
        CONVERT: ["table", "good", "good"],
    }, answers={SODA: ["refuse", "good"], GARBLED: ["punctuation"]})
    scripted.responder = teacher
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS_EN)
    source = write_from(tmp_path / "tasks.jsonl", FROM_TASKS)
    out = tmp_path / "out"
    r = generate(invoke_cli, scripted, out, "--seeds", seeds, "--from", source, "--rounds", "3",
                 "--num", "50", "--concurrency", "4")
    assert r.exit_code == 0, r.stderr

    summary = read_json(out / "summary.json")
    reason = f"all 6 records of {source} were evolved, up to 3 rounds each"
    assert summary["stopped"] == f"exhausted: {reason}"
    assert reason in r.stdout
    records = read_jsonl(out / "records.jsonl")
    rejects = read_jsonl(out / "rejects.jsonl")
    assert len(records) == 11 and len(read_json(out / "data.json")) == 11
    assert rejects_by_reason(rejects) == {"evol_copied_prompt": 1, "evol_no_gain": 1, "evol_answer_failed": 2,
                                          "unparseable": 1, "truncated": 1, "rouge_too_similar": 1}
    # 6 tasks x 3 rounds: one decision each; no parent is ever written
    assert len(records) + len(rejects) == 18
    assert not {rec["instruction"] for rec in records} & {t for t, _ in FROM_TASKS}

    by_root: dict[str, list[dict]] = {}
    for rec in records:
        root = rec["meta"]["lineage"]["ancestors"][0]
        by_root.setdefault(root, []).append(rec)
    assert {root: len(v) for root, v in by_root.items()} == {HAIKU: 3, DETECTIVE: 2, SODA: 1, TIDES: 2, CONVERT: 3}

    # The haiku's line: each round evolves the one before, and the lineage says so.
    line = sorted(by_root[HAIKU], key=lambda rec: rec["meta"]["lineage"]["round"])
    assert [rec["instruction"] for rec in line] == [
        HAIKU + " " + CLAUSES[HAIKU][0], HAIKU + " " + " ".join(CLAUSES[HAIKU][:2]),
        HAIKU + " " + " ".join(CLAUSES[HAIKU])]
    lineage = [rec["meta"]["lineage"] for rec in line]
    assert lineage[0]["parent"] == f"{source}:1"
    assert [lin["parent"] for lin in lineage[1:]] == [rec["request_id"] for rec in line[:2]]
    assert [lin["round"] for lin in lineage] == [1, 2, 3]
    assert lineage[2]["ancestors"] == [HAIKU, line[0]["instruction"], line[1]["instruction"]]
    # kept although each is close to its parent: ROUGE-L novelty leaves a record's ancestors out
    for rec, parent in zip(line[1:], line[:2]):
        assert rouge_l(rec["instruction"], parent["instruction"]) > 0.7
        assert rec["most_similar"] not in lineage[2]["ancestors"]

    # The operation in each record's lineage is the one its rewrite request asked for.
    asked = {(inst, op) for inst, _, op in teacher.asked}
    for rec in records:
        lin = rec["meta"]["lineage"]
        assert lin["operation"] in OPERATIONS
        assert (lin["ancestors"][-1], lin["operation"]) in asked

    # A rejected evolution leaves the parent as it was: the next round evolves the root again.
    detective = sorted(by_root[DETECTIVE], key=lambda rec: rec["meta"]["lineage"]["round"])
    assert [rec["meta"]["lineage"]["round"] for rec in detective] == [2, 3]
    assert detective[0]["meta"]["lineage"]["ancestors"] == [DETECTIVE]
    assert detective[0]["meta"]["lineage"]["parent"] == f"{source}:2"
    assert [rec["meta"]["lineage"]["round"] for rec in by_root[SODA]] == [3]
    assert by_root[SODA][0]["instruction"] == SODA + " " + CLAUSES[SODA][0]

    # The rewrite with an input: the table is the record's input and goes on to the next round.
    convert = sorted(by_root[CONVERT], key=lambda rec: rec["meta"]["lineage"]["round"])
    assert [(rec["instruction"], rec["input"]) for rec in convert[:2]] == [
        (CONVERT_TABLE, TABLE), (CONVERT_TABLE + " " + CLAUSES[CONVERT][0], TABLE)]
    assert (CONVERT, "25 degrees Celsius") in {(i, inp) for i, inp, _ in teacher.asked}
    assert (CONVERT_TABLE, TABLE) in {(i, inp) for i, inp, _ in teacher.asked}

    # A near-copy of an unrelated pool task (a seed) is rejected although its ancestors are left out.
    near = next(row for row in rejects if row["reason"] == "rouge_too_similar")
    assert near["record"]["instruction"] == NEAR_SEED
    tides = sorted(by_root[TIDES], key=lambda rec: rec["meta"]["lineage"]["round"])
    near_lineage = near["record"]["meta"]["lineage"]
    assert near_lineage["round"] == 3 and near_lineage["parent"] == tides[1]["request_id"]
    assert near_lineage["ancestors"] == [TIDES, tides[0]["instruction"], tides[1]["instruction"]]
    assert SEEDS_EN[0][1] in near["detail"]

    details = {row["reason"]: row for row in rejects if row["reason"] != "evol_answer_failed"}
    assert "#Given Prompt#" in details["evol_copied_prompt"]["detail"]
    assert details["evol_no_gain"]["record"]["instruction"] == SODA
    assert details["truncated"]["record"]["meta"]["truncated"] is True
    failed = sorted(row["detail"] for row in rejects if row["reason"] == "evol_answer_failed")
    assert failed[0].startswith("a short apology ('sorry'") and "punctuation and stop words" in failed[1]

    # Filtering the run's records again keeps every one: each is compared with the others except its
    # own ancestors, as in the run; the near-copy of the seed is caught again against the seeds.
    refiltered = invoke_cli("filter", out / "records.jsonl", "--out", tmp_path / "f", "--no-report")
    assert refiltered.exit_code == 0, refiltered.stderr
    assert len(read_jsonl(tmp_path / "f" / "records.jsonl")) == 11
    merged = tmp_path / "merged.jsonl"
    merged.write_text((out / "records.jsonl").read_text(encoding="utf-8")
                      + json.dumps(near["record"], ensure_ascii=False) + "\n", encoding="utf-8")
    again = invoke_cli("filter", merged, "--against", seeds, "--out", tmp_path / "g", "--no-report")
    assert again.exit_code == 0, again.stderr
    assert [row["reason"] for row in read_jsonl(tmp_path / "g" / "rejects.jsonl")] == ["rouge_too_similar"]

    # Requests: one rewrite per round (18), one answer per rewrite that passed the rules (14), every
    # one through the chat endpoint; answers carry the English system turn.
    assert len(teacher.asked) == 18 and len(teacher.answered) == 14
    assert {req.path for req in scripted.requests} == {"/v1/chat/completions"}
    assert {system for system, _ in teacher.answered} == {PROMPTS["en"]["answer_system"]}
    assert summary["requests_per_stage"]["evolve"]["paid"] == 18
    assert summary["requests_per_stage"]["answer"]["paid"] == 14


def test_chinese_run_over_the_seeds(scripted, tmp_path, invoke_cli, read_json, read_jsonl):
    z1, z2, z3, z4 = (inst for _, inst, _ in SEEDS_ZH)
    teacher = ScriptedTeacher("zh", rewrites={z1: ["good", "good"], z2: ["copy", "good"], z3: ["good", "good"],
                                              z4: ["same", "good"]},
                              answers={z3: ["good", "refuse_zh"]})
    scripted.responder = teacher
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS_ZH)
    out = tmp_path / "out"
    r = generate(invoke_cli, scripted, out, "--lang", "zh", "--seeds", seeds, "--rounds", "2", "--num", "20")
    assert r.exit_code == 0, r.stderr
    summary = read_json(out / "summary.json")
    assert summary["stopped"] == "exhausted: all 4 seed tasks were evolved, up to 2 rounds each"
    records, rejects = read_jsonl(out / "records.jsonl"), read_jsonl(out / "rejects.jsonl")
    assert len(records) == 5
    assert rejects_by_reason(rejects) == {"evol_copied_prompt": 1, "evol_answer_failed": 1, "evol_no_gain": 1}
    assert all(rec["lang"] == "zh" for rec in records)
    # the seed's own line: round 1 is close to its seed (in the pool) and kept all the same
    line = sorted((rec for rec in records if rec["meta"]["lineage"]["ancestors"][0] == z1),
                  key=lambda rec: rec["meta"]["lineage"]["round"])
    assert [rec["instruction"] for rec in line] == [z1 + CLAUSES[z1][0], z1 + "".join(CLAUSES[z1])]
    assert rouge_l(line[0]["instruction"], z1) > 0.7
    assert line[0]["meta"]["lineage"]["parent"] == "z1"          # the seed record's id
    lineage = line[1]["meta"]["lineage"]
    assert (lineage["parent"], lineage["round"], lineage["ancestors"]) == (line[0]["request_id"], 2,
                                                                           [z1, line[0]["instruction"]])
    # the seed input travels with its task
    z2_line = [rec for rec in records if rec["meta"]["lineage"]["ancestors"][0] == z2]
    assert [(rec["instruction"], rec["input"]) for rec in z2_line] == [(z2 + CLAUSES[z2][0], SEEDS_ZH[1][2])]
    # Chinese operator prompts and a Chinese system turn for the answers
    assert all(op in OPERATIONS for _, _, op in teacher.asked) and len(teacher.asked) == 8
    assert {system for system, _ in teacher.answered} == {PROMPTS["zh"]["answer_system"]}
    assert "抱歉" in next(row["detail"] for row in rejects if row["reason"] == "evol_answer_failed")


def test_rounds_bound_the_depth_and_topics_go_in_the_prompt_and_meta(scripted, tmp_path, invoke_cli, read_json,
                                                                      read_jsonl):
    teacher = ScriptedTeacher("en", rewrites={}, answers={})
    scripted.responder = teacher
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS_EN)
    source = write_from(tmp_path / "tasks.jsonl", FROM_TASKS[:4])
    topics = tmp_path / "topics.txt"
    topics.write_text("# two topics\nmarine biology\nmedieval history\n", encoding="utf-8")
    out = tmp_path / "out"
    r = generate(invoke_cli, scripted, out, "--seeds", seeds, "--from", source, "--rounds", "1", "--num", "9",
                 "--topics", topics)
    assert r.exit_code == 0, r.stderr
    assert read_json(out / "summary.json")["stopped"] == (f"exhausted: all 4 records of {source} were evolved, "
                                                          "up to 1 round each")
    records = read_jsonl(out / "records.jsonl")
    assert len(records) == 4 and len(teacher.asked) == 4
    assert {rec["meta"]["lineage"]["round"] for rec in records} == {1}
    rewrites = [turns(req.json)[1] for req in scripted.requests if given_task(turns(req.json)[1])]
    for rec in records:
        topic = rec["meta"]["topic"]
        assert topic in ("marine biology", "medieval history")
        parent = rec["meta"]["lineage"]["ancestors"][0]
        prompt = next(p for p in rewrites if given_task(p)[0] == parent)
        assert f"The task should be about {topic}." in prompt


def test_a_failed_rewrite_is_a_teacher_failed_reject_and_its_parent_evolves_again(scripted, tmp_path, invoke_cli,
                                                                                  read_jsonl):
    teacher = ScriptedTeacher("en", rewrites={HAIKU: ["server_error", "good"], SODA: ["good", "good"]}, answers={})
    scripted.responder = teacher
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS_EN)
    source = write_from(tmp_path / "tasks.jsonl", [(HAIKU, ""), (SODA, "")])
    out = tmp_path / "out"
    r = generate(invoke_cli, scripted, out, "--seeds", seeds, "--from", source, "--rounds", "2", "--num", "9",
                 "--opt", "openai.max_attempts=1")
    assert r.exit_code == 0, r.stderr
    rejects = read_jsonl(out / "rejects.jsonl")
    assert [(row["reason"], row["record"]["meta"]["lineage"]["round"]) for row in rejects] == [
        ("teacher_failed", 1)]
    assert "http 503" in rejects[0]["detail"]
    records = read_jsonl(out / "records.jsonl")
    haiku = [rec for rec in records if rec["meta"]["lineage"]["ancestors"][0] == HAIKU]
    lineages = [(rec["instruction"], rec["meta"]["lineage"]["round"], rec["meta"]["lineage"]["ancestors"])
                for rec in haiku]
    assert lineages == [(HAIKU + " " + CLAUSES[HAIKU][0], 2, [HAIKU])]
    assert len(records) == 3


def test_a_flag_of_another_recipe_and_a_missing_from_file_are_one_line_errors(scripted, tmp_path, invoke_cli,
                                                                             error_line):
    r = generate(invoke_cli, scripted, tmp_path / "a", "--num", "3", "--documents", tmp_path)
    assert "--documents does not apply to --recipe evol-instruct" in error_line(r)
    r = generate(invoke_cli, scripted, tmp_path / "b", "--num", "3", "--from", tmp_path / "nope.jsonl")
    assert "nope.jsonl: no such file" in error_line(r)
    assert scripted.count == 0


# -- SIGKILL in mid-run, then resume -----------------------------------------------------------

WORDS = ("amber", "basalt", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper", "kelp",
         "lagoon", "meadow", "nectar", "obsidian", "prairie", "quartz", "reef", "saffron", "tundra", "umber",
         "violet", "willow", "xenon", "yarrow", "zephyr", "atlas", "beacon", "canyon", "dune", "estuary",
         "falcon", "glacier", "heron", "island", "jasper", "kestrel", "lichen", "mesa", "nebula", "orchid",
         "pebble", "quill", "raven", "sequoia", "thistle", "upland", "valley", "walrus", "yucca")


def words_of(text: str, k: int) -> list[str]:
    digest = sum(ord(c) * (i + 1) for i, c in enumerate(text))
    rng = random.Random(digest)
    return rng.sample(WORDS, k)


def stateless(latency: float):
    """A responder whose reply is a good rewrite (the given task plus words drawn from its text) or a
    good answer: a function of the request alone, so that a request sent again gets the same reply."""
    def reply(body, n):
        system, user = turns(body)
        given = given_task(user)
        if given is None:
            return ok(f"Consider {' and '.join(words_of(user, 3))}: each matters, and together they answer "
                      "it well.", latency=latency)
        inst, _ = given
        return ok(f"#Rewritten Prompt#:\n{inst} Mention {', '.join(words_of(inst, 3))}.", latency=latency)
    return reply


def many_tasks(k: int) -> list[tuple[str, str]]:
    return [(f"Describe {' '.join(words_of(str(i), 6))} in a short paragraph.", "") for i in range(k)]


def test_a_rerun_into_a_new_folder_is_served_by_the_cache(tmp_path, invoke_cli, read_json):
    source = write_from(tmp_path / "tasks.jsonl", many_tasks(12))
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS_EN)
    with serve_in_thread(FakeOpenAI(responder=stateless(0.0))) as server:
        args = ("--from", source, "--seeds", seeds, "--num", "20", "--concurrency", "4")
        a = generate(invoke_cli, server, tmp_path / "a", *args, cache=True)
        assert a.exit_code == 0, a.stderr
        paid = server.count
        b = generate(invoke_cli, server, tmp_path / "b", *args, cache=True)
        assert b.exit_code == 0, b.stderr
        assert server.count == paid                     # every rewrite and answer came from the cache
    # the same decisions in the same order, whatever the timing: the cache answers at once
    data = read_json(tmp_path / "a" / "data.json")
    assert len(data) == 20 and data == read_json(tmp_path / "b" / "data.json")


@pytest.mark.slow
def test_sigkill_in_mid_run_then_resume_ends_with_exactly_num_and_sends_no_journaled_request(tmp_path, read_json,
                                                                                              read_jsonl):
    n = 150
    source = write_from(tmp_path / "tasks.jsonl", many_tasks(150))
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS_EN)
    out = str(tmp_path / "o")
    with serve_in_thread(FakeOpenAI(responder=stateless(0.1))) as server:
        cmd = [sys.executable, "cli.py", "generate", "--teacher", "openai", "--base-url", server.url,
               "--model", "fake-model", "--out", out, "--no-progress", "--no-report", "--no-cache",
               "--recipe", "evol-instruct", "--from", source, "--seeds", seeds, "--num", str(n),
               "--concurrency", "4"]
        runs = kill_and_resume(cmd, out, {**os.environ, "OPENAI_API_KEY": "sk-test"}, seed=11, num=n)
        sent = [(q.t, request_key(q.json)) for q in server.requests]

    data = read_json(os.path.join(out, "data.json"))
    assert len(data) == n and len({d["instruction"] for d in data}) == n
    assert [d["instruction"] for d in data][: len(runs.seen)] == runs.seen
    assert read_json(os.path.join(out, "summary.json"))["stopped"] == "done"
    records = read_jsonl(os.path.join(out, "records.jsonl"))
    assert all(rec["meta"]["lineage"]["round"] in (1, 2, 3) for rec in records)
    assert_nothing_journaled_was_sent_again(runs, out, sent)
    assert sum(t > runs.journaled_by[-1][0] for t, _ in sent) > 0
