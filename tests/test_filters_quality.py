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


# --- length --------------------------------------------------------------------------------------

@pytest.mark.parametrize("instruction, expected", [
    ("Explain.", ("too_short", "1 words (min 2)")),
    ("写诗", ("too_short", "2 characters (min 3)")),
    ("", ("too_short", "0 words (min 2)")),
    (" ".join(["word"] * 151), ("too_long", "151 words (max 150)")),
    ("好" * 301, ("too_long", "301 characters (max 300)")),
])
def test_length_counts_words_in_english_and_characters_in_chinese(instruction, expected):
    assert verdict(InstructionLength(), Record(instruction)) == expected


def test_length_keeps_the_bounds_and_takes_thresholds_as_keywords():
    assert verdict(InstructionLength(), Record("Define entropy.")) is None
    assert verdict(InstructionLength(), Record("写首诗")) is None
    assert verdict(InstructionLength(), Record(" ".join(["word"] * 150))) is None
    assert verdict(InstructionLength(min_words=4), Record("Explain human behavior.")) == \
        ("too_short", "3 words (min 4)")
    assert verdict(InstructionLength(max_chars=10), Record("请写一首关于春天的诗歌")) == \
        ("too_long", "11 characters (max 10)")


def _dialogue_zh(turns: int) -> str:
    lines = []
    for i in range(turns):
        lines.append("顾客：我上周在你们店里买的电饭煲今天早上突然不能加热了，这是怎么回事？")
        lines.append("店员：非常抱歉给您带来不便，请您把购买凭证带过来，我们帮您检查或者更换。")
    return "\n".join(lines)


def test_length_counts_the_task_sentence_of_a_chinese_task_that_carries_a_dialogue():
    instruction = "请概括下面这段对话的主要内容，并指出顾客的诉求。\n" + _dialogue_zh(5)
    assert len(instruction) > 300
    assert verdict(InstructionLength(), Record(instruction)) is None
    # The same task sentence stretched past the limit is still too long.
    long_task = "请概括" + "这段很长很长的说明" * 40 + "。\n" + _dialogue_zh(1)
    assert verdict(InstructionLength(), Record(long_task))[0] == "too_long"


def test_length_counts_the_task_sentence_of_an_english_task_that_carries_an_article():
    article = " ".join(["The harbour reopened after the storm and the fishing boats went out again."] * 15)
    instruction = f"Summarize the article below in two sentences:\n{article}"
    assert verdict(InstructionLength(), Record(instruction)) is None
    quoted = f'Translate "{article}" into French.'
    assert verdict(InstructionLength(), Record(quoted)) is None
    assert verdict(InstructionLength(), Record(article + " " + article))[0] == "too_long"


@pytest.mark.parametrize("rules", ["self-instruct", "alpaca"])
def test_length_papers_count_split_words_whatever_the_script(rules):
    f = InstructionLength(rules=rules)
    assert verdict(f, Record("Explain human behavior.")) == ("too_short", "3 words (min 4)")
    assert verdict(f, Record("Explain human behavior briefly.")) is None
    assert verdict(f, Record(" ".join(["word"] * 151))) == ("too_long", "151 words (max 150)")
    # The released code splits on whitespace: a Chinese instruction is one word.
    assert verdict(f, Record("请写一首关于春天的诗")) == ("too_short", "1 words (min 4)")


def test_length_belle_counts_raw_characters_and_limits_only_tasks_with_an_input():
    f = InstructionLength(rules="belle")
    assert verdict(f, Record("写诗。")) == ("too_short", "3 characters (min 4)")
    assert verdict(f, Record("写一首诗")) is None
    long_inst = "请" + "仔细" * 50          # 101 characters
    assert verdict(f, Record(long_inst)) is None                      # no input: no upper limit
    assert verdict(f, Record(long_inst, "夏天")) == ("too_long", "101 characters (max 99)")
    assert verdict(f, Record(long_inst, "<无输入>")) is None            # BELLE's empty input
    with_example = "示例" + "仔细" * 60           # 122 characters, gives an example: limit 150
    assert verdict(f, Record(with_example, "夏天")) is None
    assert verdict(f, Record("例子" + "仔细" * 74, "夏天")) == ("too_long", "150 characters (max 149)")


