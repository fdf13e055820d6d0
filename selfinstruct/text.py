"""Text helpers shared by ROUGE-L, MinHash and the quality filters: tokenising, normalising,
script detection. English and Chinese are both first-class here.

Tokenisation (``tokens``): lower-case, then every Han character or kana is one token and every other
run of ``[a-z0-9]`` is one token, in text order. On text without Han or kana this is exactly
rouge-score's default tokenizer (which keeps ``[a-z0-9]+`` runs only and so turns Chinese into
nothing); on Chinese it is characters; on mixed text it is both.
"""
from __future__ import annotations

import re
import unicodedata

# The languages a run can be in (prompts, seeds, --lang); ``filter`` also takes "auto".
LANGS = ("en", "zh")
FILTER_LANGS = ("auto", *LANGS)

# Han (CJK unified ideographs, extension A, compatibility, extensions B+) and kana.
_CJK = (
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"
    "\U00020000-\U0003134f"
)
_TOKEN_RE = re.compile(f"[{_CJK}]|[a-z0-9]+")
_CJK_RE = re.compile(f"[{_CJK}]")
_WORD_RE = re.compile(r"\w+", re.UNICODE)


def tokens(text: str) -> list[str]:
    """ROUGE / MinHash tokens of ``text`` (see the module docstring)."""
    return _TOKEN_RE.findall(text.lower())


def cjk_count(text: str) -> int:
    return len(_CJK_RE.findall(text))


def is_cjk(text: str) -> bool:
    """True when Han/kana characters outnumber the Latin words: count such text in characters."""
    if text.isascii():
        return False
    han = cjk_count(text)
    if han == 0:
        return False
    latin_words = len(re.findall(r"[A-Za-z]+", text))
    return han >= latin_words


def script_lang(text: str) -> str:
    """The one script-based language guess: "zh" for mostly Han text, else "en"."""
    return "zh" if is_cjk(text) else "en"


def length(text: str) -> int:
    """Length the way people count it: characters for Chinese, words for space-delimited text."""
    if is_cjk(text):
        return cjk_count(text) + len(re.findall(r"[A-Za-z0-9]+", text))
    return len(text.split())


def normalise(text: str) -> str:
    """Key for exact-duplicate detection: NFKC (folds full-width forms), case-folded, punctuation
    and whitespace removed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(_WORD_RE.findall(text)).replace("_", "")


# --- the instruction's own words -------------------------------------------------------------
# An instruction often carries the material it works on: a sentence to translate in quotes, an
# article after a colon, dialogue lines. Rules about the task itself (its length, its language) look
# at the task sentence only.

# Quoted or delimited spans: curly and straight double quotes, corner brackets, code. Single ASCII
# quotes only when they open after a space or colon and close before a space or punctuation, so
# that "don't … isn't" is not taken for a quote.
_QUOTED_RE = re.compile(
    r"```.*?(?:```|\Z)|`[^`\n]+`"
    r"|“[^”]*”|\"[^\"\n]*\"|「[^」]*」|『[^』]*』|‘[^’\n]*’|《[^》\n]*》"
    r"|(?:(?<=[\s:：(（])|^)'[^'\n]+'(?=[\s.,;:!?，。；：！？)）]|$)",
    re.S,
)
# Where material starts: a line break, or a colon that is not inside a time ("3:30") or a URL
# ("https://"), followed by something.
_MATERIAL_START_RE = re.compile(r"\n|：|(?<!\d):(?!//)|(?<=\d):(?!\d)")


def strip_quoted(text: str) -> str:
    """``text`` without quoted or delimited spans (each becomes a space)."""
    if not any(q in text for q in "\"“「『‘《`'"):      # cheap pre-check: most text quotes nothing
        return text
    return _QUOTED_RE.sub(" ", text)


def task_part(instruction: str) -> str:
    """The task sentence of an instruction: quoted spans removed, then what comes before the first
    line break or colon (what follows is material: an article, dialogue lines, a sentence to work
    on). The whole instruction (quotes removed) when nothing comes before."""
    text = strip_quoted(instruction).strip()
    m = _MATERIAL_START_RE.search(text)
    if m is None:
        return text
    head = text[:m.start()].strip()
    return head if head else text


def material_part(instruction: str) -> str:
    """What an instruction carries beside its task sentence (quoted spans, what follows the first
    colon or line break); "" when it carries nothing."""
    quoted = " ".join(m.group(0) for m in _QUOTED_RE.finditer(instruction)) \
        if any(q in instruction for q in "\"“「『‘《`'") else ""
    text = strip_quoted(instruction).strip()
    m = _MATERIAL_START_RE.search(text)
    after = text[m.end():].strip() if m and text[:m.start()].strip() else ""
    return (quoted + " " + after).strip()
