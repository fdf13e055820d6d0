"""The filter chain on conversations: the first exchange meets every filter (novelty on the first
user turn), each later exchange the per-turn rules; a reject names the turn. Good human-written
conversations, English and Chinese, pass whole."""
from __future__ import annotations

import pytest

from selfinstruct.filters import build_chain
from selfinstruct.filters.base import FOLLOW_UP_EXEMPT, Filter, FilterChain, exchanges, judges_each_turn
from selfinstruct.filters.registry import select
from selfinstruct.record import Record


def chain(lang: str) -> FilterChain:
    """The chain ``selfinstruct filter`` runs by default (no judge: it needs a teacher)."""
    return build_chain(select(skip=["judge"]), {"lang": lang, "rouge_threshold": 0.7, "rules": "default"})


def conversation(*turns: str, system: str = "") -> list[dict[str, str]]:
    roles = ["user", "assistant"] * len(turns)
    head = [{"role": "system", "content": system}] if system else []
    return head + [{"role": role, "content": text} for role, text in zip(roles, turns)]


EN_GOOD = [
    conversation("How do I make a simple tomato sauce for pasta?",
                 "Soften a chopped onion and two cloves of garlic in olive oil, add a tin of crushed tomatoes, "
                 "season with salt and simmer for twenty minutes, then stir in torn basil.",
                 "Why?",        # a follow-up that leans on the turn before it
                 "Simmering cooks off the raw taste of the tinned tomatoes and thickens the sauce, so it clings "
                 "to the pasta instead of pooling on the plate.",
                 "And if I have no basil?",
                 "Dried oregano works well: add a teaspoon with the tomatoes so it has time to soften.",
                 system="You are a friendly cooking assistant."),
    conversation("Summarise the causes of the French Revolution in three sentences.",
                 "France was nearly bankrupt after costly wars, and the burden of taxes fell on commoners. "
                 "Enlightenment ideas questioned the privileges of the nobility and the church. A poor harvest "
                 "in 1788 drove bread prices up and turned discontent into revolt.",
                 "Now explain it to a ten-year-old.",
                 "A long time ago, the king of France spent too much money, and ordinary people had to pay for "
                 "it while the rich paid little. When bread became very expensive, people got angry and decided "
                 "to change who made the rules."),
    conversation("Write a Python function that returns the factorial of n.",
                 "def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result",
                 "Make it recursive.",
                 "def factorial(n):\n    return 1 if n < 2 else n * factorial(n - 1)"),
]
ZH_GOOD = [
    conversation("怎样做一碗简单的番茄鸡蛋面？",
                 "先把番茄切块炒出汁，加水煮开后下面条，面快熟时淋入打散的鸡蛋，最后加盐和葱花调味。",
                 "为什么？",
                 "先炒番茄能让汤更浓、颜色更红，鸡蛋最后放才能保持嫩滑。",
                 "没有葱怎么办？",
                 "可以撒一点香菜或者直接不放，味道不会差太多。"),
    conversation("请用三句话概括《西游记》的主要内容。",
                 "唐僧奉命前往西天取经，途中收了孙悟空、猪八戒和沙僧三个徒弟。师徒四人一路上降妖除魔，经历了九九八十一难。"
                 "最终他们到达西天，取得真经，修成正果。",
                 "再讲得简单一点，给小学生听。",
                 "有一个和尚要去很远的地方拿经书，他带着一只猴子、一头猪和一个大个子一起走。路上有很多妖怪，猴子最厉害，"
                 "每次都把妖怪打跑。最后他们成功拿到了经书。"),
]


@pytest.mark.parametrize("lang, messages", [("en", m) for m in EN_GOOD] + [("zh", m) for m in ZH_GOOD])
def test_good_human_written_conversations_pass_every_turn(lang, messages):
    c = chain(lang)
    rec = Record.from_messages(messages, lang=lang)
    assert c.check(rec) is None
    assert c.tally.rejected == {}


def test_the_conversations_run_together_and_all_are_kept():
    records = [Record.from_messages(m) for m in EN_GOOD]
    assert len(list(chain("en").run(records))) == len(EN_GOOD)


