"""Quality filters: the Self-Instruct / Alpaca / BELLE heuristics, and this project's precise ones,
for English and Chinese.

Every filter takes ``rules`` (``selfinstruct.rules``): ``"default"``, the precise set, judges what
the task asks for, so that good human-written data passes; ``"self-instruct"``, ``"alpaca"`` and
``"belle"`` reproduce the rule each project released, character for character where it has one,
and keep everything where it has none; ``"paper"`` picks belle or self-instruct per record.

The default set differs from the papers where they misfire on human-written data:

- length: the task's own words count (``text.task_part``), not an article or a dialogue the
  instruction carries; fewer than 2 words (3 Han characters) is too short.
- bad_start: a fragment (closing or separating punctuation, a list bullet, a continuation such as
  "and …", "并且…"); a digit, an opening quote or bracket, an emoji are fine starts.
- blacklist: the task asks for what a text model cannot produce or perceive (draw a picture,
  generate an image, watch this video, 画一幅图, 这张图片); the word alone ("a YouTube video title",
  "CSV files", 音乐家) is fine.
- url: a URL the student would have to visit (in the instruction, or an input that is only a link),
  or one the answer gives unasked; a link inside material the input carries, a URL the answer
  gives when asked for links, one inside code, or one the task treats as data ("extract the
  domain") is fine.
- refusal: the answer (or instruction) refusing or disclaiming: "As an AI language model", "I'm
  sorry, but I cannot provide…", "我是一个人工智能助手", "抱歉，我无法回答"; a topic word
  ("language model", "GPT-4", "OpenAI", 语言模型) is not.

The instruction-only filters (``fields == ("instruction",)``) come first: the generate loop checks
them before it pays the teacher for instances (under ``belle`` the blacklist reads every field, as
BELLE's code does, and says so in its instance's ``fields``).

Reason codes: truncated, too_short, too_long, bad_start, blacklist_word, contains_url, empty_output,
nooutput_marker, output_echoes_input, output_echoes_instruction, ends_with_colon, refusal.
"""
from __future__ import annotations

import re
import string
import unicodedata

from selfinstruct.filters.base import Filter, Rejection
from selfinstruct.record import Record
from selfinstruct.rules import PAPER, check_rules, paper_set_for
from selfinstruct.text import cjk_count, is_cjk, length, normalise, strip_quoted, task_part

ALL_FIELDS = ("instruction", "input", "output")


class RuleSetFilter(Filter):
    """A filter whose rule depends on the run's rule set (its option ``rules``). Subclasses with
    options of their own call ``_set_rules`` in their ``__init__``; ``check`` asks
    ``rules_for(record)``."""

    def __init__(self, rules: str = "default"):
        self._set_rules(rules)

    def _set_rules(self, rules: str) -> None:
        self.rules = check_rules(rules)

    def rules_for(self, record: Record) -> str:
        return paper_set_for(record.instruction) if self.rules == PAPER else self.rules

    def _may_use(self, *sets: str) -> bool:
        """Whether any of ``sets`` can apply to a record of this run."""
        if self.rules == PAPER:
            return any(s in ("self-instruct", "belle") for s in sets)
        return self.rules in sets


class Truncated(RuleSetFilter):
    """The teacher hit its token limit inside this record (the generate loop sets meta["truncated"]).
    Every paper drops these too (finish_reason == "length")."""
    name = "truncated"
    stage = "quality"
    fields = ("instruction",)

    def check(self, record: Record) -> Rejection | None:
        if record.meta.get("truncated"):
            return self.reject("truncated", "the teacher stopped at its token limit")
        return None


# BELLE's limits are in characters of the raw instruction: ≤ 3 is too short; with an input, 100 or
# more is too long (150 when the instruction gives an example).
_BELLE_MIN, _BELLE_MAX, _BELLE_MAX_EXAMPLE = 4, 100, 150
_PAPER_MIN_WORDS, _PAPER_MAX_WORDS = 4, 150
_ALNUM_RUN_RE = re.compile(r"[A-Za-z0-9]+")
# A two-word task ("Define entropy.") or three characters (写首诗) is complete; one word is not.
_DEFAULT_MIN_WORDS, _DEFAULT_MIN_CHARS, _DEFAULT_MAX_WORDS, _DEFAULT_MAX_CHARS = 2, 3, 150, 300


