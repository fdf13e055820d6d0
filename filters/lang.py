"""Language filter: the record is in the language asked for, and its fields agree with each other.

Most of the work is a cheap script check. Each field gets a tag from its letters once code has been
taken out: "zh" (mostly Han, see ``selfinstruct.text.is_cjk``), "ja" (Han with kana), "en" (Latin
script prose) or "other" (Cyrillic, Hangul, Arabic…). A field with fewer than four letters, only code,
or only names ("Python, Java, C++") gets no tag and is not held against the record.

- ``lang="auto"``: the output must be in the instruction's script, or the input's (a Chinese
  instruction that asks to correct an English sentence answers in English), or the instruction
  names a language (translation tasks).
- ``lang="en"`` / ``"zh"``: the same, and the instruction (the output when the instruction has no
  tag) must be in that language. Latin script is not enough for "en": an instruction that does not
  read as English from its common words is given to langdetect (slow, so
  only there: 10-20 ms a call), and a confident other answer is a mismatch; a low-confidence one
  passes.

The instruction is judged on its own words (``selfinstruct.text.task_part``): a sentence it quotes
to translate, an article after a colon, code and names are material, not its language; when the
task sentence alone says nothing, the whole instruction (quotes aside) is judged. An output in the
script of the material the instruction carries agrees with it, like one in the input's script.

Only the ``default`` rule set has this filter (``rules``): the papers' only language rule is their
ASCII start rule (``bad_start``), so under ``self-instruct``, ``alpaca`` and ``belle`` it keeps
every record (and leaves ``record.lang`` as it is).

Reason code: language_mismatch, detail "instruction is zh, output is en" or "expected en, got fr".
``record.lang`` is set when it is empty: "zh", "ja", "en", a langdetect code, or left empty when a
Latin-script record in auto mode does not read as English (telling French from Spanish would cost
a langdetect call per record).
"""
from __future__ import annotations

import functools
import re

from selfinstruct.errors import UsageError
from selfinstruct.filters.base import Filter, Rejection
from selfinstruct.record import Record
from selfinstruct.rules import check_rules
from selfinstruct.text import FILTER_LANGS, cjk_count, is_cjk, material_part, strip_quoted, task_part

MIN_LETTERS = 4          # fewer letters than this say nothing about a field's language
MIN_DETECT_LETTERS = 20  # langdetect guesses on shorter text
MIN_CONFIDENCE = 0.9     # langdetect probability below which its answer is ignored

_LATIN = re.compile(r"[A-Za-z\u00C0-\u024F\u1E00-\u1EFF]")
_ACCENTED = re.compile(r"[\u00C0-\u024F\u1E00-\u1EFF]")
_LETTER = re.compile(r"[^\W\d_]")
_HAN_OR_KANA = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3040-\u30ff\U00020000-\U0003134f]")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_WORD = re.compile(r"[A-Za-z]+")
_LOWER_WORD = re.compile(r"(?<![A-Za-z])[a-z][a-z]+")
_PROSE_PAIR = re.compile(r"[A-Za-z]+[ \t]+[a-z]+")
_URL_OR_DOMAIN = re.compile(r"(?:https?://)?[\w-]+(?:\.[\w-]+)+(?:/\S*)?", re.ASCII)

# Code is language-neutral: fenced and inline code, and lines that look like code, are dropped
# before a field is tagged.
_FENCED = re.compile(r"```.*?(?:```|\Z)", re.S)
_INLINE = re.compile(r"`[^`\n]+`")
_CODE_LINE = re.compile(
    r"(?:\t| {4}|\s*(?:"
    r"(?:def|class|import|return|function|var|let|const|public|private|static|void|raise|yield)\s"
    r"|from \S+ import |#include|#!|print\(|console\.|System\.|//|/\*|\"\"\"|'''|[:@]\w|[{}]|</?\w+[^>]*>"
    r"|(?:SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER)\s"
    r"|(?:if|elif|else|for|while|try|except|finally|with)\b.*[:：{]\s*$"
    r"|[A-Za-z_][\w.\[\]]*\s*[-+*/]?=(?!=)"          # an assignment: x = 1, a[i] += 2
    r"))"
)
_CODE_SYMBOLS = re.compile(r"[{}\[\]()<>=;_#$\\/*+|&^~]")

