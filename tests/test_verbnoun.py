"""``selfinstruct.report.verbnoun``: the leading verb and object noun of an instruction.

The regression guard is agreement with 100 hand-labelled instructions per language
(``tests/data/verbnoun_en.tsv``, ``verbnoun_zh.tsv``, written for this project): at least 90% of
(verb, noun) pairs must match. Explicit cases pin the rules (wrappers, questions, clausal objects,
Chinese 把/将 objects and 的 heads); ``top_pairs`` is checked on a small list counted by hand.
Needs the ``report`` extra (lemminflect, jieba).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfinstruct.errors import UsageError
from selfinstruct.report import verbnoun
from selfinstruct.report.verbnoun import top_pairs, verb_noun

pytestmark = pytest.mark.report

DATA = Path(__file__).parent / "data"


def load_labels(lang: str) -> list[tuple[str, str | None, str | None]]:
    rows = []
    for line in (DATA / f"verbnoun_{lang}.tsv").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        instruction, verb, noun = line.split("\t")
        rows.append((instruction, None if verb == "-" else verb, None if noun == "-" else noun))
    return rows


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_agrees_with_hand_labels(lang):
    rows = load_labels(lang)
    assert len(rows) == 100
    misses = [(text, (verb, noun), verb_noun(text, lang)) for text, verb, noun in rows
              if verb_noun(text, lang) != (verb, noun)]
    verb_misses = [m for m in misses if m[1][0] != m[2][0]]
    assert len(misses) <= 10, misses  # pairs agree on >= 90%
    assert len(verb_misses) <= 5, verb_misses


@pytest.mark.parametrize("text, expected", [
    ("Write a short poem about the sea.", ("write", "poem")),
    ("Writes three poems about winter.", ("write", "poem")),
    ("Explain why the sky is blue.", ("explain", None)),
    ("What is the capital of France?", (None, None)),
    ("Is this sentence grammatical?", (None, None)),
    ("Can you write a poem about trees?", ("write", "poem")),
    ("Could you please summarize the article below?", ("summarize", "article")),
    ("I want you to draft a thank-you note.", ("draft", "note")),
    ("Help me plan a birthday party.", ("plan", "party")),
    ("Given a list of numbers, return the smallest number.", ("return", "number")),
    ("In this task, you need to label each review.", ("label", "review")),
    ("Give me three examples of mammals.", ("give", "example")),
    ("Tell me a story about two mice.", ("tell", "story")),
    ("List the mice in the picture.", ("list", "mouse")),
    ("Generate a list of fruits.", ("generate", "list")),
    ("Sort them in ascending order.", ("sort", None)),
    ("Check whether the number is even.", ("check", None)),
    ("Pretend you are a pirate.", ("pretend", None)),
    ("Come up with a name for a robot.", ("come", "name")),
    ("Turn down the invitation politely.", ("turn", "invitation")),
    ("Translate into Spanish: good night", ("translate", None)),
    ('Replace the "TODO" comment with code.', ("replace", "comment")),
    ("Compare apples and oranges.", ("compare", "apple")),
    ("Question: who painted the Mona Lisa?", (None, None)),
    ("Dependency parsing for the sentence.", (None, None)),
    ("Tokenize the following text.", ("tokenize", "text")),
])
def test_english_cases(text, expected):
    assert verb_noun(text, "en") == expected


@pytest.mark.parametrize("text, expected", [
    ("写一首关于春天的诗", ("写", "诗")),
    ("请你写一首诗", ("写", "诗")),
    ("你能帮我写一封感谢信吗？", ("写", "感谢信")),
    ("解释为什么天空是蓝色的。", ("解释", None)),
    ("中国的首都是哪里？", (None, None)),
    ("请问怎样才能学好数学？", (None, None)),
    ("请将下面的句子翻译成法语。", ("翻译", "句子")),
    ("把这段话翻译成英文。", ("翻译", "话")),
    ("把“早上好”翻译成日语。", ("翻译", None)),
    ("给定一个整数数组，找出其中最小的数。", ("找出", "数")),
    ("为一家面包店想一个名字。", ("想", "名字")),
    ("给我讲一个关于狗的笑话。", ("讲", "笑话")),
    ("给我一个可以表达惊讶的词语。", ("给", "词语")),
    ("根据这段对话，推断说话人的年龄。", ("推断", "年龄")),
    ("判断下面的句子是否通顺。", ("判断", None)),
    ("生成一个包含五个单词的列表。", ("生成", "列表")),
    ("礼貌地拒绝这次邀请。", ("拒绝", "邀请")),
    ("对下面的新闻进行分类。", ("进行", "分类")),
    ("写一条删除空行的SQL语句。", ("写", "语句")),
    ("总结这篇文章的主要观点。", ("总结", "观点")),
])
def test_chinese_cases(text, expected):
    assert verb_noun(text, "zh") == expected


@pytest.mark.parametrize("lang", ["fr", "", "EN", None])
def test_unknown_language_has_no_verb(lang):
    assert verb_noun("Write a poem.", lang) == (None, None)


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_instruction_has_no_verb(text):
    assert verb_noun(text, "en") == (None, None)
    assert verb_noun(text, "zh") == (None, None)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=40), lang=st.sampled_from(["en", "zh"]))
def test_any_text_gives_strings_or_none(text, lang):
    verb, noun = verb_noun(text, lang)
    assert verb is None or (isinstance(verb, str) and verb.strip() == verb and verb)
    assert noun is None or (isinstance(noun, str) and noun.strip() == noun and noun)
    assert verb is not None or noun is None  # a noun only ever comes with its verb


def test_only_the_first_sentence_counts():
    assert verb_noun("Read the passage. Then write a summary.", "en") == ("read", "passage")
    assert verb_noun("阅读这段文字。然后写一个总结。", "zh") == ("阅读", "文字")
    # the first sentence is a statement, so there is no leading verb
    assert verb_noun("I love cats. Write a poem about them.", "en") == (None, None)


def test_top_pairs_counts_ties_and_cuts():
    items = [
        ("Write a poem about cats.", "en"),
        ("Write a poem about dogs.", "en"),
        ("Write a story about a fox.", "en"),
        ("Write a letter to Santa.", "en"),
        ("Write a haiku.", "en"),
        ("Explain why ice floats.", "en"),      # verb, no noun: counts for "explain" only
        ("Explain how tides work.", "en"),
        ("Generate a list of colours.", "en"),
        ("Generate a title for the essay.", "en"),
        ("What is the time?", "en"),            # no verb: not counted at all
        ("写一首关于月亮的诗。", "zh"),
        ("写一首关于太阳的诗。", "zh"),
        ("Write a poem.", "de"),                # unknown language: not counted
    ]
    assert top_pairs(items, n_verbs=3, n_nouns=2) == [
        ("write", 5, [("poem", 2), ("haiku", 1)]),     # haiku < letter < story: alphabetical
        ("explain", 2, []),                            # explain == generate == 写 on 2: alphabetical
        ("generate", 2, [("list", 1), ("title", 1)]),
    ]
    everything = top_pairs(items)
    assert [verb for verb, _, _ in everything] == ["write", "explain", "generate", "写"]
    assert everything[0] == ("write", 5, [("poem", 2), ("haiku", 1), ("letter", 1), ("story", 1)])
    assert everything[3] == ("写", 2, [("诗", 2)])


def test_top_pairs_takes_any_iterable_and_empty_input():
    assert top_pairs(iter([("Write a poem.", "en")]), n_verbs=1, n_nouns=1) == [("write", 1, [("poem", 1)])]
    assert top_pairs([]) == []
    assert top_pairs([("Write a poem.", "en")], n_verbs=0) == []


def test_missing_dependency_is_a_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "lemminflect", None)  # makes "import lemminflect" fail
    verbnoun._lemminflect.cache_clear()
    verbnoun._en_pos.cache_clear()
    try:
        with pytest.raises(UsageError, match=r"selfinstruct\[report\]"):
            verb_noun("Write a poem.", "en")
    finally:
        verbnoun._lemminflect.cache_clear()
        verbnoun._en_pos.cache_clear()


def test_jieba_is_silent_and_caches_in_our_folder_with_two_processes_at_once(tmp_path):
    """First use in a fresh cache folder, by two processes at once: both answer, neither prints
    (jieba logs "Building prefix dict…" by default), and the cache lands in our folder."""
    script = textwrap.dedent("""
        from selfinstruct.report.verbnoun import verb_noun
        assert verb_noun("请写一首关于秋天的诗", "zh") == ("写", "诗")
    """)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert (out, err) == ("", "")
    caches = list((tmp_path / "cache" / "selfinstruct").glob("jieba-*/jieba.cache"))
    assert len(caches) == 1 and caches[0].stat().st_size > 1_000_000
    assert not any((tmp_path / "tmp").iterdir())  # nothing left in the temp folder
