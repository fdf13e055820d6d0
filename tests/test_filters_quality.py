"""The quality filters: one test per reason code (exact code and detail), English and Chinese, and
realistic Alpaca / BELLE records that every filter keeps."""
from __future__ import annotations

import pytest

from selfinstruct.filters.quality import (
    BadStart, Blacklist, Echo, EmptyOutput, InstructionLength, NoOutputMarker, Refusal, Truncated, Url,
)
from selfinstruct.filters.registry import REGISTRY
from selfinstruct.record import Record

QUALITY = (Truncated, InstructionLength, BadStart, Blacklist, Url, EmptyOutput, NoOutputMarker, Echo, Refusal)

GOOD_RECORDS = [
    Record("Give three tips for staying healthy.", "",
           "1. Eat a balanced diet and make sure to include plenty of fruits and vegetables.\n"
           "2. Exercise regularly to keep your body active and strong.\n"
           "3. Get enough sleep and maintain a consistent sleep schedule."),
    Record("Classify the following as a fruit or vegetable", "Carrot", "Vegetable"),
    Record("Rewrite the following sentence in the passive voice.", "The cat chased the mouse.",
           "The mouse was chased by the cat."),
    Record("Explain why the sky is blue.", "<noinput>",
           "Sunlight is scattered by the molecules in the air, and blue light is scattered the most."),
    Record("请给出三个保持健康的建议。", "",
           "1. 均衡饮食，多吃蔬菜和水果。\n2. 坚持锻炼，每周至少运动三次。\n3. 保证充足的睡眠。"),
    Record("请用Python写一个函数，计算斐波那契数列的第n项。", "",
           "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a"),
    Record("把下面的句子翻译成英文。", "我今天很高兴。", "I am very happy today."),
    Record("根据给定的词语写一首诗。", "夏天", "不但春妍夏亦佳，随缘花草是生涯。"),
]


def verdict(f, record: Record):
    v = f.check(record)
    return None if v is None else (v.reason, v.detail)


@pytest.mark.parametrize("record", GOOD_RECORDS, ids=lambda r: r.instruction[:20])
@pytest.mark.parametrize("cls", QUALITY, ids=lambda c: c.name)
def test_every_quality_filter_keeps_good_english_and_chinese_records(cls, record):
    assert verdict(cls(), record) is None


def test_instruction_only_filters_declare_the_instruction_field_alone():
    instruction_only = {name for name, cls in REGISTRY.items()
                        if cls.stage == "quality" and cls.fields == ("instruction",)}
    assert {"truncated", "length", "bad_start", "blacklist"} <= instruction_only
    assert "empty_output" not in instruction_only and "echo" not in instruction_only


def test_truncated_rejects_a_record_the_teacher_cut_off():
    record = Record("Write a story about a dragon.", meta={"truncated": True})
    assert verdict(Truncated(), record) == ("truncated", "the teacher stopped at its token limit")
    assert verdict(Truncated(), Record("Write a story about a dragon.")) is None


@pytest.mark.parametrize("instruction, expected", [
    ("Explain human behavior.", ("too_short", "3 words (min 4)")),
    ("写一首诗", ("too_short", "4 characters (min 5)")),
    ("", ("too_short", "0 words (min 4)")),
    (" ".join(["word"] * 151), ("too_long", "151 words (max 150)")),
    ("好" * 301, ("too_long", "301 characters (max 300)")),
])
def test_length_counts_words_in_english_and_characters_in_chinese(instruction, expected):
    assert verdict(InstructionLength(), Record(instruction)) == expected


def test_length_keeps_the_bounds_and_takes_thresholds_as_keywords():
    assert verdict(InstructionLength(), Record("Explain human behavior briefly.")) is None
    assert verdict(InstructionLength(), Record("写一首春诗")) is None
    assert verdict(InstructionLength(), Record(" ".join(["word"] * 150))) is None
    assert verdict(InstructionLength(min_words=3), Record("Explain human behavior.")) is None
    assert verdict(InstructionLength(max_chars=10), Record("请写一首关于春天的诗歌")) == \
        ("too_long", "11 characters (max 10)")


