"""The default set's own rules: missing_material, broken_text, prompt_label, chatter. Each is tested
on what it must catch and on the human-written records of the same shape it must leave alone, in
English and Chinese."""
from __future__ import annotations

import pytest

from selfinstruct.filters.broken import BrokenText
from selfinstruct.filters.chatter import Chatter
from selfinstruct.filters.labels import PromptLabel
from selfinstruct.filters.material import MissingMaterial
from selfinstruct.record import Record


def verdict(f, record: Record):
    v = f.check(record)
    return None if v is None else (v.reason, v.detail)


# --- missing_material ----------------------------------------------------------------------------

@pytest.mark.parametrize("instruction, pointer", [
    ("Summarize the following article.", "the following article"),
    ("Translate this sentence into French.", "this sentence"),
    ("What is the main idea of the given passage?", "the given passage"),
    ("Find the largest number in the table below.", "table below"),
    ("Fix the bugs in this code snippet.", "this code"),
    ("Answer the following questions.", "the following questions"),
    ("请总结以下文章的主要内容。", "以下文章"),
    ("这段话表达了作者怎样的情感？", "这段话"),
    ("找出下面的表格中销量最高的产品。", "下面的表格"),
    ("请将给定的句子改写成被动句。", "给定的句子"),
    ("这首诗描写了什么季节？", "这首诗"),
])
def test_missing_material_rejects_a_pointer_with_nothing_to_point_at(instruction, pointer):
    assert verdict(MissingMaterial(), Record(instruction, "", "An answer.")) == \
        ("missing_material", f"points at '{pointer}'")


@pytest.mark.parametrize("record", [
    Record("Summarize the following article.", "The council voted to extend the bike lanes.", "More bike lanes."),
    Record("Translate this sentence into French: I would like a coffee.", "", "Je voudrais un café."),
    Record('Translate this sentence into French: "I would like a coffee."', "", "Je voudrais un café."),
    Record("Summarize the following dialogue.\nA: Are you coming?\nB: Yes, at eight.", "", "B will come at eight."),
    Record("The cat sat on the warm mat all afternoon. Rewrite this sentence in the passive voice.", "",
           "The warm mat was sat on by the cat all afternoon."),
    Record("Write a funny interview question. Why did you choose this question?", "", "What would your cat say?"),
    Record("Which of the following is a mammal: shark, whale, trout?", "", "Whale."),
    Record("Write a Python function that sorts a list in descending order.", "", "def f(x): return sorted(x)[::-1]"),
    Record("Given a list of numbers, return the second largest.", "", "Sort and take the second from the end."),
    Record("请总结以下文章：昨天，市政府宣布将扩建城市的自行车道网络。", "", "市政府将扩建自行车道。"),
    Record("这段话是什么意思？", "学而不思则罔，思而不学则殆。", "只学不思会迷惑，只思不学会危险。"),
    Record("阅读下面的对话，判断小李的态度。\n小王：一起去爬山吧？\n小李：好啊！", "", "积极。"),
    Record("以下哪个是哺乳动物：鲨鱼、鲸鱼、金枪鱼？", "", "鲸鱼。"),
    Record("“春眠不觉晓”这句诗出自哪首诗？", "", "孟浩然的《春晓》。"),
])
def test_missing_material_keeps_tasks_whose_material_is_there(record):
    assert verdict(MissingMaterial(), record) is None


# --- broken_text ---------------------------------------------------------------------------------

@pytest.mark.parametrize("record, detail", [
    (Record("Write a poem about the sea\ufffd"), "instruction holds U+FFFD"),
    (Record("请写一首关于大海的诗。", "", "大海\ufffd\ufffd蓝色的。"), "output holds U+FFFD"),
    (Record("Summarize the text.", "Some\x00text", "Text."), "input holds U+0000"),
    (Record("Name a colour.", "", "Blue\x1b[0m"), "output holds U+001B"),
    (Record("Name a colour.", "", "Blue\x85"), "output holds U+0085"),
])
def test_broken_text_rejects_replacement_and_control_characters(record, detail):
    assert verdict(BrokenText(), record) == ("broken_text", detail)


def test_broken_text_keeps_tabs_newlines_and_any_script():
    record = Record("Format the table.\r\n", "a\tb\nc\td", "| a | b |\n| c | d |")
    assert verdict(BrokenText(), record) is None
    assert verdict(BrokenText(), Record("ひらがなと漢字、emoji 😀 も。", "", "Ελληνικά, русский, 中文。")) is None


# --- prompt_label --------------------------------------------------------------------------------

