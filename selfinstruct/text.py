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
