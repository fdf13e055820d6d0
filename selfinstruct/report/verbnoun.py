"""Leading verb and direct-object noun of an instruction, for the report's verb–noun figure (the
Self-Instruct paper's Figure 2: the 20 most common root verbs, each with its 4 most common objects).

The paper parsed every instruction with a constituency parser. A parser is a large install (spaCy
and its English model weigh ~360 MB) for a figure, and nothing here may download a model at run
time, so both languages use a small word lexicon and rules about how instructions are phrased. On
our 100 hand-labelled instructions per language (``tests/data/verbnoun_*.tsv``) the rules agree with
the hand labels more often than spaCy's ``en_core_web_sm`` parse does; ``tests/test_verbnoun.py``
keeps that agreement at 90% or more.

What counts (both languages):

* Only the first sentence; in English it also ends at a colon, which usually introduces the input
  ("Solve the equation: 3x + 5 = 20"), and a leading label ("Question: …") is dropped. A first
  sentence that is a statement ("I broke my phone. Can you help?") has no verb. In Chinese the
  verb is that of the sentence's first clause that has one ("给定一个列表，找出最大的数" → 找出).
* Polite and framing wrappers are seen through: "Please", "Can/Could/Would you (please)", "I want
  you to", "Help me", "In this task, you need to", "Given a list, …", "Based on the passage, …";
  请/麻烦你/你能…吗/帮我/给我/我想请你, and clauses that set the scene (给定…，/ 根据…，/ 假设…，).
  "Can you write a poem?" → ("write", "poem"); "请你写一首诗" → ("写", "诗").
* A question without an imperative verb has no verb: "What is the capital of France?" → (None,
  None), "中国的首都是哪里？" → (None, None).
* The noun is the head of the verb's direct object: the last noun of the object's noun phrase
  ("a list of five ideas" → "list", "一首关于春天的诗" → "诗"), after an indirect-object pronoun
  ("Give me three examples" → "example"). In Chinese the 把/将 phrase before the verb is the
  object ("请将下面的句子翻译成英文" → 翻译/句子). An object that is a clause ("Explain why…",
  "Check if…", "判断…是否…") or a pronoun ("Sort them") or absent ("Act as a tour guide") gives None.
* English lemmas come from ``lemminflect``'s lexicon ("Writes" → "write", "mice" → "mouse");
  phrasal verbs count as their verb ("Come up with a title" → ("come", "title")). Chinese words
  come from ``jieba``'s segmentation (its part-of-speech tags are only a hint, since it tags
  common instruction verbs such as 总结 and 设计 as nouns: a verb list decides). A verb and its
  result complement count as the verb (翻译成 → 翻译); light verbs stay (对…进行分类 → 进行/分类);
  a noun is the word jieba's dictionary has (童话故事, 语法错误), not a part of it.

jieba writes a 9 MB cache of its dictionary on first use; ours goes to the selfinstruct user cache
folder (``$XDG_CACHE_HOME/selfinstruct``), written atomically by jieba (temp file, then rename),
so two processes at once each build it and the last rename wins. Its "Building prefix dict" log
lines are silenced. Both libraries are imported on first use and loaded once per process.
"""
from __future__ import annotations

import functools
import importlib
import logging
import os
import re
import tempfile
from collections import Counter, defaultdict
from typing import Iterable

from selfinstruct.errors import UsageError

# ---------------------------------------------------------------------------------------------
# English
# ---------------------------------------------------------------------------------------------

_EN_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'\-]*|\d+(?:[.,/]\d+)*|[^\sA-Za-z\d]")
# The first sentence: up to . ? ! or a colon (which introduces the input) or a line break.
_EN_SENTENCE_END_RE = re.compile(r"[.?!](?=\s|$)|:|\n")