@pytest.mark.parametrize("record, detail", [
    (Record("Task 12 Instructions: Write a poem about the sea.", "", "Waves."), "instruction: 'Task 12 Instructions:'"),
    (Record("Instruction: Write a poem about the sea.", "", "Waves."), "instruction: 'Instruction:'"),
    (Record("Input: a list of numbers", "", "6"), "instruction: 'Input:'"),
    (Record("Write a poem about the sea.", "", "### Response\nWaves."), "output: '### Response'"),
    (Record("Write a poem about the sea.", "", "Output: Waves crash."), "output: 'Output:'"),
    (Record("Write a poem about the sea.", "", "Waves crash.\n\n2. Instruction: Write a haiku."),
     "output: '2. Instruction:'"),
    (Record("指令：写一首关于大海的诗。", "", "大海。"), "instruction: '指令：'"),
    (Record("任务3：写一首关于大海的诗。", "", "大海。"), "instruction: '任务3：'"),
    (Record("写一首关于大海的诗。", "", "输出：大海啊大海。"), "output: '输出：'"),
    (Record("写一首关于大海的诗。", "", "大海啊大海。\n指令：写一首关于山的诗。"), "output: '指令：'"),
])
def test_prompt_label_rejects_scaffolding(record, detail):
    assert verdict(PromptLabel(), record) == ("prompt_label", detail)


@pytest.mark.parametrize("record", [
    Record("Write a function that returns the sum of a list.\nInput: a list of numbers\nOutput: their sum", "",
           "def total(xs):\n    return sum(xs)"),
    Record("Design an API endpoint. Input: a JSON body with a name. Output: the created record.", "", "POST /items"),
    Record("Give an example of a test case for a sorting function.", "", "Input: [3, 1, 2]\nOutput: [1, 2, 3]"),
    Record("Give me a recipe for pancakes.", "", "Ingredients: flour, milk, eggs.\nInstructions: mix and fry."),
    Record("写一个函数，输入：一个整数列表，输出：它们的和。", "", "def total(xs):\n    return sum(xs)"),
    Record("举一个排序函数的测试用例。", "", "输入：[3, 1, 2]\n输出：[1, 2, 3]"),
    Record("What time is it in Tokyo when it is 9:00 in London?", "", "18:00 (17:00 in summer)."),
    Record("Complete both parts.\nTask 1: write a title.\nTask 2: write a summary.", "", "Title. Summary."),
    Record("请完成以下任务：\n任务1：写一个标题\n任务2：写一段摘要", "", "标题。摘要。"),
    Record("Task: write a limerick about a cat.", "", "There once was a cat from Peru..."),
    Record("任务：写一首关于春天的诗。", "", "春风又绿江南岸。"),
])
def test_prompt_label_keeps_specs_examples_and_recipes(record):
    assert verdict(PromptLabel(), record) is None


# --- chatter -------------------------------------------------------------------------------------

@pytest.mark.parametrize("record, field", [
    (Record("Certainly! Here's a new task: write a poem about the sea.", "", "Waves."), "instruction"),
    (Record("Here is a new instruction: list three fruits.", "", "Apple, pear, plum."), "instruction"),
    (Record("好的，以下是一个新任务：写一首诗。", "", "春风。"), "instruction"),
    (Record("Give me three ideas for a party.", "", "Sure! Here are some ideas:"), "output"),
    (Record("给出三个聚会的点子。", "", "好的，以下是几个建议："), "output"),
    (Record("Explain photosynthesis.", "", "Hope that helps you!"), "output"),
    (Record("解释光合作用。", "", "希望对你有帮助！"), "output"),
    (Record("Explain photosynthesis.", "", "Hi! How may I assist you today?"), "output"),
    (Record("Hello! How can I assist you today?", "", "I need help with my essay."), "instruction"),
    (Record("你好！有什么可以帮你的吗？", "", "我想学做饭。"), "instruction"),
])
def test_chatter_rejects_conversation_instead_of_content(record, field):
    v = verdict(Chatter(), record)
    assert v is not None and v[0] == "chatter" and v[1].startswith(field + ":"), v


@pytest.mark.parametrize("record", [
    Record("Give me three ideas for a party.", "",
           "Sure! Here are some ideas:\n1. A picnic\n2. A quiz night\n3. Karaoke"),
    Record("给出三个聚会的点子。", "", "好的，以下是几个建议：\n1. 野餐\n2. 知识竞赛\n3. 唱歌"),
    Record("Explain photosynthesis.", "", "Plants turn light into sugar. Hope that helps you!"),
    Record("Write an opening line for a customer service chatbot.", "", "Hi! How may I assist you today?"),
    Record("为客服机器人写一句开场白。", "", "您好！有什么可以帮您的吗？"),
    Record("Reply to a friend who asks whether you can help them move on Saturday.", "", "Sure, I'd love to help!"),
    Record("Surely you know a fun fact about octopuses?", "", "They have three hearts."),
    Record("Okra: how do you cook it?", "", "Roast it with olive oil and salt."),
    Record("OK, and what about the second option?", "", "The second option costs more."),
    Record("好的，那请再推荐一本科幻小说。", "", "《基地》。"),
    Record("Hello is the most common English greeting: list five others.", "", "Hi, hey, howdy, greetings, yo."),
    Record("Hi, I'm planning a trip to Kyoto. What should I see in two days?", "", "Fushimi Inari and Gion."),
    Record("你好，我想学做红烧肉，需要哪些材料？", "", "五花肉、冰糖、酱油。"),
    Record("有什么办法可以帮助孩子养成阅读习惯？", "", "每天固定时间一起读书。"),
])
def test_chatter_keeps_content_and_the_dialogue_a_task_asks_for(record):
    assert verdict(Chatter(), record) is None
