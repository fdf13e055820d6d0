"""The exact-duplicate filter and the language filter: exact reason codes and details, English and
Chinese."""
from __future__ import annotations

import pytest

from selfinstruct.errors import UsageError
from selfinstruct.filters.base import FilterChain
from selfinstruct.filters.exact import ExactDedup
from selfinstruct.filters.lang import LanguageMismatch
from selfinstruct.filters.quality import EmptyOutput
from selfinstruct.record import Record


def verdict(f, record: Record):
    v = f.check(record)
    return None if v is None else (v.reason, v.detail)


# --- exact ------------------------------------------------------------------------------------

def test_exact_rejects_a_normalised_copy_and_names_the_kept_record():
    f = ExactDedup()
    f.add(Record("Give three tips for staying healthy.", origin="alpaca.json:1"))
    copy = Record("  give THREE tips, for staying healthy ", origin="alpaca.json:7")
    assert verdict(f, copy) == ("exact_duplicate", "duplicate of alpaca.json:1")


def test_exact_folds_full_width_forms_in_chinese():
    f = ExactDedup()
    f.add(Record("列出3个保持健康的建议。", "ABC", origin="belle.json:2"))
    assert verdict(f, Record("列出３个保持健康的建议", "ＡＢＣ")) == ("exact_duplicate", "duplicate of belle.json:2")


def test_exact_keys_on_instruction_and_input_together():
    f = ExactDedup()
    f.add(Record("Classify the following as a fruit or vegetable", "Carrot", origin="a:1"))
    assert verdict(f, Record("Classify the following as a fruit or vegetable", "Apple")) is None
    f.add(Record("ab", "c", origin="a:2"))
    assert verdict(f, Record("a", "bc")) is None


def test_exact_points_at_the_first_kept_copy_and_check_alone_remembers_nothing():
    f = ExactDedup()
    first = Record("Name a color.", origin="seed")
    assert verdict(f, first) is None
    assert verdict(f, first) is None          # check() does not insert
    f.add(first)
    f.add(Record("Name a color!", origin="machine"))
    assert verdict(f, Record("name a color")) == ("exact_duplicate", "duplicate of seed")
    assert len(f) == 1


def test_exact_counts_kept_records_when_the_origin_is_empty():
    f = ExactDedup()
    f.add(Record("Name a color."))
    assert verdict(f, Record("Name a color.")) == ("exact_duplicate", "duplicate of kept record #1")


def test_exact_in_a_chain_remembers_only_what_the_whole_chain_kept():
    chain = FilterChain([ExactDedup(), EmptyOutput()])
    assert chain.check(Record("Name a color.", "", "", origin="f:1")).reason == "empty_output"
    assert chain.check(Record("Name a color.", "", "Blue", origin="f:2")) is None
    again = chain.check(Record("Name a color.", "", "Red", origin="f:3"))
    assert (again.reason, again.detail) == ("exact_duplicate", "duplicate of f:2")


def test_exact_rehashes_a_record_edited_between_check_and_add():
    f = ExactDedup()
    record = Record("Name a color.", origin="f:1")
    f.check(record)
    record.instruction = "Name a fruit."
    f.add(record)
    assert verdict(f, Record("Name a fruit.")) == ("exact_duplicate", "duplicate of f:1")
    assert verdict(f, Record("Name a color.")) is None


# --- lang -------------------------------------------------------------------------------------

