"""Quality filters: the Self-Instruct / Alpaca heuristics, for English and Chinese.

They run in the order defined here. The instruction-only ones (``fields == ("instruction",)``) come
first: the generate loop checks them before it pays the teacher for instances.

Reason codes: truncated, too_short, too_long, bad_start, blacklist_word, contains_url, empty_output,
nooutput_marker, output_echoes_input, output_echoes_instruction, refusal.
"""
from __future__ import annotations

import re
import unicodedata

from selfinstruct.filters.base import Filter, Rejection
from selfinstruct.record import Record
from selfinstruct.text import is_cjk, length, normalise


class Truncated(Filter):
    """The teacher hit its token limit inside this record (the generate loop sets meta["truncated"])."""
    name = "truncated"
    stage = "quality"
    fields = ("instruction",)

    def check(self, record: Record) -> Rejection | None:
        if record.meta.get("truncated"):
            return self.reject("truncated", "the teacher stopped at its token limit")
        return None


class InstructionLength(Filter):
    """Words for space-delimited text, characters for Chinese (Self-Instruct drops <= 3 words and
    more than 150)."""
    name = "length"
    stage = "quality"
    fields = ("instruction",)

    def __init__(self, min_words: int = 4, max_words: int = 150, min_chars: int = 5, max_chars: int = 300):
        self.min_words, self.max_words = min_words, max_words
        self.min_chars, self.max_chars = min_chars, max_chars

    def check(self, record: Record) -> Rejection | None:
        n = length(record.instruction)
        if is_cjk(record.instruction):
            low, high, unit = self.min_chars, self.max_chars, "characters"
        else:
            low, high, unit = self.min_words, self.max_words, "words"
        if n < low:
            return self.reject("too_short", f"{n} {unit} (min {low})")
        if n > high:
            return self.reject("too_long", f"{n} {unit} (max {high})")
        return None


# Zero-width characters and a stray byte-order mark: invisible, so not what the instruction starts with.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"


class BadStart(Filter):
    """The instruction must start with a letter of any script (Han and kana are letters too)."""
    name = "bad_start"
    stage = "quality"
    fields = ("instruction",)

    def check(self, record: Record) -> Rejection | None:
        text = record.instruction.lstrip().lstrip(_INVISIBLE).lstrip()
        # Category L* covers Latin, Cyrillic, Greek, Han (Lo), kana… ; punctuation (P*), digits (N*),
        # symbols and emoji (S*), marks and controls are not a way to start an instruction.
        if text and not unicodedata.category(text[0]).startswith("L"):
            return self.reject("bad_start", f"starts with '{text[0]}'")
        return None


# The Self-Instruct / Alpaca list: tasks a text-only model cannot do.
BLACKLIST_EN = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
)
BLACKLIST_ZH = (
    "图片", "图像", "图表", "照片", "视频", "音频", "音乐", "文件", "链接", "网址", "画图", "绘制", "流程图", "地图",
)
# Whole words, case-insensitive. The boundaries are ASCII ones: Python's \b treats Han as word
# characters, so "\bimage\b" would miss "这张image".
_BLACKLIST_EN_RE = re.compile(
    r"(?<![A-Za-z0-9_])(" + "|".join(w.replace(" ", r"\s+") for w in BLACKLIST_EN) + r")(?![A-Za-z0-9_])",
    re.IGNORECASE,
)
_BLACKLIST_ZH_RE = re.compile("|".join(BLACKLIST_ZH))
_WRITE_A_PROGRAM_RE = re.compile(r"\s*write\s+a\s+program", re.IGNORECASE)


class Blacklist(Filter):
    name = "blacklist"
    stage = "quality"
    fields = ("instruction",)

    def check(self, record: Record) -> Rejection | None:
        text = record.instruction
        if _WRITE_A_PROGRAM_RE.match(text):      # Alpaca's rule: programs are not text answers
            return self.reject("blacklist_word", "starts with 'write a program'")
        m = _BLACKLIST_EN_RE.search(text)
        if m:
            word = " ".join(m.group(1).lower().split())
            return self.reject("blacklist_word", f"contains '{word}'")
        m = _BLACKLIST_ZH_RE.search(text)
        if m:
            return self.reject("blacklist_word", f"contains '{m.group(0)}'")
        return None


# Characters a URL is made of (RFC 3986); Chinese text right after a URL is not part of it.
_URL_RE = re.compile(r"(?:https?://|(?<![A-Za-z0-9.])www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+",
                     re.IGNORECASE)
_URL_TRAILING = ".,;:!?)]'\""


class Url(Filter):
    """A URL the student cannot follow, in any field."""
    name = "url"
    stage = "quality"
    fields = ("instruction", "input", "output")

    def check(self, record: Record) -> Rejection | None:
        for text in (record.instruction, record.input, record.output):
            if "//" not in text and "ww." not in text and "WW." not in text:   # cheap pre-check
                continue
            m = _URL_RE.search(text)
            if m:
                return self.reject("contains_url", m.group(0).rstrip(_URL_TRAILING))
        return None