# Wrappers that come before the task verb, lower-case, longest first (matched word by word).
_EN_WRAPPERS = tuple(
    tuple(w.split())
    for w in sorted(
        [
            "please", "kindly", "now", "also", "then", "first", "next", "finally",
            "can you", "could you", "would you", "will you", "can you please",
            "could you please", "would you please", "will you please", "would you kindly",
            "i want you to", "i need you to", "i would like you to", "i'd like you to",
            "we want you to", "we need you to", "we would like you to",
            "help me", "help me to", "help us", "help us to", "let's", "let us",
            "you need to", "you have to", "you should", "you must", "you will",
            "you are asked to", "you are required to", "you're asked to",
            "your task is to", "the task is to", "try to", "be sure to", "make sure to",
        ],
        key=lambda s: -len(s.split()),
    )
)
# A leading phrase that sets the scene and ends at the first comma ("Given a list, find …").
_EN_SETUP_WORDS = frozenset(
    "given based using according in for with if after before from considering assuming "
    "suppose imagining as to when once".split()
)
# A first word that makes the sentence a question (unless a wrapper such as "can you" took it).
_EN_QUESTION_WORDS = frozenset(
    "what who whom whose which why how where when is are was were am do does did has have had "
    "can could would will should shall may might must isn't aren't doesn't don't didn't".split()
)
# After the verb, these start something other than a direct object (a clause or a phrase).
_EN_CLAUSE_WORDS = frozenset(
    "why how what whether if which who whom where when that because as so".split()
)
_EN_PREPOSITIONS = frozenset(
    "about above across after against along among around at before behind below beneath beside "
    "between beyond by during except for from in inside into like near of off on onto out outside "
    "over per since than through throughout to toward towards under until upon via with within "
    "without".split()
)
_EN_PRONOUN_OBJECTS = frozenset(
    "it them this that these those him her us me you one something anything everything nothing "
    "someone anyone everyone".split()
)
# Particles any verb may take before its object ("Turn down an offer", "Write down the steps").
_EN_ANY_PARTICLES = frozenset("up down out off away back over".split())
_EN_INDIRECT_OBJECTS = frozenset("me us him her them you".split())
_EN_PERSONAL_PRONOUNS = frozenset("i you he she it we they me him her us them myself yourself".split())
# Words that may sit in a noun phrase before its head but are never the head.
_EN_DETERMINERS = frozenset(
    "a an the this that these those some any all each every my your our his her its their "
    "another several few many more most no both either neither such much other same own "
    "following given next last first second third only various different certain".split()
)
_EN_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty fifty "
    "hundred thousand million couple dozen".split()
)
# Words that end the noun phrase wherever they come (besides prepositions and clause words).
_EN_NP_END = frozenset("and or but nor less than then so while where below above".split())
# Particles of phrasal verbs, skipped after the verb ("come up with", "fill in", "find out").
_EN_PARTICLES = {
    "come": ("up", "with"), "fill": ("in",), "find": ("out",), "figure": ("out",),
    "point": ("out",), "think": ("of", "up"), "make": ("up",), "sum": ("up",),
    "write": ("down",), "look": ("up",), "carry": ("out",), "set": ("up",),
    "break": ("down",), "pick": ("out",), "list": ("out",),
}


_EN_VERB_SUFFIXES = ("ize", "ise", "izes", "ises", "ify", "ifies")
_EN_VERB_PREFIXES = ("re", "de", "un", "pre", "over", "out")
_EN_QUOTES = frozenset("\"“”‘’'`")