GOOD = [
    Record("Give three tips for staying healthy.", "", "1. Eat a balanced diet.\n2. Exercise regularly."),
    Record("Classify the following as a fruit or vegetable", "Carrot", "Vegetable"),
    Record("Write a Python function that adds two numbers.", "",
           'Here it is:\n```python\ndef add(a, b):\n    """\n    计算两个数的和并返回结果\n    """\n'
           "    return a + b\n```"),
]
GOOD_ZH = [
    Record("请给出三个保持健康的建议。", "", "1. 均衡饮食。\n2. 坚持锻炼。\n3. 保证充足的睡眠。"),
    Record("请用Python写一个函数，计算斐波那契数列的第n项。", "",
           "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a"),
    Record("请用Python写一个函数，计算两个数的和。", "",
           "以下是代码：\n```python\n# This function adds two numbers and returns their sum\n"
           "def add(a, b):\n    return a + b\n```"),
    Record("根据描述生成SQL语句。", "查询所有年龄大于30的用户",
           "SELECT\xa0name\xa0FROM\xa0users\xa0WHERE\xa0age\xa0>\xa030;"),
    Record("请纠正下面句子中的语法错误。", "She go to school every day.", "She goes to school every day."),
    Record("把下面的句子翻译成英文。", "我今天很高兴。", "I am very happy today."),
    Record("列出五种常见的编程语言。", "", "Python, Java, C++, JavaScript, Ruby"),
    Record("计算下列表达式的值。", "3 + 5 * 2", "13"),
]


@pytest.mark.parametrize("record", GOOD + GOOD_ZH, ids=lambda r: r.instruction[:20])
def test_lang_auto_keeps_records_whose_fields_agree_code_and_names_aside(record):
    assert verdict(LanguageMismatch(), record) is None


@pytest.mark.parametrize("record", GOOD, ids=lambda r: r.instruction[:20])
def test_lang_en_keeps_english_without_calling_langdetect(record):
    f = LanguageMismatch("en")
    f._detect = lambda text: pytest.fail(f"langdetect called on {text!r}")
    assert verdict(f, record) is None


@pytest.mark.parametrize("record", GOOD_ZH, ids=lambda r: r.instruction[:20])
def test_lang_zh_keeps_chinese_records(record):
    assert verdict(LanguageMismatch("zh"), record) is None


@pytest.mark.parametrize("record, detail", [
    (Record("请给出三个保持健康的建议。", "", "Eat a balanced diet, exercise regularly and sleep well."),
     "instruction is zh, output is en"),
    (Record("Give three tips for staying healthy.", "", "多吃蔬菜水果，每天坚持运动，保证充足的睡眠。"),
     "instruction is en, output is zh"),
    (Record("日本の首都はどこですか？", "", "The capital of Japan is Tokyo."), "instruction is ja, output is en"),
])
def test_lang_auto_rejects_an_output_in_another_language(record, detail):
    assert verdict(LanguageMismatch("auto"), record) == ("language_mismatch", detail)


def test_lang_auto_allows_translation_into_the_named_language():
    record = Record("Translate the following sentence into Chinese.", "I love you.", "我爱你。")
    assert verdict(LanguageMismatch("auto"), record) is None


@pytest.mark.parametrize("lang, record, detail", [
    ("en", Record("请给出三个保持健康的建议。", "", "均衡饮食。"), "expected en, got zh"),
    ("en", Record("Escribe un poema corto sobre el mar y las olas.", "", "El mar es azul."),
     "expected en, got es"),
    ("en", Record("Écrivez une courte histoire sur un chien dans le parc.", "", "Il était une fois."),
     "expected en, got fr"),
    ("zh", Record("Give three tips for staying healthy.", "", "Eat well."), "expected zh, got en"),
    ("zh", Record("日本の首都はどこですか？", "", "日本の首都は東京です。"), "expected zh, got ja"),
])
def test_lang_rejects_a_record_in_another_language_than_asked(lang, record, detail):
    assert verdict(LanguageMismatch(lang), record) == ("language_mismatch", detail)


def test_lang_seeds_langdetect_so_that_its_answers_repeat():
    LanguageMismatch("en").check(Record("Escribe un poema corto sobre el mar y las olas."))
    from langdetect import DetectorFactory
    assert DetectorFactory.seed == 0


def test_lang_en_passes_what_langdetect_is_unsure_of():
    # Reads as English from none of its words; langdetect's best guess is under the confidence bar.
    record = Record("Haiku: autumn leaves, quiet river", "", "Leaves fall.")
    assert verdict(LanguageMismatch("en"), record) is None