@pytest.mark.parametrize("lang, bad_reply, reason", [
    ("en", "As an AI language model, I cannot share opinions about sauces.", "refusal"),
    ("en", "", "empty_output"),
    ("en", "Visit https://example.com/sauce for the answer.", "contains_url"),
    ("zh", "抱歉，我无法回答这个问题。", "refusal"),
    ("zh", "Simmering removes the raw taste of the tomatoes and makes the sauce thicker.", "language_mismatch"),
])
def test_a_bad_second_assistant_turn_is_rejected_and_named(lang, bad_reply, reason):
    good = EN_GOOD[0] if lang == "en" else ZH_GOOD[0]
    turns = [m for m in good if m["role"] != "system"]
    turns[3] = {"role": "assistant", "content": bad_reply}
    rejected = []
    c = build_chain(select(skip=["judge"]), {"lang": lang, "rouge_threshold": 0.7, "rules": "default"})
    c.on_reject = lambda rec, v: rejected.append(v)
    verdict = c.check(Record.from_messages(turns, lang=lang))
    assert verdict is not None and verdict.reason == reason
    assert verdict.detail.startswith("turn 2")
    assert rejected == [verdict] and c.tally.rejected == {reason: 1}


def test_a_bad_later_user_turn_is_rejected_but_a_short_follow_up_is_not():
    base = [m for m in EN_GOOD[0] if m["role"] != "system"]
    cases = {
        "": "empty_turn",
        "   ": "empty_turn",
        "Draw a picture of the finished sauce for me.": "blacklist_word",
        "Sure! Here is the next question:": "chatter",
        " ".join(["word"] * 200) + "?": "too_long",
    }
    for user, reason in cases.items():
        turns = base[:2] + [{"role": "user", "content": user}] + base[3:]
        verdict = chain("en").check(Record.from_messages(turns))
        assert verdict is not None and verdict.reason == reason, (user, verdict)
        assert verdict.detail.startswith("turn 2"), verdict
    # a third-turn problem names turn 3
    turns = base[:5] + [{"role": "assistant", "content": "As an AI language model, I have no kitchen to check."}]
    verdict = chain("en").check(Record.from_messages(turns))
    assert verdict.reason == "refusal" and verdict.detail.startswith("turn 3:")
    # the same words as a first turn are too short / a fragment: the exemption is for follow-ups only
    for follow_up, reason in (("Why?", "too_short"), ("and what about the salt?", "bad_start")):
        verdict = chain("en").check(Record.from_messages([{"role": "user", "content": follow_up}] + base[1:]))
        assert verdict is not None and verdict.reason == reason
        turns = base[:2] + [{"role": "user", "content": follow_up}] + base[3:]
        assert chain("en").check(Record.from_messages(turns)) is None
    zh = [m for m in ZH_GOOD[0] if m["role"] != "system"]
    turns = zh[:2] + [{"role": "user", "content": "并且要加盐吗？"}] + zh[3:]
    assert chain("zh").check(Record.from_messages(turns, lang="zh")) is None


def test_the_exempt_reasons_are_ones_a_follow_up_earns():
    # "Summarise the following article." points at material a first turn does not carry; a
    # follow-up's material is the conversation
    base = [m for m in EN_GOOD[1] if m["role"] != "system"]
    follow = base[:2] + [{"role": "user", "content": "Summarise the following passage in one line."},
                         {"role": "assistant", "content": "Debt, new ideas and hunger brought the old order down."}]
    assert chain("en").check(Record.from_messages(follow)) is None
    verdict = chain("en").check(Record.from_messages(follow[2:]))
    assert verdict is not None and verdict.reason == "missing_material"
    assert {"too_short", "bad_start", "missing_material"} == FOLLOW_UP_EXEMPT