def _import(module: str):
    """``module``, imported on first use: only the report needs it, from the ``report`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(
            f"the verb-noun figure needs {module}: pip install 'selfinstruct[report]'"
        ) from exc


@functools.lru_cache(maxsize=1)
def _lemminflect():
    return _import("lemminflect")


@functools.lru_cache(maxsize=65536)
def _en_pos(word: str) -> dict:
    """The parts of speech ``word`` can have (lemminflect's lexicon), e.g. {'NOUN': ('list',)}."""
    return _lemminflect().getAllLemmas(word)


def _en_verb_lemma(word: str) -> str | None:
    """The verb lemma of ``word``, or None when it is not a verb. A word the lexicon lacks is a
    verb only when it is shaped like one: a verb suffix ("tokenize") or a verb prefix on a known
    verb ("refactor"); other unknown words standing first are mostly nouns ("Dependency parsing
    for the sentence.")."""
    lower = word.lower()
    known = _en_pos(lower)
    if "VERB" in known:
        return known["VERB"][0]
    if known:
        return None
    if lower.endswith(_EN_VERB_SUFFIXES) or any(
        lower.startswith(prefix) and "VERB" in _en_pos(lower[len(prefix):])
        for prefix in _EN_VERB_PREFIXES
    ):
        guesses = _lemminflect().getAllLemmasOOV(lower, "VERB")
        return guesses["VERB"][0] if guesses.get("VERB") else lower
    return None


def _en_noun_lemma(word: str) -> str:
    lower = word.lower()
    known = _en_pos(lower)
    if "NOUN" in known:
        return known["NOUN"][0]
    if "PROPN" in known:
        return known["PROPN"][0]
    return _lemminflect().getAllLemmasOOV(lower, "NOUN")["NOUN"][0]


_EN_LABEL_RE = re.compile(r"^\s*(?:question|task|instruction|prompt|q)\s*:\s*", re.IGNORECASE)
_EN_PLACEHOLDER_RE = re.compile(r"<(\w+)>")
# After "You are given …," the task follows a wrapper later in the sentence.
_EN_GIVEN_RE = re.compile(
    r"^(?:in this task,\s*)?you (?:are|will be) (?:given|provided|shown|presented)\b.*?,\s*(?:and\s+)?"
    r"(?=(?:you|your)\b)",
    re.IGNORECASE,
)


def _en_first_sentence(text: str) -> str:
    # "Question: in which year …": the label is not the sentence; "<mask>" is the word mask.
    text = _EN_PLACEHOLDER_RE.sub(r"\1", _EN_LABEL_RE.sub("", text.strip()))
    match = _EN_SENTENCE_END_RE.search(text)
    sentence = text[: match.start()] if match else text
    return _EN_GIVEN_RE.sub("", sentence)


def _en_strip_wrappers(words: list[str]) -> tuple[list[str], bool]:
    """``words`` without leading wrappers and scene-setting phrases; True when one was removed."""
    removed = False
    changed = True
    while changed and words:
        changed = False
        lowered = [w.lower() for w in words]
        if lowered[0] in (",", ";", "-"):
            words, changed = words[1:], True
            continue
        for wrapper in _EN_WRAPPERS:
            if tuple(lowered[: len(wrapper)]) == wrapper:
                words, changed, removed = words[len(wrapper):], True, True
                break
        else:
            if lowered[0] in _EN_SETUP_WORDS and "," in words:
                # "Given a list of numbers, find …": the task starts after the comma.
                words, changed, removed = words[words.index(",") + 1:], True, True
    return words, removed


def _en_can_be_noun(word: str) -> bool:
    known = _en_pos(word.lower())
    if not known:
        return not word.lower().endswith("ly")  # an unknown -ly word is an adverb ("ascendingly")
    return "NOUN" in known or "PROPN" in known


def _en_object_head(words: list[str]) -> str | None:
    """The head noun of the noun phrase that starts ``words`` (the words after the verb)."""
    if not words:
        return None
    lowered = [w.lower() for w in words]
    start = 0
    # "Give me three examples": skip the indirect object when a noun phrase follows it.
    if lowered[0] in _EN_INDIRECT_OBJECTS and len(words) > 1 and (
        lowered[1] in _EN_DETERMINERS or lowered[1] in _EN_NUMBER_WORDS
        or lowered[1][0].isdigit() or _en_can_be_noun(words[1])
    ) and lowered[1] not in _EN_CLAUSE_WORDS and lowered[1] not in _EN_PREPOSITIONS:
        start = 1
    first = lowered[start]
    if first in _EN_CLAUSE_WORDS or first in _EN_PREPOSITIONS:
        return None
    if first in _EN_PRONOUN_OBJECTS and (
        start + 1 >= len(words) or lowered[start + 1] in _EN_PREPOSITIONS
        or lowered[start + 1] in _EN_CLAUSE_WORDS or not words[start + 1][0].isalnum()
    ):
        return None  # "Sort them", "Explain this to me": a pronoun is no noun
    head = None
    previous = ""
    in_quote = False
    phrase = list(zip(words[start:], lowered[start:]))
    for at, (word, lower) in enumerate(phrase):
        previous, before = lower, previous
        if word in _EN_QUOTES and head is None or in_quote and head is None:
            # 'replace the "TODO" comment': a quoted word before the head only modifies it
            in_quote = (word in _EN_QUOTES) != in_quote
            continue
        if not word[0].isalnum():
            if word == "-" and head is None:
                continue
            break
        if lower in _EN_PREPOSITIONS or lower in _EN_CLAUSE_WORDS or lower in _EN_NP_END:
            break
        if lower in _EN_PERSONAL_PRONOUNS:
            break  # "Pretend you are …": a pronoun is no noun, and what follows is a clause
        if lower == "one" and before and before not in _EN_DETERMINERS:
            head = word  # "the odd one out": "one" after an adjective stands for a noun
            continue
        if lower in _EN_DETERMINERS or lower in _EN_NUMBER_WORDS or lower[0].isdigit():
            if head is not None:
                break  # "the expression 3 * 4": a number after the head ends the phrase
            continue
        known = _en_pos(lower)
        if known and not ({"NOUN", "PROPN", "ADJ"} & known.keys()):
            following = phrase[at + 1][0] if at + 1 < len(phrase) else ""
            if head is None and "VERB" in known and following[:1].isalpha() and _en_can_be_noun(following):
                continue  # "a cooking recipe": a participle before the head modifies it
            break  # after the head it starts a new phrase ("a tweet announcing …", "… needed")
        if _en_can_be_noun(word):
            head = word
        elif head is not None:
            break
    return _en_noun_lemma(head) if head else None


def _verb_noun_en(instruction: str) -> tuple[str | None, str | None]:
    words = _EN_WORD_RE.findall(_en_first_sentence(instruction))
    words, wrapped = _en_strip_wrappers(words)
    if not words or not words[0][0].isalpha():
        return None, None
    if words[0].lower() in _EN_QUESTION_WORDS and not wrapped:
        return None, None
    verb = _en_verb_lemma(words[0])
    if verb is None:
        return None, None
    rest = words[1:]
    if verb in ("try", "start", "begin") and rest and rest[0].lower().endswith("ing"):
        # "Try coming up with …": the task is the -ing verb
        return _verb_noun_en(" ".join(rest))
    for particle in _EN_PARTICLES.get(verb, ()):
        if rest and rest[0].lower() == particle:
            rest = rest[1:]
    if rest and rest[0].lower() in _EN_ANY_PARTICLES and len(rest) > 1 and (
        rest[1].lower() in _EN_DETERMINERS or rest[1][:1].isdigit()
    ):
        rest = rest[1:]
    return verb, _en_object_head(rest)


# ---------------------------------------------------------------------------------------------
# Chinese
# ---------------------------------------------------------------------------------------------

_ZH_SENTENCE_END_RE = re.compile(r"[。！？!?；;\n]")
_ZH_CLAUSE_SPLIT_RE = re.compile(r"[，,：:、]")
# Polite and framing wrappers before the verb, as regular expressions on the clause's start.
_ZH_WRAPPER_RE = re.compile(
    r"^(?:(?:你好|您好|嗨|哈喽)[，,！!]?"
    r"|(?:我|我们)(?:想|希望|需要|要)(?:请|让)?(?:你|您)?"
    r"|(?:麻烦|拜托)(?:你|您)?|(?:请|烦请)(?:你|您)?"
    r"|(?:你|您)(?:能不能|可不可以|能否|可以|需要|要|应该|能|会|来)(?:请|帮我|帮忙|给我)?"
    r"|(?:能不能|可不可以|能否|可以|能)(?:请|麻烦)?(?:你|您)?"
    r"|帮(?:我|我们|忙)?|替我|现在|接下来|然后|首先|最后|试着|尝试|并且?|再|需要)+"
)
# A clause that only sets the scene; the task is in a later clause ("给定一个列表，找出…").
# (Clauses opening with 根据/基于 need no rule: those are prepositions, and a clause without a
# verb is passed over anyway.)
_ZH_SETUP_RE = re.compile(r"^(?:给定|已知|假设|假如|如果|鉴于|下面是|以下是|这是)")
_ZH_QUESTION_WORDS = ("什么", "哪", "谁", "为什么", "为何", "怎么", "怎样", "如何", "多少", "几", "吗", "呢", "是否",
                      "有没有", "是不是")
# Markers that make the object a clause, not a noun phrase ("判断…是否正确", "解释为什么…").
_ZH_CLAUSE_MARKERS = frozenset(
    "是否 是不是 有没有 能否 能不能 还是 吗 什么 为什么 为何 怎么 怎样 如何 哪 哪里 哪个 哪些 "
    "谁 多少 几 是".split()
)
_ZH_PERSONS = frozenset("你 我 他 她 它 你们 我们 他们 她们 它们 您".split())
_ZH_PRONOUNS = frozenset("你 我 他 她 它 你们 我们 他们 她们 它们 其 此 这 那 这些 那些".split())
# Verbs that take a person then a thing ("告诉我…", "给他一些建议"): the person is skipped.
_ZH_DITRANSITIVE = frozenset("告诉 给 教 问 送 提供 回答 推荐 讲 说".split())
# Prepositions that open a phrase before the verb. 把/将 mark the object itself.
_ZH_PREPOSITIONS = frozenset(
    "把 将 为 给 替 用 以 从 在 对 向 按 按照 根据 基于 通过 针对 关于 与 和 跟 就 由 使用 利用 "
    "围绕 结合 参照 从中 依据 参考 对于".split()
)
_ZH_OBJECT_MARKERS = frozenset(("把", "将"))
# Prepositions of a basis, whose phrase may fill a whole clause ("根据这条评论，预测…").
_ZH_BASIS = frozenset("根据 基于 依据 按照 参考 参照 针对 对于 结合 围绕".split())
# After the verb, these end the object ("翻译成英文", "改写为…", "分为A和B").
_ZH_OBJECT_END = frozenset("成 为 到 给 和 与 及 及其 以及 或 或者 并 并且 然后 来 以 以便 使 使其 让".split())
_ZH_COORDINATORS = frozenset("和 与 及 及其 以及 或 或者 跟".split())
_ZH_PARENTHESES_RE = re.compile(r"（[^（）]*）|\([^()]*\)|【[^【】]*】")
# Tokens never the head of an object: particles, aspect markers, measure words, punctuation.
_ZH_NOT_HEAD_TAGS = frozenset("x y e o w".split())  # and every u… (particle) tag
_ZH_NUMERAL_RE = re.compile(r"^[\d.一二三四五六七八九十百千万两几半]+[个种件首篇段本条份句道张点些]?$")
_ZH_DEMONSTRATIVE_RE = re.compile(r"^(?:这|那|该|此|本)(?:个|段|篇|首|句|本|些|种|条|份|张|道|组)?(?=.)")
_ZH_OPEN_QUOTES = frozenset("“‘「『\"《")
_ZH_CLOSE_QUOTES = frozenset("”’」』\"》")
_ZH_LEADING_NUMERAL_RE = re.compile(r"^[\d一二三四五六七八九十两几]+[个段篇首句本条份张道组封则位部种项]?(?=.)")
# One-character noun suffixes that jieba may leave apart from their stem (心理咨询/师).
_ZH_NOUN_SUFFIXES = frozenset("师 员 者 家 式 器 机 表 法 性 率 单 书 信 馆 店 站".split())
_ZH_MEASURE_CHARS = frozenset("个段篇首句本条份张道组封则位部种项")
_ZH_SKIP_AFTER_VERB = frozenset("一下 一个 了 着 过 下 出 一些 一点".split())
# Verbs that are not the task ("是", "有", modal verbs): the clause is a statement or question.
_ZH_NOT_TASK_VERBS = frozenset(
    "是 有 有没有 能 会 要 想要 可以 应该 应当 需要 觉得 认为 知道 喜欢 希望 可能 必须 得".split()
)
# Instruction verbs. jieba tags several of these as nouns (总结, 设计, 分析) or splits them
# wrongly; listing them makes them segment as verbs and lets the rules find them.
_ZH_VERBS = frozenset(
    """写 写出 写下 形容 验证 链接 解决 发 发送 确定 回应 标识 编写 撰写 续写 改写 重写 扩写 缩写 仿写 创作 编 编造 起草 拟 拟定 草拟 生成 创建 构建
    制作 制定 设计 规划 安排 策划 解释 说明 阐述 阐释 论述 讲 讲述 叙述 讲解 介绍 描述 描写 描绘 概述
    总结 概括 归纳 摘要 提炼 翻译 转换 转化 换算 转写 列出 列举 罗列 举 举出 举例 举例说明 给出 提供 提出
    推荐 想 想出 想象 设想 起 取 命名 找 找出 找到 查找 寻找 搜索 选 选出 选择 挑选 判断 判定 辨别
    区分 识别 检测 检查 核对 校对 纠正 改正 修改 修正 修复 润色 优化 简化 完善 补全 补充 填写 填 填入
    完成 回答 解答 回复 答 计算 算 求 求解 解 证明 推导 估计 估算 预测 推断 猜 猜测 分析 评价 评估
    评论 比较 对比 分类 归类 分为 分成 排序 排列 整理 统计 数 提取 抽取 标注 标记 标出 指出 匹配
    连接 删除 去掉 去除 删去 加上 添加 加入 插入 替换 缩短 扩展 扩充 实现 输出 打印 返回 定义 模仿
    扮演 充当 模拟 讨论 谈谈 说说 聊聊 分享 告诉 教 演示 展示 画 绘制 造句 造 出 做 制 进行 给 问 读 列 改 打
    朗读 复述 默写 背诵 记录 表达 转述 说""".split()
)
# Words that jieba's dictionary has but that swallow an instruction verb in instruction text
# ("以秋天为题写一首诗" segments as 为/题写).
_ZH_DELETE_WORDS = ("题写", "顺序排列", "解方程")
# jieba's dictionary also holds verb+complement words (翻译成, 转换成) that would hide the verb
# from the list above; they are deleted so that the verb and 成/为/到 segment apart.
_ZH_COMPLEMENTS = ("成", "为", "到")
_ZH_VERB_TAILS = ("一下", *_ZH_COMPLEMENTS)


def _zh_cache_dir() -> str:
    """Where jieba keeps its dictionary cache: ours, versioned so an upgrade does not reuse it."""
    jieba = _import("jieba")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    path = os.path.join(base, "selfinstruct", f"jieba-{jieba.__version__}")
    try:
        os.makedirs(path, exist_ok=True)
        return path
    except OSError:
        return tempfile.gettempdir()


@functools.lru_cache(maxsize=1)
def _zh_tagger():
    """A jieba part-of-speech tagger of our own (not jieba's global one, which other code may
    configure), built once per process with the instruction verbs added."""
    jieba = _import("jieba")
    _import("jieba.posseg")

    tokenizer = jieba.Tokenizer()
    tokenizer.tmp_dir = _zh_cache_dir()
    logger = logging.getLogger("jieba")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)  # jieba logs "Building prefix dict…" to stderr
    try:
        tokenizer.initialize()
    finally:
        logger.setLevel(level)
    compounds = [v + c for v in _ZH_VERBS for c in _ZH_COMPLEMENTS if v + c not in _ZH_VERBS]
    for word in (*_ZH_DELETE_WORDS, *(w for w in compounds if tokenizer.FREQ.get(w))):
        tokenizer.del_word(word)
    for verb in _ZH_VERBS:
        # Frequent enough to win segmentation against the neighbouring characters, tagged v.
        tokenizer.add_word(verb, max(tokenizer.FREQ.get(verb, 0), 2000), "v")
    return jieba.posseg.POSTokenizer(tokenizer)