# Common English words, and words common in instructions, that are not also common words of other
# Latin-script languages (no "a", "in", "die", "come", "see"…): two of them making up 25% of the
# words read as English without asking langdetect.
_ENGLISH_WORDS = frozenset("""
the of and to for with as his they be at one have this from or had by not but what some we can out
other were all there when up use your how said each she which their time if way about many then
them write would like these make thing him two has look more day could go did number people my know
than call first who may down been now find any new work part take get place made live where after
back little only round year came show every good give our name very through just sentence great
think say help line turn cause much mean before move right old too same tell does three well play
small put home read here must big high such follow act why ask change went light off need house try
again animal mother world near build self earth father head own page should country found answer
school grow study learn food sun four between state keep eye never last let thought city tree cross
start might story saw run while close night real life few north its it you are is into following
sentences text words given using based below above question questions whether generate describe
explain list create classify identify summarize summarise rewrite suggest provide compare convert
edit brainstorm plan design solve complete converting creative something detailed description
method explaining reason problems steps required everyday item sounds quick briefly joke ways
example please paragraph article without both those best sort rank order alphabetize pluralize
conjugate translate count calculate analyze analyse evaluate predict determine extract paraphrase
proofread correct fix outline draft compose recommend estimate define discuss imagine pretend
categorize categorise choose select pick arrange organize organise spell input output
""".split())

# Function words of other Latin-script languages (es, fr, it, pt, de, nl, sv/da/no, pl, id…). An
# ASCII instruction with one English word above and none of these reads as English too.
_FOREIGN_WORDS = frozenset("""
de la el los las le les un una une uno der die das den dem und ist sind ein eine einen nicht mit zu
een het van voor niet il di che per con non del della sono por para que y et est du des sur au aux
pour avec dans ce qui pas em um uma os como mais og och att er ikke af jest nie się na yang dan ini
itu dengan untuk tidak ng sa ang mga
""".split())

# Instructions that name a language expect an answer in another one (translation, "in English").
_NAMES_A_LANGUAGE = re.compile(
    r"(?i:\btranslat\w*|\b(?:english|chinese|mandarin|cantonese|japanese|korean|french|spanish|german|"
    r"italian|portuguese|russian|arabic|hindi|latin|pinyin)\b)"
    r"|翻译|译成|英文|英语|中文|汉语|普通话|日语|日文|韩语|法语|德语|西班牙语|俄语|拼音|文言文"
)


def strip_code(text: str) -> str:
    """``text`` without fenced code, inline code and lines that look like code."""
    # Non-breaking and ideographic spaces stand for spaces in real dumps (BELLE's seeds use U+00A0).
    text = text.replace("\xa0", " ").replace("\u3000", " ")
    text = _INLINE.sub(" ", _FENCED.sub(" ", text))
    lines = text.splitlines()
    if len(lines) == 1 and not _looks_like_code(lines[0]):
        return text
    return "\n".join(line for line in lines if not _looks_like_code(line))


def _looks_like_code(line: str) -> bool:
    stripped = line.strip()
    if not stripped:
        return False
    if _CODE_LINE.match(line) or stripped.endswith((";", "{", "}")):
        return True
    return len(_CODE_SYMBOLS.findall(stripped)) >= 0.08 * len(stripped)


def script_tag(text: str) -> str | None:
    """"zh", "ja", "en" (Latin-script prose), "other", or None when the field says nothing."""
    if not text:
        return None
    text = strip_code(text)
    if "." in text:
        text = _URL_OR_DOMAIN.sub(" ", text)      # web addresses are names, in no language
    prose = text
    if not text.isascii():
        han = cjk_count(text)
        if han >= MIN_LETTERS and is_cjk(text):
            return "ja" if len(_KANA.findall(text)) * 10 >= han else "zh"
        if han:
            text = _HAN_OR_KANA.sub(" ", text)
        latin = len(_LATIN.findall(text))
        letters = len(_LETTER.findall(text))
        if letters < MIN_LETTERS:
            return None
        if letters - latin > latin:
            return "other"
    # A list of names and terms ("Python, Java, C++", "xlsx、csv") has no language; prose has
    # lower-case words, two of them side by side.
    words = _LOWER_WORD.finditer(text)
    if next(words, None) is None or next(words, None) is None or not _PROSE_PAIR.search(prose):
        return None
    return "en"