class InstructionLength(RuleSetFilter):
    """Words for space-delimited text, characters for Chinese. The default set counts the task's
    own words for the upper bound (an instruction may carry the article it is about) and the whole
    instruction for the lower one. Self-Instruct and Alpaca count ``str.split()`` words (≤ 3 or
    > 150 rejected) whatever the script; BELLE counts characters. A threshold left at ``None``
    takes the rule set's value."""
    name = "length"
    stage = "quality"
    fields = ("instruction",)

    def __init__(self, min_words: int | None = None, max_words: int | None = None,
                 min_chars: int | None = None, max_chars: int | None = None, rules: str = "default"):
        self._set_rules(rules)
        self.min_words, self.max_words = min_words, max_words
        self.min_chars, self.max_chars = min_chars, max_chars

    def check(self, record: Record) -> Rejection | None:
        rules = self.rules_for(record)
        if rules == "belle":
            return self._belle(record)
        if rules in ("self-instruct", "alpaca"):
            n = len(record.instruction.split())
            return self._bounds(n, n, _or(self.min_words, _PAPER_MIN_WORDS),
                                _or(self.max_words, _PAPER_MAX_WORDS), "words")
        text = record.instruction
        if is_cjk(text):
            low, high, unit = _or(self.min_chars, _DEFAULT_MIN_CHARS), _or(self.max_chars, _DEFAULT_MAX_CHARS), \
                "characters"
        else:
            low, high, unit = _or(self.min_words, _DEFAULT_MIN_WORDS), _or(self.max_words, _DEFAULT_MAX_WORDS), \
                "words"
        whole = length(text)
        if whole <= high:                       # cheap: most instructions are short
            return self._bounds(whole, whole, low, high, unit)
        own = task_part(text)
        own_n = cjk_count(own) + len(_ALNUM_RUN_RE.findall(own)) if unit == "characters" else len(own.split())
        return self._bounds(whole, own_n, low, high, unit)

    def _bounds(self, whole: int, own: int, low: int, high: int, unit: str) -> Rejection | None:
        if whole < low:
            return self.reject("too_short", f"{whole} {unit} (min {low})")
        if own > high:
            return self.reject("too_long", f"{own} {unit} (max {high})")
        return None

    def _belle(self, record: Record) -> Rejection | None:
        inst = record.instruction.strip()
        low = _or(self.min_chars, _BELLE_MIN)
        if len(inst) < low:
            return self.reject("too_short", f"{len(inst)} characters (min {low})")
        if _belle_input(record.input):
            limit = _BELLE_MAX_EXAMPLE if ("示例" in inst or "例子" in inst) else _BELLE_MAX
            limit = _or(self.max_chars, limit - 1) + 1
            if len(inst) >= limit:
                return self.reject("too_long", f"{len(inst)} characters (max {limit - 1})")
        return None


def _or(value: int | None, fallback: int) -> int:
    return fallback if value is None else value


def _belle_input(text: str) -> str:
    """The input as BELLE kept it: "" when it says 无输入."""
    return "" if "无输入" in text else text.strip()


def _self_instruct_form(text: str) -> str:
    """The instruction as Self-Instruct checked it: whitespace collapsed, ``str.capitalize()``d."""
    return re.sub(r"\s+", " ", text).strip().capitalize()


# Zero-width characters and a stray byte-order mark: invisible, so not what the instruction starts with.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
# Punctuation that closes or separates: text starting with it is the tail of something cut off.
_FRAGMENT_START = frozenset(",.;:!?)]}、。，；：！？）】》」』〉〕”’…‥")
# Bullets and dashes followed by a space: a list item or a dangling clause.
_BULLET_RE = re.compile(r"[-–—*•·●▪]\s")
# A lower-case conjunction, or a Chinese connective, opening the text: it continues something.
_CONTINUATION_RE = re.compile(r"(?:and|or|but|nor|then|because|whereas|which)\b(?!-)|(?:并且|而且|以及|然后再)")


class BadStart(RuleSetFilter):
    """Default: the instruction is not a fragment. Self-Instruct / Alpaca: it starts with ASCII and
    not with ASCII punctuation. BELLE has no start rule."""
    name = "bad_start"
    stage = "quality"
    fields = ("instruction",)

    def check(self, record: Record) -> Rejection | None:
        rules = self.rules_for(record)
        if rules == "belle":
            return None
        if rules in ("self-instruct", "alpaca"):
            inst = _self_instruct_form(record.instruction) if rules == "self-instruct" \
                else record.instruction.strip()
            if inst and (inst[0] in string.punctuation or not inst[0].isascii()):
                return self.reject("bad_start", f"starts with '{inst[0]}'")
            return None
        text = record.instruction.lstrip().lstrip(_INVISIBLE).lstrip()
        if not text:
            return None
        first = text[0]
        if first in _FRAGMENT_START and not (first == "." and text[1:2].isalnum()):   # ".NET", ".5"
            return self.reject("bad_start", f"starts with '{first}'")
        if _BULLET_RE.match(text):
            return self.reject("bad_start", f"starts with '{first}'")
        m = _CONTINUATION_RE.match(text)
        if m:
            return self.reject("bad_start", f"starts with '{m.group(0)}'")
        if unicodedata.category(first) in ("Cc", "Cf", "Co", "Cn"):
            return self.reject("bad_start", f"starts with U+{ord(first):04X}")
        return None