def _zh_tokens(clause: str) -> list[tuple[str, str]]:
    """(word, part-of-speech tag) pairs. jieba's HMM, which finds words its dictionary lacks
    (播客, 占位符), also glues a verb to its complement (改成), and its dictionary has idioms such
    as 解释一下; such a word is split again into the verb and the rest."""
    tokens = []
    for pair in _zh_tagger().cut(clause):
        word = pair.word
        for rest in _ZH_VERB_TAILS:
            verb = word[: -len(rest)]
            if word.endswith(rest) and verb in _ZH_VERBS and word not in _ZH_VERBS:
                tokens += [(verb, "v"), (rest, "m" if rest == "一下" else "v")]
                break
        else:
            tokens.append((word, pair.flag))
    return tokens


def _zh_first_sentence(text: str) -> str:
    text = text.strip()
    match = _ZH_SENTENCE_END_RE.search(text)
    return text[: match.start()] if match else text


def _zh_strip_wrapper(clause: str) -> tuple[str, bool]:
    if clause.startswith("请问"):
        return clause[2:], False  # "may I ask": the sentence stays a question
    match = _ZH_WRAPPER_RE.match(clause)
    if match and match.end() > 0:
        return clause[match.end():], True
    return clause, False


def _zh_is_question(sentence: str, full_text: str) -> bool:
    asked = full_text.strip()[len(sentence):].lstrip()[:1] in ("？", "?") or sentence.endswith(("吗", "呢"))
    return asked and any(word in sentence for word in _ZH_QUESTION_WORDS)