# --- bad_start -----------------------------------------------------------------------------------

@pytest.mark.parametrize("instruction, first", [
    ("，请写一首关于春天的诗。", "，"),
    ("、以及它的作用。", "、"),
    (") and explain why.", ")"),
    ("】请写一首关于春天的诗", "】"),
    ("”他说完就走了。请续写。", "”"),
    ("…and then write the ending.", "…"),
    ("- List three fruits.", "-"),
    ("• 列出三种水果", "•"),
    ("and then explain why the sky is blue.", "and"),
    ("并且说明理由。", "并且"),
])
def test_bad_start_rejects_fragments(instruction, first):
    assert verdict(BadStart(), Record(instruction)) == ("bad_start", f"starts with '{first}'")


@pytest.mark.parametrize("instruction", [
    "  Write a poem about the sea.", "请写一首关于春天的诗。", "ひらがなで名前を書いてください。",
    "Écris un poème sur la mer.", "Напишите короткий рассказ.", "\ufeffWrite a poem about the sea.",
    "12 apples are shared by 4 friends. How many does each get?", "３个保持健康的建议", "3个人5天能修好一段路，5个人要几天？",
    '"Hello" is a greeting; explain where it comes from.', "“举头望明月”的下一句是什么？", "「温故而知新」是什么意思？",
    "【请写一首关于春天的诗】", "(Optional) Name three rivers in Africa.", "《论语》是谁编写的？",
    "😀 Write a story about a happy dog.", ".NET 和 Java 有什么区别？", "-5 加 3 等于多少？", "$20 is how many euros?",
    "Andrew has three apples. How many are left if he eats one?", "Order these numbers from small to large: 3, 1, 2.",
])
def test_bad_start_keeps_letters_digits_opening_quotes_and_brackets(instruction):
    assert verdict(BadStart(), Record(instruction)) is None


@pytest.mark.parametrize("rules", ["self-instruct", "alpaca"])
@pytest.mark.parametrize("instruction, first", [
    ('"Hello" is a greeting; explain where it comes from.', '"'),
    ("- List three fruits.", "-"),
    ("请写一首关于春天的诗。", "请"),
    ("😀 Write a story about a happy dog.", "😀"),
    ("“Hope” is a poem; explain it.", "“"),
])
def test_bad_start_papers_reject_ascii_punctuation_and_non_ascii_starts(rules, instruction, first):
    assert verdict(BadStart(rules=rules), Record(instruction)) == ("bad_start", f"starts with '{first}'")


def test_bad_start_papers_keep_digits_and_belle_has_no_start_rule():
    assert verdict(BadStart(rules="self-instruct"), Record("1. Write a poem about the sea.")) is None
    assert verdict(BadStart(rules="alpaca"), Record("3 apples and 2 pears: how many fruits?")) is None
    assert verdict(BadStart(rules="belle"), Record("，请写一首关于春天的诗。")) is None


# --- blacklist -----------------------------------------------------------------------------------

@pytest.mark.parametrize("instruction", [
    "Draw a picture of a sleeping dog.",
    "Draw a cat wearing a tall hat.",
    "Please sketch the floor plan of a small flat.",
    "Generate an image of a lighthouse at sunset.",
    "Create a short video about recycling.",
    "Record an audio clip of yourself reading the poem.",
    "Describe the image below in detail.",
    "What is happening in this photo?",
    "Describe the picture.",
    "描述一下图片里的内容。",
    "Summarize the attached document.",
    "Watch the following clip and list its main points.",
    "Listen to the recording and transcribe it.",
    "Go to the following website and find the opening hours.",
    "请画一幅关于秋天的画。",
    "画一只正在睡觉的猫。",
    "请生成一张海边日落的图片。",
    "绘制一个流程图说明注册过程。",
    "请描述这张图片的内容。",
    "请描述这个image的内容。",
    "根据下图回答问题。",
    "看这段视频，总结它的主要内容。",
    "听下面的录音，写出说话人的观点。",
    "为这段视频写一个标题。",
    "打开下面的链接，告诉我文章讲了什么。",
])
def test_blacklist_rejects_tasks_a_text_model_cannot_do(instruction):
    v = verdict(Blacklist(), Record(instruction))
    assert v is not None and v[0] == "blacklist_word" and v[1].startswith("asks for '"), v