# The papers' lists: tasks a text-only model cannot do, as the projects released them.
BLACKLIST_SELF_INSTRUCT = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to",
)
BLACKLIST_ALPACA = BLACKLIST_SELF_INSTRUCT + ("video", "audio", "music", "flowchart", "diagram")
BLACKLIST_BELLE = ("图像", "图片", "照片", "文件", "图表", "图层", "曲线图", "折线图", "直线图", "柱形图", "饼状图", "链接")
# The papers' matcher: re.compile(r"\b({w})\b", re.IGNORECASE) per word (Unicode word boundaries).
_PAPER_BLACKLIST_RE = {
    name: [(w, re.compile(r"\b({0})\b".format(w), re.IGNORECASE)) for w in words]
    for name, words in (("self-instruct", BLACKLIST_SELF_INSTRUCT), ("alpaca", BLACKLIST_ALPACA))
}

# The default set: what a text model cannot produce or perceive.
_EN_MEDIA = (r"(?:image|picture|pic|photo(?:graph)?|illustration|painting|drawing|sketch|screenshot|"
             r"video|video clip|clip|footage|audio|audio clip|recording|voice message|diagram|infographic)s?")
# The medium is the object itself, not a modifier of one ("an image caption", "a video title").
_EN_MEDIA_END = r"(?=\s+(?:of|showing|depicting|that|which|with|about|illustrating|for|to|in|on)\b|\s*[.,;:!?]|\s*$)"
# Patterns of a sentence's opening (the task asked of the model) are matched at each sentence start;
# the others are searched for, only in text holding one of their hint words.
_EN_OPENING = r"\s*(?:(?:please|can you|could you|now|then),?\s+)?"
_EN_AT_START = (
    # Draw / sketch / paint as the task, unless figurative or in text characters.
    r"(?:draw|sketch|paint)\b(?!\s+(?:(?:a|an|the|some|your|my)\s+)?(?:conclusions?|comparisons?|"
    r"parallels?|distinctions?|analog(?:y|ies)|inspiration|attention|lessons?|insights?|up|on|upon|from|out|"
    r"ascii|text|emoji|(?:\w+\s+)?(?:in|using|with) (?:ascii|text|characters|emoji)))",
    # Make a picture / video / recording ("how do I take a good photo" asks for advice: not an opening).
    r"(?:create|generate|make|produce|design|render|take|shoot|film|record|upload)\s+(?:me\s+)?"
    r"(?:(?!(?:for|of|about|to|from|with|in|on|into|using|based|and)\b)[\w'-]+\s+){0,3}?" + _EN_MEDIA + _EN_MEDIA_END,
    # Watch, listen to, visit: things the student would have to do outside the text.
    r"(?:watch|listen to|view|play)\s+(?:this|these|that|the following|the attached|the above|"
    r"the below|the)\s+(?:[\w-]+\s+)?(?:video|clip|audio|recording|footage|podcast|song|track|voice message)s?\b",
    r"(?:go to|visit|open|browse|navigate to|click(?: on)?)\s+(?:this|the following|the attached|"
    r"that|the)\s+(?:[\w-]+\s+)?(?:link|website|web ?page|site|url|page|file)s?\b",
)
_EN_ANYWHERE = (
    # A medium the student is pointed at but cannot see or hear.
    r"\b(?:this|these|that|those|the (?:following|attached|given|above|below|provided|uploaded|linked|"
    r"accompanying|shown|displayed|embedded))\s+(?:[\w-]+\s+)?" + _EN_MEDIA + r"\b(?!\s+(?:caption|title|"
    r"description|prompt|script|idea|format|file name|filename|editor|generator|model|game|book|call|"
    r"conference|editing)s?\b)",
    r"\b" + _EN_MEDIA + r"\s+(?:below|above|attached|provided|shown (?:below|above|here))\b",
    r"\b(?:the )?attached (?:file|document|spreadsheet|pdf|attachment)s?\b",
    # "Describe the picture." (the whole object is the absent medium, not "the picture of…").
    r"\b(?:describe|caption|analy[sz]e|interpret|look at|what(?:['’]s| is| do you see) in)\s+(?:the|this|that)\s+"
    + _EN_MEDIA + r"(?=\s*[.?!,;:]|\s*$)",
)
_ZH_MEDIA = r"(?:图片|图像|照片|插图|插画|海报|视频|音频|录音|图画|画作|漫画|截图|图表|[^\s，。！？、的]{0,3}图(?![书案例形标层纸片像表示]))"
_ZH_MEDIA_END = r"(?![的脚本标题文案大纲简介描述字幕剧本介绍创意名称])"
_ZH_OPENING = r"\s*(?:请你?|帮我|给我|你能|能否|能不能|可以)?\s*"
_ZH_AT_START = (
    # 画 / 绘制 as the task (画一只猫, 请画出…), not the idioms (画蛇添足, 画龙点睛).
    r"(?:画|绘制|手绘)(?:[一出个张幅只条两三几下]|[^\s，。]{0,8}?" + _ZH_MEDIA + ")",
    # Make a picture / video / recording (如何拍出好看的照片 asks for advice: not an opening).
    r"(?:画|绘制|生成|制作|拍摄|拍|录制|创作|设计|上传)(?:一|出)?[张幅段个部组份]?[^\s，。！？]{0,6}?"
    r"(?:图片|图像|照片|插图|插画|海报|视频|音频|录音|图画|画作|漫画|截图|图表|示意图|流程图|结构图|思维导图|"
    r"[柱饼线条]状?图|折线图|曲线图)" + _ZH_MEDIA_END,
    # 描述图片里的内容: the picture is not there.
    r"(?:描述|分析|说说|看看|解读)(?:一下)?(?:图片|照片|图像|视频|画面)(?:中|里)?(?:的内容)?(?=[，。！？,.!?]|$)",
)
_ZH_ANYWHERE = (
    # A medium the student is pointed at (a title in 《》 before 这幅画 names the painting).
    r"(?<!》)(?<!》的)(?:这|那)[张幅段个部些]?(?:图片|图像|照片|视频|音频|录音|画|截图|插图|图)(?![书案例形标层纸])",
    r"(?:下面|以下|上面|上述|附件|附上|给定|所给|提供|如下)的?(?:这)?[张幅段个部些]?(?:图片|图像|照片|视频|音频|录音|截图|插图|图)(?![书案例形标层纸])",
    r"[下上左右]图(?![书馆])|(?:查看|打开|根据|见|参考|阅读|参见)附件",
    r"(?:这|那)[张幅段个部些]?\s*(?i:image|picture|photo|video|audio|clip)",
    r"(?:观看|收看|看|听|收听)(?:一下)?(?:这|下面|以下|上面|给定|附上|所给)的?[段个部首些]?(?:视频|音频|录音|歌曲|音乐|歌|播客|片段)",
    r"(?:访问|打开|点击|浏览|进入)(?:一下)?(?:这个|以下|下面|该|上面|所给|给定)的?(?:链接|网址|网站|网页|文件)",
)
_EN_AT_START_RE = re.compile(_EN_OPENING + "(?:" + "|".join(_EN_AT_START) + ")", re.IGNORECASE)
_EN_ANYWHERE_RE = re.compile("|".join(f"(?:{p})" for p in _EN_ANYWHERE), re.IGNORECASE)
_ZH_AT_START_RE = re.compile(_ZH_OPENING + "(?:" + "|".join(_ZH_AT_START) + ")")
_ZH_ANYWHERE_RE = re.compile("|".join(f"(?:{p})" for p in _ZH_ANYWHERE))
_SENTENCE_BREAK_RE = re.compile(r"[.!?。！？\n]")
# Words one of which each "anywhere" pattern holds (cheap pre-check before the regexes).
_EN_ANYWHERE_HINTS = ("image", "pic", "photo", "illustration", "painting", "drawing", "sketch", "screenshot",
                      "video", "clip", "footage", "audio", "recording", "voice", "diagram", "infographic", "attached")