def _zh_is_numeral(token: tuple[str, str]) -> bool:
    return bool(_ZH_NUMERAL_RE.match(token[0])) or token[1] == "m"


def _zh_find_verb(tokens: list[tuple[str, str]], more_clauses: bool) -> tuple[int, int] | None:
    """(index of the task verb, index where a 把/将 object starts or -1), or None when the clause
    does not start with an imperative verb (possibly after prepositional phrases and adverbs).
    ``more_clauses``: another clause follows, so a phrase may end with its noun ("根据这条评论，")."""
    object_at = -1
    in_phrase = False

    def noun_position(i: int) -> bool:
        # A listed verb is used as a noun after 的, 所, a preposition, 和/或, a demonstrative or
        # a measure word (…的评论, 根据描述, 根据所给信息, 根据这条评论), or before a noun
        # suffix (列表推导式).
        if i > 0 and (tokens[i - 1][0] in ("的", "所") or tokens[i - 1][0] in _ZH_PREPOSITIONS
                      or tokens[i - 1][0] in _ZH_COORDINATORS
                      or tokens[i - 1][1] == "r" and tokens[i - 1][0][0] in "这那该此本每各"
                      or _zh_is_numeral(tokens[i - 1])):
            return True
        return i + 1 < len(tokens) and tokens[i + 1][1] == "k"

    def listed_verb_follows(i: int) -> bool:
        return any(w in _ZH_VERBS and not noun_position(j) for j, (w, _) in enumerate(tokens) if j > i)

    def main_verb_follows(i: int) -> bool:
        # A later listed verb that heads the clause, not one inside a 的 modifier ("给我一个可以
        # 表达…的短语": 表达 modifies 短语, so 给 is "give"; "给这款手机写一段广告词": 写 is the
        # verb, so 给 is "for"). A verb whose own object starts with a numeral is a main verb.
        for j in range(i + 1, len(tokens)):
            if tokens[j][0] not in _ZH_VERBS or noun_position(j):
                continue
            rest = tokens[j + 1:]
            de_at = next((k for k, (w, _) in enumerate(rest) if w == "的"), None)
            if de_at is None or any(_zh_is_numeral(t) for t in rest[:de_at]):
                return True
        return False

    for i, (word, tag) in enumerate(tokens):
        if word in _ZH_VERBS and in_phrase and (
            noun_position(i) or i + 1 == len(tokens) and more_clauses and tokens[0][0] in _ZH_BASIS
        ):
            continue  # "对下面的评论进行…", "根据描述或摘要生成…", "根据症状描述，确定…"
        if word in _ZH_VERBS:
            # 给 / 用 open a phrase when another instruction verb follows ("给这款手机写…").
            if word in _ZH_PREPOSITIONS and main_verb_follows(i):
                in_phrase = True
                if word in _ZH_OBJECT_MARKERS:
                    object_at = i + 1
                continue
            return i, object_at
        if word in _ZH_PREPOSITIONS:
            in_phrase = True
            if word in _ZH_OBJECT_MARKERS:
                object_at = i + 1
            continue
        if in_phrase:
            if object_at >= 0 and tag.startswith("v") and word not in _ZH_NOT_TASK_VERBS \
                    and not noun_position(i) and not listed_verb_follows(i):
                return i, object_at  # "把这段话压缩到…": a verb our list lacks, after the object
            continue
        if tag.startswith(("d", "a")) or tag == "x" and not word.strip() or word == "地":
            continue  # adverbs before the verb: "简要概括", "详细解释"
        if i + 1 < len(tokens) and tokens[i + 1][0] == "地":
            continue  # "礼貌地回复": an adverb made with 地
        if tag.startswith("v") and word not in _ZH_NOT_TASK_VERBS:
            return i, object_at  # a verb our list lacks, first after adverbs at most: take it
        return None
    return None