@pytest.mark.parametrize("instruction", [
    "Which composer wrote the symphony known as the Eroica?",
    "Suggest a title for a YouTube video about repotting plants.",
    "How do I read and write JSON files in Python?",
    "Explain how to draw a conclusion from survey results.",
    "Draw a comparison between cats and dogs as pets.",
    "Draw an ASCII art smiley face.",
    "What happens when you go to the dentist for a filling?",
    "Write a program to sort a list of numbers.",
    "Write a caption for a photo of a birthday party.",
    "Explain how a map projection changes the size of countries.",
    "Recommend three music albums for a long drive.",
    "Explain what a graph database is.",
    "Plot the main events of the story on a timeline in words.",
    "Write a short script for a video that advertises a bakery.",
    "哪位作曲家创作了《月光奏鸣曲》？",
    "如何用Python读写JSON文件？",
    "为一个关于园艺的视频想一个标题。",
    "画蛇添足是什么意思？",
    "《星月夜》这幅画的作者是谁？",
    "地图上的比例尺表示什么？",
    "推荐几首适合跑步时听的音乐。",
    "用matplotlib画折线图的代码怎么写？",
    "去图书馆借书需要带什么证件？",
    "How do I take a good photo of the moon with a phone?",
    "Write a description for this video game.",
    "Describe the painting Girl with a Pearl Earring.",
    "Describe the image of the city in the novel Bleak House.",
    "如何用手机拍出好看的照片？",
    "邮件附件的大小限制是多少？",
    "Classify the news story into one of these categories: music, sports, politics, science.",
    "将句子中的人名链接到百科词条，找不到的标为无。",
    "把新闻分到以下类别之一：音乐、体育、政治、科技。",
])
def test_blacklist_keeps_tasks_that_only_mention_a_medium(instruction):
    assert verdict(Blacklist(), Record(instruction)) is None


@pytest.mark.parametrize("rules, instruction, detail", [
    ("self-instruct", "Describe the image below in detail.", "contains 'image'"),
    ("self-instruct", "Which musician wrote this?", None),                       # not on its list
    ("alpaca", "Recommend three music albums for a long drive.", "contains 'music'"),
    ("alpaca", "How do I read and write JSON files in Python?", "contains 'files'"),
    ("alpaca", "What happens when you go to the dentist?", "contains 'go to'"),
    ("alpaca", "What happens when you go  to the dentist?", None),                # one space in the regex
    ("self-instruct", "What happens when you go  to the dentist?", "contains 'go to'"),  # collapsed first
    ("alpaca", "Write a program to sort a list.", "starts with 'Write a program'"),
    ("alpaca", "write a program to sort a list.", None),                          # case-sensitive
    ("self-instruct", "write a program to sort a list.", "starts with 'Write a program'"),  # capitalized
    ("self-instruct", "Describe 这张image的内容", None),                           # Unicode \b: no boundary
    ("belle", "请描述这张图片的内容。", "contains '图片'"),
    ("belle", "为一个关于园艺的视频想一个标题。", None),                               # 视频 is not on BELLE's list
])
def test_blacklist_papers_reproduce_the_released_word_lists(rules, instruction, detail):
    v = verdict(Blacklist(rules=rules), Record(instruction))
    assert v == (None if detail is None else ("blacklist_word", detail))


def test_blacklist_belle_searches_every_field_and_says_so():
    f = Blacklist(rules="belle")
    assert set(f.fields) == {"instruction", "input", "output"}
    assert verdict(f, Record("如何保存工作成果？", "", "记得经常保存文件。")) == ("blacklist_word", "contains '文件'")
    assert Blacklist().fields == ("instruction",)