@pytest.mark.parametrize("instruction, first", [
    ("1. Write a poem about the sea.", "1"),
    ('"Hello" is a greeting; explain where it comes from.', '"'),
    ("- List three fruits.", "-"),
    ("，请写一首关于春天的诗。", "，"),
    ("【请写一首关于春天的诗】", "【"),
    ("😀 Write a story about a happy dog.", "😀"),
    ("３个保持健康的建议", "３"),
])
def test_bad_start_rejects_punctuation_digits_and_symbols(instruction, first):
    assert verdict(BadStart(), Record(instruction)) == ("bad_start", f"starts with '{first}'")


@pytest.mark.parametrize("instruction", [
    "  Write a poem about the sea.", "请写一首关于春天的诗。", "ひらがなで名前を書いてください。",
    "Écris un poème sur la mer.", "Напишите короткий рассказ.", "\ufeffWrite a poem about the sea.",
])
def test_bad_start_keeps_letters_of_any_script(instruction):
    assert verdict(BadStart(), Record(instruction)) is None


@pytest.mark.parametrize("instruction, detail", [
    ("Describe the image below in detail.", "contains 'image'"),
    ("Draw a picture of your house.", "contains 'draw'"),
    ("Describe the IMAGES in this set.", "contains 'images'"),
    ("What happens when you go  to the store?", "contains 'go to'"),
    ("请描述这个image的内容。", "contains 'image'"),
    ("Write a program to sort a list of numbers.", "starts with 'write a program'"),
    ("  write a program that prints hello.", "starts with 'write a program'"),
    ("请描述这张图片的内容。", "contains '图片'"),
    ("为这段视频写一个标题。", "contains '视频'"),
    ("绘制一个流程图说明注册过程。", "contains '绘制'"),
])
def test_blacklist_rejects_tasks_a_text_model_cannot_do(instruction, detail):
    assert verdict(Blacklist(), Record(instruction)) == ("blacklist_word", detail)


@pytest.mark.parametrize("instruction", [
    "Imagine you are a pirate and describe your ship.",
    "Update your profile summary for a job site.",
    "Explain how a mapping between two sets works.",
    "Write a poem about programming.",
    "请给出三个保持健康的建议。",
])
def test_blacklist_matches_whole_words_only(instruction):
    assert verdict(Blacklist(), Record(instruction)) is None


@pytest.mark.parametrize("record, url", [
    (Record("Summarize the article at https://example.com/news/1.", ""), "https://example.com/news/1"),
    (Record("Summarize the article.", "See http://example.org/a?b=1 for details"),
     "http://example.org/a?b=1"),
    (Record("请总结这篇文章。", "", "访问www.example.com获取更多信息。"), "www.example.com"),
])
def test_url_rejects_links_in_any_field(record, url):
    assert verdict(Url(), record) == ("contains_url", url)


@pytest.mark.parametrize("output", ["", "   \n\t"])
def test_empty_output_rejects_empty_and_whitespace(output):
    assert verdict(EmptyOutput(), Record("Give three tips for staying healthy.", "", output)) == \
        ("empty_output", "output is empty")


@pytest.mark.parametrize("output, marker", [
    ("<nooutput>", "<nooutput>"),
    ("This task needs a picture. <No Output>", "<No Output>"),
    ("N/A", "N/A"),
    (" n/a. ", "n/a"),
    ("<无输出>", "<无输出>"),
    ("无输出。", "无输出"),
])
def test_nooutput_marker_rejects_placeholder_outputs(output, marker):
    assert verdict(NoOutputMarker(), Record("Describe the scene.", "", output)) == ("nooutput_marker", marker)


def test_nooutput_marker_keeps_noinput_and_na_inside_a_sentence():
    assert verdict(NoOutputMarker(), Record("Name a color.", "<noinput>", "Blue")) is None
    record = Record("Fill in the form.", "", "Write N/A where a field does not apply.")
    assert verdict(NoOutputMarker(), record) is None