def _zh_head(tokens: list[tuple[str, str]]) -> str | None:
    """The head of a Chinese noun phrase: its last content word (Chinese phrases are head-final:
    一首关于春天的诗 → 诗, 一封请假邮件 → 邮件)."""
    if any(word in _ZH_CLAUSE_MARKERS for word, _ in tokens):
        return None
    content = [t for t in tokens if t[0].strip()]
    if content and content[0][0] in _ZH_OPEN_QUOTES and content[-1][0] in _ZH_CLOSE_QUOTES:
        return None  # "把“非常感谢”翻译成德语": quoted text is material, not a noun
    while tokens and (
        tokens[-1][1] in _ZH_NOT_HEAD_TAGS or tokens[-1][1].startswith("u")
        or tokens[-1][0] in ("的", "之", "一下")
        or _ZH_NUMERAL_RE.match(tokens[-1][0]) or tokens[-1][1] == "r"
    ):
        if tokens[-1][0] == "的":
            return None  # "找出最大的一个": a 的 phrase with no noun after it
        tokens = tokens[:-1]
    if not tokens:
        return None
    if tokens[0][0] in _ZH_PERSONS and len(tokens) > 1 and tokens[1][0] != "的" and tokens[1][1].startswith("v"):
        return None  # "想象你生活在火星上": the object is a clause
    if len(tokens) == 1 and tokens[0][0] in _ZH_PRONOUNS:
        return None
    last = tokens[-1]
    if (last[1] in ("k", "ng") or last[0] in _ZH_NOUN_SUFFIXES and last[1] != "n") and len(tokens) > 1 \
            and tokens[-2][1].startswith(("n", "v")) and tokens[-2][0] not in ("的", "之"):
        return _zh_clean_head(tokens[-2][0] + last[0])  # 心理咨询 + 师
    return _zh_clean_head(last[0])