# --- url -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("record, url", [
    (Record("Summarize the article at https://example.com/news/1.", ""), "https://example.com/news/1"),
    (Record("Summarize the article.", "See http://example.org/a?b=1 for details"), "http://example.org/a?b=1"),
    (Record("请总结这篇文章。", "", "访问www.example.com获取更多信息。"), "www.example.com"),
    (Record("请阅读https://example.cn/a.html并总结要点。", "", "要点如下。"), "https://example.cn/a.html"),
    (Record("Give three tips for staying healthy.", "", "Eat well. More at https://health.example.com"),
     "https://health.example.com"),
])
def test_url_rejects_links_to_visit_and_links_given_unasked(record, url):
    assert verdict(Url(), record) == ("contains_url", url)


@pytest.mark.parametrize("record", [
    Record("List three websites where I can practise Spanish.", "",
           "https://www.duolingo.com, https://www.spanishdict.com, https://www.bbc.co.uk/languages"),
    Record("Give me links to two papers about transformers.", "", "https://arxiv.org/abs/1706.03762"),
    Record("在哪里可以下载Python安装包？", "", "在官网 https://www.python.org/downloads/ 下载。"),
    Record("推荐几个学习英语的网站。", "", "https://www.bbc.co.uk/learningenglish"),
    Record("Extract the domain from this URL: https://shop.example.com/cart?id=3", "", "shop.example.com"),
    Record("提取下面网址中的域名。", "https://blog.example.com/post/1", "blog.example.com"),
    Record("Write a Python function that fetches a web page.", "",
           "import requests\n\ndef fetch():\n    return requests.get('https://example.com').text"),
    Record("用Python获取天气数据。", "", "```python\nimport requests\nprint(requests.get(\"http://api.example.com/w\").json())\n```"),
])
def test_url_keeps_links_asked_for_in_code_or_treated_as_data(record):
    assert verdict(Url(), record) is None


@pytest.mark.parametrize("record, url", [
    (Record("Summarize this email.", "Hi team, the agenda is at https://intra.example.com/agenda. See you!",
            "The agenda is online; the meeting goes ahead."), None),
    (Record("Summarize this article.", "https://example.com/news/1", "A summary."), "https://example.com/news/1"),
    (Record("总结这封邮件。", "大家好，议程见https://intra.example.cn/a，周五见。", "议程已发布。"), None),
])
def test_url_in_the_input_is_material_unless_the_input_is_only_a_link(record, url):
    assert verdict(Url(), record) == (None if url is None else ("contains_url", url))



def test_url_papers_belle_rejects_http_anywhere_and_the_others_have_no_url_rule():
    record = Record("Write a Python function that fetches a web page.", "", "requests.get('http://example.com')")
    assert verdict(Url(rules="belle"), record) == ("contains_url", "http://example.com")
    assert verdict(Url(rules="belle"), Record("什么是http协议？", "", "超文本传输协议。")) == ("contains_url", "http")
    visit = Record("Summarize the article at https://example.com/news/1.")
    assert verdict(Url(rules="self-instruct"), visit) is None
    assert verdict(Url(rules="alpaca"), visit) is None


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


# --- refusal -------------------------------------------------------------------------------------