_ZH_ANYWHERE_HINTS = ("图", "照片", "视频", "音频", "录音", "画", "附件", "歌", "音乐", "播客", "片段", "链接", "网址",
                      "网站", "网页", "文件", "image", "photo", "video", "audio", "clip")


def _sentence_starts(text: str):
    yield 0
    for m in _SENTENCE_BREAK_RE.finditer(text):
        if m.end() < len(text):
            yield m.end()


class Blacklist(RuleSetFilter):
    """Default: the task asks for what a text model cannot do. The papers: their word lists."""
    name = "blacklist"
    stage = "quality"
    fields = ("instruction",)

    def __init__(self, rules: str = "default"):
        self._set_rules(rules)
        if self._may_use("belle"):      # BELLE searched the whole generated block
            self.fields = ALL_FIELDS

    def check(self, record: Record) -> Rejection | None:
        rules = self.rules_for(record)
        if rules == "default":
            return self._default(record.instruction)
        if rules == "belle":
            for text in (record.instruction, record.input, record.output):
                for word in BLACKLIST_BELLE:
                    if word in text:
                        return self.reject("blacklist_word", f"contains '{word}'")
            return None
        inst = _self_instruct_form(record.instruction) if rules == "self-instruct" else record.instruction.strip()
        for word, pattern in _PAPER_BLACKLIST_RE[rules]:
            if pattern.search(inst):
                return self.reject("blacklist_word", f"contains '{word}'")
        if inst.startswith("Write a program"):
            return self.reject("blacklist_word", "starts with 'Write a program'")
        return None

    def _default(self, instruction: str) -> Rejection | None:
        text = strip_quoted(instruction)        # a quoted title or sentence is material, not the task
        cjk = not instruction.isascii()
        for start in _sentence_starts(text):
            m = _EN_AT_START_RE.match(text, start)
            if m:
                return self._asks_for(m)
        lowered = text.lower()
        if any(h in lowered for h in _EN_ANYWHERE_HINTS):
            m = _EN_ANYWHERE_RE.search(text)
            if m:
                return self._asks_for(m)
        if not cjk:
            return None
        # Chinese on the whole text: a title in 《》 before 这幅画 names the painting.
        for start in _sentence_starts(instruction):
            m = _ZH_AT_START_RE.match(instruction, start)
            if m:
                return self._asks_for(m)
        if any(h in instruction.lower() for h in _ZH_ANYWHERE_HINTS):
            m = _ZH_ANYWHERE_RE.search(instruction)
            if m:
                return self._asks_for(m)
        return None

    def _asks_for(self, m: re.Match) -> Rejection:
        return self.reject("blacklist_word", f"asks for '{' '.join(m.group(0).split())}'")