def _zh_clean_head(word: str) -> str:
    """jieba keeps some phrases whole (这段话, 封电子邮件, 的洲): the head is the noun in them."""
    word = _ZH_DEMONSTRATIVE_RE.sub("", word).removeprefix("的") or word
    word = _ZH_LEADING_NUMERAL_RE.sub("", word) or word  # 一封信 → 信
    if len(word) >= 3 and word[0] in _ZH_MEASURE_CHARS and word[1:] in _zh_tagger().tokenizer.FREQ:
        word = word[1:]
    return word


def _zh_object(tokens: list[tuple[str, str]], verb_at: int, object_at: int) -> str | None:
    if object_at >= 0:
        # "将下面的句子翻译成英文": the object is between 将 and the verb, up to any later phrase.
        span = tokens[object_at:verb_at]
        for i, (word, _) in enumerate(span):
            if i > 0 and word in _ZH_PREPOSITIONS and word not in ("和", "与"):
                span = span[:i]
                break
        return _zh_head(span)
    verb = tokens[verb_at][0]
    span = tokens[verb_at + 1:]
    while span and span[0][0] in _ZH_SKIP_AFTER_VERB:
        span = span[1:]
    if verb in _ZH_DITRANSITIVE and len(span) > 1 and span[0][0] in _ZH_PERSONS:
        span = span[1:]  # "告诉我…", "给他一些建议": skip the person
    return _zh_head(_zh_object_span(span))