@pytest.mark.parametrize("record, expected", [
    (Record("Correct the grammar of this sentence.", "She go to school.", "she go to school"),
     ("output_echoes_input", "output repeats the input")),
    (Record("请纠正下面句子中的错误。", "你好，世界！", "你好,世界!"),
     ("output_echoes_input", "output repeats the input")),
    (Record("Give three tips for staying healthy.", "", "Give three tips for staying healthy"),
     ("output_echoes_instruction", "output repeats the instruction")),
    (Record("请给出三个保持健康的建议。", "", "请给出三个保持健康的建议"),
     ("output_echoes_instruction", "output repeats the instruction")),
])
def test_echo_rejects_outputs_that_repeat_the_input_or_instruction(record, expected):
    assert verdict(Echo(), record) == expected


def test_echo_keeps_punctuation_only_texts_and_real_answers():
    assert verdict(Echo(), Record("Reverse the punctuation.", "...", "!!!")) is None
    assert verdict(Echo(), Record("Correct the grammar.", "She go to school.", "She goes to school.")) is None


@pytest.mark.parametrize("record, phrase", [
    (Record("Tell me about your feelings.", "", "As an AI language model, I do not have feelings."),
     "As an AI language model"),
    (Record("What is your favorite food?", "", "As an AI, I don't eat food."), "As an AI"),
    (Record("Write a joke about cats.", "", "I'm sorry, but I cannot write jokes."),
     "I'm sorry, but I cannot"),
    (Record("Write an insult.", "", "I cannot fulfill this request."), "I cannot fulfill"),
    (Record("Explain how a language model works.", "", "It predicts the next word."), "language model"),
    (Record("Who are you?", "", "I am a chatbot developed by OpenAI."), "by OpenAI"),
    (Record("Describe what ChatGPT can do.", "", "Many things."), "ChatGPT"),
    (Record("Compare GPT-4 with earlier models.", "", "It is larger."), "GPT-4"),
    (Record("你有感情吗？", "", "作为一个AI，我没有个人感情。"), "作为一个AI"),
    (Record("你是谁？", "", "我是一个人工智能助手，可以回答问题。"), "我是一个人工智能助手"),
    (Record("你是谁？", "", "作为AI语言模型，我可以帮助你。"), "作为AI语言模型"),
    (Record("你喜欢吃什么？", "", "作为人工智能，我不需要吃东西。"), "作为人工智能"),
    (Record("解释什么是大语言模型。", "", "一种预测下一个词的模型。"), "语言模型"),
    (Record("写一个笑话。", "", "抱歉，我无法完成这个请求。"), "抱歉，我无法"),
    (Record("告诉我明天的股价。", "", "我无法回答这个问题。"), "我无法回答这个问题"),
])
def test_refusal_rejects_self_reference_and_refusals(record, phrase):
    assert verdict(Refusal(), record) == ("refusal", phrase)


@pytest.mark.parametrize("record", [
    Record("As an AI researcher, explain overfitting in one paragraph.", "", "Overfitting is ..."),
    Record("Describe Elon Musk in one sentence.", "", "He co-founded Neuralink and OpenAI."),
    Record("Summarize the article.", "OpenAI released GPT-4 and ChatGPT today.", "A new model was released."),
    Record("我最近总是失眠，我无法入睡怎么办？", "", "睡前避免使用手机，保持规律作息。"),
    Record("作为一个人工智能专家，请解释什么是过拟合。", "", "过拟合是指模型在训练集上表现很好，在测试集上表现差。"),
    Record("简要介绍机器学习。", "", "作为人工智能的核心技术，机器学习让计算机从数据中学习。"),
    Record("Set an aim for the week.", "", "Read one book."),
])
def test_refusal_keeps_ordinary_mentions(record):
    assert verdict(Refusal(), record) is None