def own_words(instruction: str) -> tuple[str, str | None]:
    """The instruction's own words and their ``script_tag``: its task sentence, else the whole
    instruction without what it quotes, else the whole instruction (the first that has a tag)."""
    task = task_part(instruction)
    if task != instruction and is_cjk(task):
        # A short Chinese task sentence ("翻译：…") is Chinese however little of it there is.
        return task, ("ja" if _KANA.search(task) and len(_KANA.findall(task)) * 10 >= cjk_count(task) else "zh")
    if task != instruction and task.isascii() and script_tag(task) is None \
            and len(_LATIN.findall(task)) >= MIN_LETTERS and reads_as_english(task):
        return task, "en"              # "Translate … into English." with the quote taken out
    candidates = (task,) if task == instruction else (task, strip_quoted(instruction), instruction)
    for text in candidates:
        tag = script_tag(text)
        if tag is not None:
            return text, tag
    return instruction, None


def reads_as_english(text: str) -> bool:
    """English from its common words, without langdetect; False means "ask langdetect"."""
    words = _WORD.findall(text.lower())
    if len(_ACCENTED.findall(text)) * 50 > len(words) * 5:   # é, ñ, ü… more than ~1 in 50 letters
        return False
    hits = sum(1 for w in words if w in _ENGLISH_WORDS)
    if hits >= 2 and hits >= 0.25 * len(words):
        return True
    return hits >= 1 and text.isascii() and not any(w in _FOREIGN_WORDS for w in words)


class LanguageMismatch(Filter):
    name = "lang"
    stage = "quality"
    order = 200          # after the cheap quality rules: langdetect is the costliest of them
    fields = ("instruction", "input", "output")

    def __init__(self, lang: str = "auto", rules: str = "default"):
        self.rules = check_rules(rules)
        lang = (lang or "auto").lower()
        if lang.startswith("zh"):        # zh-cn, zh-tw, zh-hans…
            lang = "zh"
        if lang not in FILTER_LANGS:
            raise UsageError(f"unknown language '{lang}' (use one of: {', '.join(FILTER_LANGS)})")
        self.lang = lang
        self._detect = functools.lru_cache(maxsize=16384)(self._detect_uncached)

    def check(self, record: Record) -> Rejection | None:
        if self.rules != "default":
            return None
        own, inst_tag = own_words(record.instruction)
        if inst_tag == "en" and record.output.isascii():
            out_tag = inst_tag      # ASCII has no other script to disagree in: skip the work
        else:
            out_tag = script_tag(record.output)
        lang = self._record_lang(own, inst_tag, out_tag)
        if not record.lang and lang:
            record.lang = lang
        if self.lang != "auto" and (inst_tag or out_tag) and lang != self.lang:
            return self.reject("language_mismatch", f"expected {self.lang}, got {lang}")
        if inst_tag and out_tag and out_tag != inst_tag and not self._agrees(record, out_tag):
            return self.reject("language_mismatch", f"instruction is {inst_tag}, output is {out_tag}")
        return None

    def _agrees(self, record: Record, out_tag: str) -> bool:
        """An output in another script than the instruction is fine when it is in the input's
        (work on the input text) or the instruction names a language."""
        if script_tag(record.input) == out_tag or _NAMES_A_LANGUAGE.search(record.instruction):
            return True
        answer = record.output.strip()
        if answer in record.input or answer in record.instruction:     # extracted from the material
            return True
        carried = material_part(record.instruction)
        return bool(carried) and script_tag(carried) == out_tag

    def _record_lang(self, instruction: str, inst_tag: str | None, out_tag: str | None) -> str | None:
        """The record's language: the instruction's (the output's when the instruction has none).
        Latin script is "en" when it reads as English; otherwise, and for other scripts, langdetect
        names it when a language was asked for, and auto mode leaves it unknown (None)."""
        if inst_tag is None:
            return out_tag
        if inst_tag in ("zh", "ja") or (inst_tag == "en" and reads_as_english(instruction)):
            return inst_tag
        if self.lang == "auto":
            return None
        return self._name(instruction)

    def _name(self, text: str) -> str:
        """langdetect's confident answer for long enough text, else "en" for Latin script."""
        if len(_LETTER.findall(text)) >= MIN_DETECT_LETTERS:
            code = self._detect(text)
            if code:
                return code
        return "other" if script_tag(text) == "other" else "en"

    @staticmethod
    def _detect_uncached(text: str) -> str | None:
        from langdetect import DetectorFactory, detect_langs    # slow import; most runs never need it
        from langdetect.lang_detect_exception import LangDetectException
        DetectorFactory.seed = 0       # langdetect samples at random: without a seed, answers vary
        try:
            best = detect_langs(text)[0]
        except LangDetectException:
            return None
        if best.prob < MIN_CONFIDENCE:
            return None
        return "zh" if best.lang.startswith("zh") else best.lang