def test_lang_sets_an_empty_record_lang_and_keeps_a_given_one():
    zh, en, given = Record("请给出三个保持健康的建议。"), Record("Give three tips for staying healthy."), \
        Record("Give three tips for staying healthy.", lang="en-GB")
    for r in (zh, en, given):
        LanguageMismatch().check(r)
    assert (zh.lang, en.lang, given.lang) == ("zh", "en", "en-GB")
    es = Record("Escribe un poema corto sobre el mar y las olas.")
    LanguageMismatch("en").check(es)
    assert es.lang == "es"


def test_lang_refuses_an_unknown_language_setting():
    with pytest.raises(UsageError) as e:
        LanguageMismatch("klingon")
    assert str(e.value) == "unknown language 'klingon' (use one of: auto, en, zh)"
    assert LanguageMismatch("zh-CN").lang == "zh"


# --- lang: the instruction's own words -----------------------------------------------------------

@pytest.mark.parametrize("lang, record", [
    ("zh", Record('请把这句话翻译成中文："Knowledge grows when it is shared with the people around us."', "",
                  "知识在与身边的人分享时会增长。")),
    ("zh", Record("将“Practice makes perfect, and patience makes practice possible.”翻译成中文。", "", "熟能生巧，耐心让练习成为可能。")),
    ("zh", Record("翻译：The early bird catches the worm, but the second mouse gets the cheese.", "",
                  "早起的鸟儿有虫吃，但第二只老鼠才吃到奶酪。")),
    ("zh", Record("请纠正下面句子中的语法错误：She go to school by bus every morning.", "",
                  "She goes to school by bus every morning.")),
    ("zh", Record("“cactus”的复数形式是什么？", "", "cacti 或 cactuses。")),
    ("zh", Record("Excel能打开哪些文件格式？", "", "xlsx、xls、csv、txt等。")),
    ("zh", Record("提取下面网址中的域名。", "https://blog.example.com/post/1", "blog.example.com")),
    ("en", Record("What does “温故而知新” mean in plain words?", "", "Reviewing the old helps you learn the new.")),
    ("en", Record("Explain the proverb '三人行，必有我师' to a child.", "", "Everyone around you can teach you something.")),
    ("en", Record("Summarize the dialogue:\n甲：你明天来吗？\n乙：来，我一定准时到。", "", "The second speaker promises to come on time.")),
])
def test_lang_judges_the_instruction_on_its_own_words_not_its_material(lang, record):
    assert verdict(LanguageMismatch(lang), record) is None
    assert verdict(LanguageMismatch("auto"), record) is None


@pytest.mark.parametrize("lang, record, detail", [
    ("zh", Record('Translate "今天天气很好" into English.', "", "The weather is nice today."), "expected zh, got en"),
    ("en", Record("请把这句话翻译成英文：今天天气很好。", "", "The weather is nice today."), "expected en, got zh"),
    ("auto", Record("请总结下面这段话：The city opened a new library downtown last week.", "",
                    "市長は先週、新しい図書館を開きました。"), "instruction is zh, output is ja"),
])
def test_lang_still_rejects_an_instruction_in_another_language_whatever_it_quotes(lang, record, detail):
    assert verdict(LanguageMismatch(lang), record) == ("language_mismatch", detail)


@pytest.mark.parametrize("rules", ["self-instruct", "alpaca", "belle", "paper"])
def test_lang_has_no_rule_in_the_paper_sets(rules):
    record = Record("请给出三个保持健康的建议。", "", "Eat well and sleep well every single night.")
    assert verdict(LanguageMismatch("auto", rules=rules), record) is None
    assert verdict(LanguageMismatch("auto"), record) == ("language_mismatch", "instruction is zh, output is en")


def test_lang_refuses_an_unknown_rule_set():
    with pytest.raises(UsageError) as e:
        LanguageMismatch(rules="x")
    assert str(e.value) == "--rules must be one of default, paper, self-instruct, alpaca, belle, not 'x'"