# Characters a URL is made of (RFC 3986); Chinese text right after a URL is not part of it.
_URL_RE = re.compile(r"(?:https?://|(?<![A-Za-z0-9.])www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+",
                     re.IGNORECASE)
_URL_TRAILING = ".,;:!?)]'\""
# A URL inside a string literal of code (url = "https://…", requests.get('http://…')): the program
# calls it, nobody has to visit it.
_URL_IN_CODE_RE = re.compile(r"(?:[(=,\[]\s*[rbfu]?|^\s*)[\"'](?:https?://|www\.)", re.IGNORECASE | re.M)
_FENCED_RE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]+`", re.S)
# Instructions that ask for links, sources or places to find things: their answers may hold URLs.
_ASKS_FOR_LINKS_RE = re.compile(
    r"(?i:\b(?:links?|urls?|websites?|web ?sites?|web ?pages?|sites?|homepages?|resources?|references?|"
    r"sources?|citations?|papers?|publications?|bibliography|download|where (?:can|could|do|should) (?:i|we|one))\b)"
    r"|链接|网址|网站|网页|官网|主页|资源|参考|出处|来源|论文|文献|下载|在哪"
)
# Instructions that treat a URL as text to work on (extract, validate, shorten…).
_URL_AS_DATA_RE = re.compile(
    r"(?i:\b(?:urls?|links?|domains?|hyperlinks?|href|web address(?:es)?|e-?mail address(?:es)?)\b)"
    r"|网址|链接|域名|超链接"
)
_URL_DATA_VERB_RE = re.compile(
    r"(?i:\b(?:extract|parse|validate|valid|shorten|encode|decode|escape|format|regex|regular expression|match|"
    r"split|normali[sz]e|convert|count|sort|remove|replace|strip|classify|categori[sz]e|detect|find all|list all|"
    r"identify|get the|return the|check)\b)"
    r"|提取|解析|验证|校验|缩短|编码|解码|正则|格式|转换|匹配|拆分|判断|统计|去掉|删除|替换|识别|分类|找出"
)
_URL_HINTS = ("//", "ww.", "WW.")


def _url_in(text: str):
    if not any(h in text for h in _URL_HINTS):       # cheap pre-check
        return None
    return _URL_RE.search(text)


class Url(RuleSetFilter):
    """Default: a URL the student would have to visit (in the instruction or input), or one the
    answer gives unasked. BELLE: "http" anywhere. Self-Instruct and Alpaca have no URL rule."""
    name = "url"
    stage = "quality"
    fields = ALL_FIELDS

    def check(self, record: Record) -> Rejection | None:
        rules = self.rules_for(record)
        if rules == "belle":
            for text in (record.instruction, record.input, record.output):
                if "http" in text:
                    m = _URL_RE.search(text)
                    return self.reject("contains_url", m.group(0).rstrip(_URL_TRAILING) if m else "http")
            return None
        if rules != "default":
            return None
        m = _url_in(record.instruction) or self._input_is_a_link(record.input)
        if m and not self._url_is_data(record.instruction):
            return self.reject("contains_url", m.group(0).rstrip(_URL_TRAILING))
        m = _url_in(record.output)
        if m and not self._output_may_link(record):
            return self.reject("contains_url", m.group(0).rstrip(_URL_TRAILING))
        return None

    @staticmethod
    def _input_is_a_link(text: str):
        """A URL that stands for the input (the material is elsewhere); a link inside material the
        input carries (an email, an article) is part of that material."""
        m = _url_in(text)
        if m is None:
            return None
        rest = text[:m.start()] + " " + text[m.end():]
        if cjk_count(rest) < 8 and len(_ALNUM_RUN_RE.findall(rest)) < 5:    # "See https://… for details"
            return m
        return None

    @staticmethod
    def _url_is_data(instruction: str) -> bool:
        return bool(_URL_AS_DATA_RE.search(instruction) and _URL_DATA_VERB_RE.search(instruction))

    def _output_may_link(self, record: Record) -> bool:
        if _ASKS_FOR_LINKS_RE.search(task_part(record.instruction)) or self._url_is_data(record.instruction):
            return True
        # Every URL of the output inside code, or given by the instruction or input: fine.
        outside_code = _FENCED_RE.sub(" ", record.output)
        for m in _URL_RE.finditer(outside_code):
            url = m.group(0).rstrip(_URL_TRAILING)
            if url in record.instruction or url in record.input:
                continue
            start = m.start()
            line_start = outside_code.rfind("\n", 0, start) + 1
            if _URL_IN_CODE_RE.search(outside_code[line_start:start + 12]):
                continue
            return False
        return True


class EmptyOutput(RuleSetFilter):
    """An empty output (Self-Instruct's prepare_for_finetuning drops these too; Alpaca's and BELLE's
    generation code does not)."""
    name = "empty_output"
    stage = "quality"
    fields = ("output",)

    def check(self, record: Record) -> Rejection | None:
        if self.rules_for(record) not in ("default", "self-instruct"):
            return None
        if not record.output.strip():
            return self.reject("empty_output", "output is empty")
        return None


# Markers a teacher writes instead of an answer. "<noinput>" in the input is Alpaca's empty input
# and is fine; only the output is looked at.
_NOOUTPUT_ANYWHERE_RE = re.compile(r"<\s*no[\s_-]*output\s*>|<\s*无输出\s*>", re.IGNORECASE)
_NOOUTPUT_ALONE_RE = re.compile(r"n/a|无输出", re.IGNORECASE)


class NoOutputMarker(RuleSetFilter):
    """Default only (the papers kept these)."""
    name = "nooutput"
    stage = "quality"
    fields = ("output",)

    def check(self, record: Record) -> Rejection | None:
        if self.rules_for(record) != "default":
            return None
        m = _NOOUTPUT_ANYWHERE_RE.search(record.output)
        if m:
            return self.reject("nooutput_marker", m.group(0))
        alone = record.output.strip().rstrip(".。")
        if _NOOUTPUT_ALONE_RE.fullmatch(alone):
            return self.reject("nooutput_marker", alone)
        return None


def _could_repeat(output: str, other: str) -> bool:
    # An output over twice as long as the text it would repeat, plus room for punctuation and
    # spacing, holds more words than it: the long outputs (most of them) are not normalised at all.
    return bool(other) and len(output) <= 2 * len(other) + 32


class Echo(RuleSetFilter):
    """The output repeats the input or the instruction. Default: equal once case, width, sentence
    punctuation and spacing are set aside (not operators, brackets or quotes: fixing "a - b" into
    "a + b" is no repeat). Self-Instruct: input == output once stripped."""
    name = "echo"
    stage = "quality"
    fields = ALL_FIELDS

    def check(self, record: Record) -> Rejection | None:
        rules = self.rules_for(record)
        if rules == "self-instruct":
            if record.output.strip() and record.input.strip() == record.output.strip():
                return self.reject("output_echoes_input", "output repeats the input")
            return None
        if rules != "default":
            return None
        vs_input = _could_repeat(record.output, record.input)
        vs_instruction = _could_repeat(record.output, record.instruction)
        if not (vs_input or vs_instruction):
            return None
        output = _echo_key(record.output)
        if not normalise(record.output):
            return None
        if vs_input and output == _echo_key(record.input):
            return self.reject("output_echoes_input", "output repeats the input")
        if vs_instruction and output == _echo_key(record.instruction):
            return self.reject("output_echoes_instruction", "output repeats the instruction")
        return None


# Sentence punctuation and spacing: what a repeat may differ in. Operators, brackets and quotes
# stay: "a - b" → "a + b" fixes code, "['a', 'b']" → "a, b" converts a list.
_ECHO_IGNORED_RE = re.compile(r"[\s.,!?;:。，！？；：、…]+")


def _echo_key(text: str) -> str:
    return _ECHO_IGNORED_RE.sub("", unicodedata.normalize("NFKC", text).casefold())


class EndsWithColon(RuleSetFilter):
    """Self-Instruct only: an input or output ending with ":" is an unfinished generation
    (prepare_for_finetuning.py). The default set leaves this to ``chatter`` and ``missing_material``:
    a human input may end with a colon ("Options:")."""
    name = "ends_with_colon"
    stage = "quality"
    fields = ("input", "output")

    def check(self, record: Record) -> Rejection | None:
        if self.rules_for(record) != "self-instruct":
            return None
        for field in ("input", "output"):
            if getattr(record, field).strip().endswith(":"):
                return self.reject("ends_with_colon", f"{field} ends with ':'")
        return None


# --- refusal ----------------------------------------------------------------------------------
# The default set: the text refusing, or the model disclaiming what it is. Alternatives are tried
# left to right at each position, so the longer phrase is listed before the shorter one it contains.
# Self-descriptions are anchored on what follows ("As an AI, …" but not "As an AI researcher";
# "作为一个AI，" but not "作为一个人工智能专家") so that ordinary text passes.
_AI_ROLE_END = r"(?=\s*(?:[,，.。;；:：!！]|$|I\b|我))"
_AI_SELF = r"(?:AI|artificial intelligence)(?:\s+(?:language\s+)?(?:assistant|model|chatbot))?"
_IAM_FOLLOW = (r"(?=\s*(?:[,.;:!—]|$|and\b|so\b|that\b|with(?:out)?\b|developed\b|created\b|trained\b|made\b|"
               r"built\b|designed\b|programmed\b|by\b|from\b|I\b|here\b))")
_REFUSAL_PATTERNS = (
    r"\bas an? (?:large\s+)?(?:AI\s+)?language model\b",
    r"\bas an? " + _AI_SELF + _AI_ROLE_END,
    r"\bI(?:['’]m| am) (?:just |only |merely |simply )?(?:an? )?(?:(?:large\s+)?(?:AI\s+)?language model|AI model|"
    r"AI assistant|AI chatbot|AI|artificial intelligence|chatbot|virtual assistant)" + _IAM_FOLLOW,
    r"\bI(?:['’]m| am) (?:sorry|afraid),?\s+(?:but\s+)?I\s+(?:cannot|can['’]t|can not|am unable to|am not able to|"
    r"won['’]t|will not|do not have|don['’]t have)\b(?:\s+(?:access|fulfill?|comply|assist|provide|generate|"
    r"create|answer|complete|write|browse|perform|predict|engage|express personal|form opinions)\b)",
    r"\bI\s+(?:cannot|can['’]t|am unable to|am not able to|won['’]t)\s+(?:fulfill?|comply with|assist with|"
    r"browse|access the internet|access real-time|provide (?:real-time|personal|medical|legal|financial) "
    r"(?:information|advice|opinions)|generate (?:images|pictures|videos)|see (?:images|pictures))\b",
    r"\bI (?:do not|don['’]t) have (?:personal |any )?(?:opinions|feelings|emotions|beliefs|preferences|"
    r"personal experiences|a physical (?:body|form)|the ability to (?:browse|see|access|feel)|"
    r"access to (?:real-time|the internet|current|personal))\b",
    r"\b(?:my|the) (?:knowledge|training(?: data)?) (?:cutoff|cut-off)\b",
    r"\bas of my (?:last )?(?:knowledge|training) (?:update|cutoff|cut-off)\b",
    r"作为(?:一[个名])?\s*(?:AI|人工智能)?\s*(?:大型)?语言模型" + _AI_ROLE_END,
    r"作为(?:一[个名])?\s*(?:AI|人工智能)(?:助手|模型|程序)?" + _AI_ROLE_END,
    r"我(?:只)?是(?:一[个名]|个)\s*(?:AI|人工智能|语言模型|聊天机器人|虚拟助手)(?:助手|模型|程序|语言模型)?"
    r"(?=\s*(?:[,，.。;；!！]|$|由|，|而|没有|无法|不能|所以|因此))",
    r"(?:很抱歉|抱歉|对不起)[,，]?\s*(?:但是?)?我(?:无法|不能|没有办法|做不到)(?:回答|满足|完成|提供|执行|帮助|协助|"
    r"生成|创作|绘制|访问|浏览|查看|观看|看到|预测|获取|为您|给您|给你|为你|处理|理解)",
    r"我无法(?:回答|满足|完成|提供|执行)(?:您|你)?(?:的|这个|这一|该|此)?(?:问题|请求|要求|任务|指令)",
    r"我(?:没有|不具备)(?:个人)(?:的)?(?:感情|情感|观点|意见|偏好|喜好|经历|体验|信仰|立场)",
    r"我(?:的)?(?:知识|训练数据)(?:截止|更新)(?:到|于|日期)",
)
_REFUSAL_RE = re.compile("|".join(f"(?:{p})" for p in _REFUSAL_PATTERNS), re.IGNORECASE)
# Substrings one of which every pattern above contains: a text without any of them skips the regex,
# whose many alternatives are tried at every position.
_REFUSAL_HINTS = ("an ai", "a ai", "language model", "artificial intelligence", "chatbot", "virtual assistant",
                  "sorry", "afraid", "cannot", "can't", "can’t", "unable", "not able", "won't", "won’t",
                  "have personal", "have any", "have opinions", "have feelings", "have emotions", "have beliefs",
                  "have preferences", "have a physical", "have the ability", "have access", "cutoff", "cut-off",
                  "作为", "我是", "我只是", "抱歉", "对不起", "我无法", "我没有", "我不具备", "知识", "训练数据")
_HINT_RE = re.compile("|".join(re.escape(h) for h in _REFUSAL_HINTS))

# BELLE's: case-sensitive substrings of the whole block, then "GPT" in the instruction (once its
# phrases addressing a GPT model are cut out) or the input.
_BELLE_MODEL_WORDS = ("OpenAI", "chatgpt", "gpt-3", "gpt-3.5", "gpt-4")
_BELLE_GPT_PHRASES = (
    "要求GPT模型能够", "要求GPT能够", "要求GPT模型", "让GPT模型", "使用GPT模型", "请向GPT模型", "GPT模型应", "GPT模型应该",
    "请求GPT模型", "需要GPT模型回答", "请GPT模型", "请让GPT模型", "训练GPT模型", "GPT模型需要", "要求GPT", "让GPT", "使用GPT",
    "请向GPT", "GPT应", "GPT应该", "请求GPT", "需要GPT回答", "请GPT", "请让GPT", "训练GPT", "GPT需要", "希望GPT模型能够",
    "希望GPT能够", "以便GPT模型能够", "以便GPT能够", "使得GPT模型能够", "使得GPT能够", "使GPT模型能够", "使GPT能够",
    "由GPT模型", "使GPT模型",
)


class Refusal(RuleSetFilter):
    """Default: the output (or the instruction) refusing or disclaiming; quoted text is a mention,
    not a stance, and the input (material to work on) is not looked at. BELLE: its model words.
    Self-Instruct and Alpaca have no such rule."""
    name = "refusal"
    stage = "quality"
    fields = ("instruction", "output")

    def __init__(self, rules: str = "default"):
        self._set_rules(rules)
        if self._may_use("belle"):
            self.fields = ALL_FIELDS

    def check(self, record: Record) -> Rejection | None:
        rules = self.rules_for(record)
        if rules == "belle":
            return self._belle(record)
        if rules != "default":
            return None
        for text in (record.instruction, record.output):
            if not _HINT_RE.search(text.lower()):
                continue
            m = _REFUSAL_RE.search(strip_quoted(text))
            if m:
                return self.reject("refusal", m.group(0).strip())
        return None

    def _belle(self, record: Record) -> Rejection | None:
        for text in (record.instruction, record.input, record.output):
            for word in _BELLE_MODEL_WORDS:
                if word in text:
                    return self.reject("refusal", f"contains '{word}'")
        inst = record.instruction
        if "GPT" in inst:
            for phrase in _BELLE_GPT_PHRASES:
                inst = inst.replace(phrase, "")
        if "GPT" in inst or "GPT" in _belle_input(record.input):
            return self.reject("refusal", "contains 'GPT'")
        return None