def test_novelty_is_about_the_first_user_turn_only():
    c = chain("en")
    a = Record.from_messages(EN_GOOD[0])
    assert c.check(a) is None
    # the same first turn again: a duplicate, whatever follows
    other_follow_up = [m for m in EN_GOOD[0] if m["role"] != "system"][:2] + [
        {"role": "user", "content": "Can I freeze it?"},
        {"role": "assistant", "content": "Yes, it keeps for three months in a sealed container."}]
    verdict = c.check(Record.from_messages(other_follow_up))
    assert verdict is not None and verdict.reason == "exact_duplicate"
    # a new task whose later turns repeat an earlier conversation's later turns is not a duplicate
    copied_tail = [{"role": "user", "content": "How should I store fresh basil so it lasts a week?"},
                   {"role": "assistant", "content": "Keep the stems in a glass of water on the counter, loosely "
                                                    "covered with a bag, and change the water every two days."}]
    copied_tail += [m for m in EN_GOOD[0] if m["role"] != "system"][2:]
    assert c.check(Record.from_messages(copied_tail)) is None


def test_a_rejected_later_turn_is_not_remembered():
    c = chain("en")
    turns = [m for m in EN_GOOD[2]]
    turns[3] = {"role": "assistant", "content": ""}
    assert c.check(Record.from_messages(turns)).reason == "empty_output"
    assert c.check(Record.from_messages(EN_GOOD[2])) is None      # not a duplicate of the rejected one


def test_turns_cut_at_the_token_limit_are_rejected_by_turn():
    rec = Record.from_messages(EN_GOOD[0], meta={"truncated_turns": [3]})
    verdict = chain("en").check(rec)
    assert verdict.reason == "truncated" and verdict.detail.startswith("turn 3:")


def test_exchanges_pair_each_reply_with_the_user_turn_before_it():
    assert exchanges(conversation("a", "b", "c", "d", system="s")) == [("a", "b"), ("c", "d")]
    assert exchanges([{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                      {"role": "assistant", "content": "c"}]) == [("a", ""), ("b", "c")]
    assert exchanges([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                      {"role": "user", "content": "c"}]) == [("a", "b"), ("c", "")]
    assert exchanges([{"role": "assistant", "content": "hi"}]) == [("", "hi")]


def test_which_filters_judge_every_turn():
    c = chain("en")
    every = {f.name for f in c.turn_filters}
    assert {"exact", "rouge"}.isdisjoint(every)          # novelty: the first user turn only
    assert {"length", "refusal", "empty_output", "chatter", "lang", "truncated"} <= every

    class Remembers(Filter):
        name = "remembers"

        def check(self, record):
            return None

        def add(self, record):
            pass

    class Declares(Remembers):
        per_turn = True

    assert not judges_each_turn(Remembers()) and judges_each_turn(Declares())


def test_single_turn_records_are_judged_as_before():
    c = chain("en")
    rec = Record("Name three rivers in Europe.", output="The Danube, the Rhine and the Loire.")
    assert c.check(rec) is None
    assert c.judge_turns(rec) is None and c.check_turns(rec) is None


def test_selfinstruct_filter_applies_the_per_turn_rules_to_a_messages_file(invoke_cli, tmp_path, write_jsonl,
                                                                          read_jsonl):
    bad = [m for m in EN_GOOD[1] if m["role"] != "system"]
    bad[3] = {"role": "assistant", "content": "As an AI language model, I cannot explain it to a child."}
    bad[0] = {"role": "user", "content": "Which three inventions changed farming most in the last century?"}
    path = write_jsonl(tmp_path / "chats.jsonl", [{"messages": m} for m in EN_GOOD + [bad] + ZH_GOOD])
    r = invoke_cli("filter", "--no-progress", "--no-report", path, "--out", tmp_path / "o", "--format", "messages",
                   "--lang", "auto")
    assert r.exit_code == 0, r.output + r.stderr
    kept = read_jsonl(tmp_path / "o" / "records.jsonl")
    assert [rec["messages"] for rec in kept] == EN_GOOD + ZH_GOOD
    rejects = read_jsonl(tmp_path / "o" / "rejects.jsonl")
    assert [(x["reason"], x["detail"][:7]) for x in rejects] == [("refusal", "turn 2:")]