class EmptyOutput(Filter):
    name = "empty_output"
    stage = "quality"
    fields = ("output",)

    def check(self, record: Record) -> Rejection | None:
        if not record.output.strip():
            return self.reject("empty_output", "output is empty")
        return None


# Markers a teacher writes instead of an answer. "<noinput>" in the input is Alpaca's empty input
# and is fine; only the output is looked at.
_NOOUTPUT_ANYWHERE_RE = re.compile(r"<\s*no[\s_-]*output\s*>|<\s*无输出\s*>", re.IGNORECASE)
_NOOUTPUT_ALONE_RE = re.compile(r"n/a|无输出", re.IGNORECASE)


class NoOutputMarker(Filter):
    name = "nooutput"
    stage = "quality"
    fields = ("output",)

    def check(self, record: Record) -> Rejection | None:
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


class Echo(Filter):
    """The output repeats the input or the instruction (equal after normalisation: case, width,
    punctuation and spacing aside)."""
    name = "echo"
    stage = "quality"
    fields = ("instruction", "input", "output")

    def check(self, record: Record) -> Rejection | None:
        vs_input = _could_repeat(record.output, record.input)
        vs_instruction = _could_repeat(record.output, record.instruction)
        if not (vs_input or vs_instruction):
            return None
        output = normalise(record.output)
        if not output:
            return None
        if vs_input and output == normalise(record.input):
            return self.reject("output_echoes_input", "output repeats the input")
        if vs_instruction and output == normalise(record.instruction):
            return self.reject("output_echoes_instruction", "output repeats the instruction")
        return None


# Model self-reference and refusals. Alternatives are tried left to right at each position, so the
# longer phrase is listed before the shorter one it contains. The Chinese ones are anchored on what
# follows ("作为一个AI，" but not "作为一个人工智能专家"; "抱歉，我无法" but not "我无法入睡") so that
# ordinary questions pass.
_AI_ROLE_END = r"(?=\s*(?:[,，.。;；:：!！]|$|I\b|我))"
_REFUSAL_PATTERNS = (
    r"\bas an AI language model\b",
    r"\bas an AI(?:\s+(?:assistant|model|chatbot))?" + _AI_ROLE_END,
    r"\bI(?:['’]m| am) an AI(?:\s+(?:assistant|model|chatbot))?" + _AI_ROLE_END,
    r"\bI['’]m sorry,?\s+but\s+I\s+(?:cannot|can['’]t)\b",
    r"\bI cannot fulfill?\b",
    r"\blanguage models?\b",
    # OpenAI as the teacher's maker, not as a company in the news ("co-founder of Neuralink and OpenAI").
    r"\b(?:by|from) OpenAI\b",
    r"\bOpenAI['’]s (?:content |usage |use[- ]case )?polic(?:y|ies)\b",
    r"\bChatGPT\b",
    r"\bGPT(?:-?\d+(?:\.\d+)?[a-z]*)?s?\b",
    r"作为\s*AI\s*语言模型",
    r"作为(?:一[个名])?\s*(?:AI|人工智能)(?:助手|模型)?" + _AI_ROLE_END,
    r"我是一[个名]\s*(?:AI|人工智能)(?:助手|模型)?" + _AI_ROLE_END,
    r"语言模型",
    r"(?:抱歉|对不起)[,，]?\s*(?:但是?)?我无法",
    r"我无法(?:回答|满足|完成|提供|执行)(?:您|你)?(?:的|这个|这一|该|此)?(?:问题|请求|要求|任务|指令)",
)
_REFUSAL_RE = re.compile("|".join(f"(?:{p})" for p in _REFUSAL_PATTERNS), re.IGNORECASE)
# Substrings one of which every pattern above contains: a text without any of them skips the regex,
# whose many alternatives are tried at every position (about 5x slower than these searches).
_REFUSAL_HINTS = ("an ai", "sorry", "fulfil", "language model", "openai", "gpt",
                  "作为", "我是一", "语言模型", "抱歉", "对不起", "我无法")


class Refusal(Filter):
    """The teacher talking about itself or refusing, in the instruction or the output. The input is
    material to work on (an article about OpenAI is fine) and is not looked at."""
    name = "refusal"
    stage = "quality"
    fields = ("instruction", "output")

    def check(self, record: Record) -> Rejection | None:
        for text in (record.instruction, record.output):
            lowered = text.lower()
            if not any(hint in lowered for hint in _REFUSAL_HINTS):
                continue
            m = _REFUSAL_RE.search(text)
            if m:
                return self.reject("refusal", m.group(0))
        return None