@pytest.mark.parametrize("record, phrase", [
    (Record("Tell me about your feelings.", "", "As an AI language model, I do not have feelings."),
     "As an AI language model"),
    (Record("What is your favorite food?", "", "As an AI, I don't eat food."), "As an AI"),
    (Record("Write a joke about cats.", "", "I'm sorry, but I cannot write jokes."), "I'm sorry, but I cannot write"),
    (Record("Write an insult.", "", "I cannot fulfill this request."), "I cannot fulfill"),
    (Record("Who are you?", "", "I am a chatbot developed by a research lab."), "I am a chatbot"),
    (Record("What do you think of jazz?", "", "I don't have personal opinions, but jazz is popular."),
     "I don't have personal opinions"),
    (Record("What is the weather today?", "", "As of my last knowledge update, I cannot check the weather."),
     "As of my last knowledge update"),
    (Record("你有感情吗？", "", "作为一个AI，我没有个人感情。"), "作为一个AI"),
    (Record("你是谁？", "", "我是一个人工智能助手，可以回答问题。"), "我是一个人工智能助手"),
    (Record("你是谁？", "", "作为AI语言模型，我可以帮助你。"), "作为AI语言模型"),
    (Record("你喜欢吃什么？", "", "作为人工智能，我不需要吃东西。"), "作为人工智能"),
    (Record("写一个笑话。", "", "抱歉，我无法完成这个请求。"), "抱歉，我无法完成"),
    (Record("告诉我明天的股价。", "", "我无法回答这个问题。"), "我无法回答这个问题"),
    (Record("你怎么看这件事？", "", "我没有个人观点，但可以介绍各方看法。"), "我没有个人观点"),
])
def test_refusal_rejects_refusals_and_disclaimers(record, phrase):
    assert verdict(Refusal(), record) == ("refusal", phrase)


@pytest.mark.parametrize("record", [
    Record("As an AI researcher, explain overfitting in one paragraph.", "", "Overfitting is ..."),
    Record("Describe Elon Musk in one sentence.", "", "He co-founded Neuralink and OpenAI."),
    Record("Summarize the article.", "OpenAI released GPT-4 and ChatGPT today.", "A new model was released."),
    Record("Explain how a language model works.", "", "It predicts the next word from the words before it."),
    Record("List three papers on large language models.", "", "GPT-3, InstructGPT and LLaMA."),
    Record("Describe what ChatGPT can do.", "", "It answers questions and drafts text."),
    Record("Write a reply declining a dinner invitation.", "", "I'm sorry, but I can't make it on Friday."),
    Record("What do assistants say when they refuse?", "",
           'They often start with "As an AI language model, I cannot help with that."'),
    Record("我最近总是失眠，我无法入睡怎么办？", "", "睡前避免使用手机，保持规律作息。"),
    Record("作为一个人工智能专家，请解释什么是过拟合。", "", "过拟合是指模型在训练集上表现很好，在测试集上表现差。"),
    Record("简要介绍机器学习。", "", "作为人工智能的核心技术，机器学习让计算机从数据中学习。"),
    Record("解释什么是计算语言学。", "", "计算语言学研究计算机理解人类语言，大语言模型是它的新进展。"),
    Record("写一段婉拒朋友邀请的话。", "", "对不起，我不能参加你的聚会了，祝你们玩得开心！"),
    Record("Set an aim for the week.", "", "Read one book."),
])
def test_refusal_keeps_topic_words_declines_and_quoted_disclaimers(record):
    assert verdict(Refusal(), record) is None


def test_refusal_belle_reproduces_its_model_words_and_gpt_rule():
    f = Refusal(rules="belle")
    assert verdict(f, Record("介绍一下chatgpt。", "", "一个聊天模型。")) == ("refusal", "contains 'chatgpt'")
    assert verdict(f, Record("介绍一下这家公司。", "", "OpenAI成立于2015年。")) == ("refusal", "contains 'OpenAI'")
    assert verdict(f, Record("GPT是什么？", "", "一种模型。")) == ("refusal", "contains 'GPT'")
    # BELLE cuts phrases that address a GPT model out of the instruction and keeps it.
    assert verdict(f, Record("要求GPT模型能够写一首关于春天的诗。", "", "春风拂面。")) is None
    # Case-sensitive, like the released code: "ChatGPT" in an output passes.
    assert verdict(f, Record("介绍一个聊天机器人。", "", "ChatGPT是一个聊天机器人。")) is None
    assert set(f.fields) == {"instruction", "input", "output"}


@pytest.mark.parametrize("rules", ["self-instruct", "alpaca"])
def test_refusal_self_instruct_and_alpaca_have_no_refusal_rule(rules):
    record = Record("Tell me about your feelings.", "", "As an AI language model, I do not have feelings.")
    assert verdict(Refusal(rules=rules), record) is None