def _zh_object_span(span: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The tokens of the object phrase at the start of ``span`` (what follows the verb).

    It ends at a complement or a conjunction ("翻译成英文", "添加注释到…", "写脚本以打印…"),
    unless nothing but a numeral came before: then the marker sits inside a modifier ("一封给客户
    的道歉信"). 和/与 end it only after the last 的, since before it they join the modifier's words
    ("比较猫和狗作为宠物的优缺点"); a word right after 的 is the head whatever it is (…的和).
    A second verb does not end it: most listed verbs are also nouns at a phrase's end (产品介绍,
    情感分类), which matters more than the rarer serial verbs (选择一个词语填空)."""
    if span and span[0][0] in _ZH_COMPLEMENTS:
        return []  # "翻译成英文": a result, no object
    last_de = max((i for i, (word, _) in enumerate(span) if word == "的"), default=-1)
    for i, (word, _) in enumerate(span):
        if i == last_de + 1 and last_de >= 0 or word not in _ZH_OBJECT_END:
            continue
        if word in _ZH_COORDINATORS and i < last_de:
            continue
        if i < last_de and any(tag.startswith("v") for _, tag in span[:i - 1]):
            continue  # "一条删除年龄为空的行的语句": 为 is inside a modifier that a verb opens
        before = [w for w, tag in span[:i]
                  if not (_ZH_NUMERAL_RE.match(w) or tag.startswith(("m", "q", "x", "u")) or w == "所")]
        if before:
            return span[:i]
    return span


def _verb_noun_zh(instruction: str) -> tuple[str | None, str | None]:
    sentence = _ZH_PARENTHESES_RE.sub("", _zh_first_sentence(instruction))
    wrapped_any = False
    first = True
    clauses = _ZH_CLAUSE_SPLIT_RE.split(sentence)
    for number, clause in enumerate(clauses):
        clause, wrapped = _zh_strip_wrapper(clause.strip())
        wrapped_any = wrapped_any or wrapped
        if not clause or _ZH_SETUP_RE.match(clause) and number + 1 < len(clauses):
            continue
        if wrapped_any:
            clause = clause.rstrip("吗呢")  # "你能写一首诗吗": the 吗 only makes it polite
        tokens = _zh_tokens(clause)
        if first and not wrapped_any and _zh_is_question(sentence, instruction) and not (
            tokens and tokens[0][0] in _ZH_VERBS
        ):
            return None, None  # a question, unless it opens with a task verb ("写…，并解释为什么…？")
        first = False
        found = _zh_find_verb(tokens, number + 1 < len(clauses))
        if found is None:
            continue
        verb_at, object_at = found
        verb = tokens[verb_at][0]
        return verb, _zh_object(tokens, verb_at, object_at)
    return None, None


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def verb_noun(instruction: str, lang: str) -> tuple[str | None, str | None]:
    """The leading (root) verb of ``instruction``'s first sentence and the head noun of its direct
    object, both as lemmas ("Writes"→"write", "poems"→"poem"); None for either when there is none.

    "Explain why the sky is blue" → ("explain", None); "What is the capital of France?" →
    (None, None). Polite wrappers are seen through: "Can you write a poem" → ("write", "poem"),
    "请你写一首诗" → ("写", "诗"). ``lang`` is "en" or "zh"; anything else gives (None, None).
    """
    if not isinstance(instruction, str) or not instruction.strip():
        return None, None
    if lang == "en":
        return _verb_noun_en(instruction)
    if lang == "zh":
        return _verb_noun_zh(instruction)
    return None, None


def top_pairs(
    items: Iterable[tuple[str, str]], n_verbs: int = 20, n_nouns: int = 4
) -> list[tuple[str, int, list[tuple[str, int]]]]:
    """The ``n_verbs`` most common verbs of ``items`` ((instruction, lang) pairs), each with its
    count and its ``n_nouns`` most common object nouns with their counts; ties are broken
    alphabetically (by code point, so deterministic across languages). An instruction with a verb but no object noun counts for the verb only, so a
    verb's noun counts may add up to less than its own count. Instructions without a verb are
    not counted. Verbs of the two languages are counted apart (they are different strings).
    """
    verb_counts: Counter[str] = Counter()
    noun_counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for instruction, lang in items:
        verb, noun = verb_noun(instruction, lang)
        if verb is None:
            continue
        verb_counts[verb] += 1
        if noun is not None:
            noun_counts[verb][noun] += 1
    top_verbs = sorted(verb_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max(n_verbs, 0)]
    return [
        (verb, count, sorted(noun_counts[verb].items(), key=lambda kv: (-kv[1], kv[0]))[:max(n_nouns, 0)])
        for verb, count in top_verbs
    ]
