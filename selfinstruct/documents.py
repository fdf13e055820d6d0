"""The user's own documents for the ``documents`` recipe: finding them, reading them, cutting them
into chunks of about ``chunk_tokens`` tokens that overlap by up to ``overlap_tokens``.

**What is read.** ``--documents`` names files and folders. A folder is walked recursively in sorted
order (hidden files and folders, such as ``.git``, are left out). A document is a ``.txt`` or
``.md``/``.markdown`` file (the whole file is one text) or a ``.jsonl`` file (one JSON object per
line; each object's ``text`` field, else its ``content`` field, or the field ``text_field`` names,
is one text). Anything else is an ``InputError`` naming the file, and so is a file that is not UTF-8
text (a binary file), cannot be read, or a JSON line that is not an object with a string text field
(``file:line``). The same file named twice is read once.

**Tokens.** Chunk sizes are counted like ``selfinstruct.text.tokens``: every Han character or kana
is one token, every other run of word characters is one (so English counts words, Chinese
characters, mixed text both). A run of more than ``LONG_TOKEN_CHARS`` characters (a URL, a hash,
a Thai sentence without spaces) counts as one token per ``LONG_TOKEN_CHARS`` characters, so that
no chunk is unbounded in characters. Punctuation and spaces are not counted.

**Where a chunk ends.** Every gap between two tokens gets a rank: a blank line (paragraph) ranks
highest, then a sentence end (。！？… anywhere; . ! ? before a space, a line end or a closing quote),
then a line break, then a clause mark (，；：、 , ; :), then a space or the gap between two Chinese
characters; a gap inside a word ("don't", "3.14") ranks lowest. A chunk takes at most
``chunk_tokens`` tokens and ends at the best-ranked gap among its last half (the latest of equals),
so chunks hold between half and all of ``chunk_tokens``, and end at a paragraph or a sentence
whenever the text has one there. The next chunk starts at the best-ranked gap among the last
``overlap_tokens`` tokens of the one before (the earliest of equals: the most overlap that starts
at a sentence), so consecutive chunks share up to ``overlap_tokens`` tokens.

**Where a chunk is.** Each chunk has its ``offset``: the character offset of its first character
in the text as read (a text file decoded as UTF-8 with its line endings as they are; for JSONL, the
field's string value), so that ``text[offset:offset + len(chunk.text)] == chunk.text``. Its
``citation`` is ``file:offset``, or ``file:line:offset`` for a JSONL row: the record cites its
source with it, and ROUGE-L novelty compares only tasks of the same chunk.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Iterator, Sequence

from selfinstruct.errors import InputError, UsageError
from selfinstruct.text import _CJK

TEXT_EXTENSIONS = (".txt", ".md", ".markdown")
JSONL_EXTENSIONS = (".jsonl",)
DEFAULT_TEXT_FIELDS = ("text", "content")
LONG_TOKEN_CHARS = 32

# One token: a Han character or kana, or a run of other word characters (cut into pieces below).
_TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")
_CJK_CHAR_RE = re.compile(rf"[{_CJK}]")
# Gap ranks, best first.
PARAGRAPH, SENTENCE, LINE, CLAUSE, SPACE, INSIDE_WORD = 5, 4, 3, 2, 1, 0
_BLANK_LINE_RE = re.compile(r"\n[^\S\n]*\n")
_CLOSERS = "\"'”’」』》）)\\]"
# Chinese sentence ends need nothing after them; Latin ones a space, line end or the gap's end
# followed by a closing mark ("3.14", "e.g" inside a word never reach here: no space).
_SENTENCE_END_RE = re.compile(rf"(?:[。！？…]+|[.!?]+(?=[\s{_CLOSERS}]))[{_CLOSERS}]*")
_CLAUSE_RE = re.compile(r"[，；：、]|[,;:](?=\s)")
_EDGE_SPACE = "\ufeff"          # a byte-order mark at the start of a file is not text


@dataclass(frozen=True)
class Chunk:
    path: str            # the file, as named on the command line (joined with the folder walked)
    line: int | None     # the JSONL row's line number; None for a text file
    offset: int          # character offset of ``text`` in the document's text
    text: str
    tokens: int

    @property
    def citation(self) -> str:
        return f"{self.path}:{self.line}:{self.offset}" if self.line is not None else f"{self.path}:{self.offset}"


@dataclass(frozen=True)
class Document:
    path: str
    line: int | None
    text: str


@dataclass
class Corpus:
    chunks: list[Chunk]
    documents: int       # documents read (JSONL rows count one each), empty ones included
    files: int


# -- finding and reading ---------------------------------------------------------------------------


def split_paths(documents: str | Sequence[str] | None) -> list[str]:
    """The paths of the ``documents`` option: a list (from the flag) or one string of paths joined
    by ``os.pathsep`` (from ``--opt documents=a.txt:notes/``)."""
    if documents is None:
        return []
    items = documents.split(os.pathsep) if isinstance(documents, str) else list(documents)
    return [p for p in (str(i).strip() for i in items) if p]


def find_files(paths: Sequence[str]) -> list[str]:
    """The document files named by ``paths``, folders walked in sorted order, each file once."""
    out, seen = [], set()
    for path in paths:
        if os.path.isdir(path):
            files = _walk(path)
        elif os.path.lexists(path):
            files = [path]
        else:
            raise UsageError(f"--documents {path}: no such file or folder")
        for f in files:
            real = os.path.realpath(f)
            if real not in seen:
                seen.add(real)
                out.append(f)
    return out


def _walk(folder: str) -> list[str]:
    """The files under ``folder`` sorted by their path, part by part (``a/a.txt``, ``a/b/c.txt``,
    ``a/z.txt``, ``b.txt``): the order ``find | sort`` lists them in."""
    found = []
    for base, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.join(base, name) for name in names if not name.startswith(".")]
    return sorted(found, key=lambda p: os.path.relpath(p, folder).split(os.sep))


def read_documents(path: str, text_field: str | None = None) -> list[Document]:
    """The texts of one file: the whole file, or one per JSONL row."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in TEXT_EXTENSIONS + JSONL_EXTENSIONS:
        raise InputError(f"not a document (documents are {', '.join(TEXT_EXTENSIONS + JSONL_EXTENSIONS)} "
                         "files)", path)
    raw = _read_bytes(path)
    if ext in JSONL_EXTENSIONS:
        return list(_jsonl_documents(path, raw, text_field))
    return [Document(path, None, _decode(path, raw))]


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InputError(f"cannot read it ({e.strerror or e})", path) from None


def _decode(path: str, raw: bytes, line: int | None = None) -> str:
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise InputError(f"a binary file, not text (a NUL byte at byte {nul})", path, line)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text (byte {e.start})", path, line) from None


def _jsonl_documents(path: str, raw: bytes, text_field: str | None) -> Iterator[Document]:
    fields = (text_field,) if text_field else DEFAULT_TEXT_FIELDS
    for n, line in enumerate(raw.split(b"\n"), 1):
        if n == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        text = _decode(path, line, n)
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"invalid JSON: {e.msg}", path, n, e.colno) from None
        if not isinstance(row, dict):
            raise InputError(f"expected a JSON object with a text field, got {type(row).__name__}", path, n)
        name = next((f for f in fields if f in row), None)
        if name is None:
            hint = "" if text_field else " (name the field with --opt documents.text_field=NAME)"
            raise InputError(f"no {' or '.join(repr(f) for f in fields)} field{hint}", path, n)
        if not isinstance(row[name], str):
            raise InputError(f"the {name!r} field is {type(row[name]).__name__}, not text", path, n)
        yield Document(path, n, row[name])


# -- chunking --------------------------------------------------------------------------------------


def token_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every token of ``text`` (see the module docstring)."""
    spans = []
    for m in _TOKEN_RE.finditer(text):
        start, end = m.span()
        while end - start > LONG_TOKEN_CHARS:
            spans.append((start, start + LONG_TOKEN_CHARS))
            start += LONG_TOKEN_CHARS
        spans.append((start, end))
    return spans


def count_tokens(text: str) -> int:
    return len(token_spans(text))


def gap_rank(text: str, start: int, end: int) -> tuple[int, int]:
    """(rank, cut) of the gap ``text[start:end]`` between two tokens: how good a place it is to end
    a chunk, and the character offset to cut at."""
    gap = text[start:end]
    m = _BLANK_LINE_RE.search(gap)
    if m:
        return PARAGRAPH, start + m.start()
    last = None
    for last in _SENTENCE_END_RE.finditer(gap):
        pass
    if last is not None:
        return SENTENCE, start + last.end()
    nl = gap.find("\n")
    if nl >= 0:
        return LINE, start + nl
    m = _CLAUSE_RE.search(gap)
    if m:
        return CLAUSE, start + m.end()
    for i, ch in enumerate(gap):
        if ch.isspace():
            return SPACE, start + i
    if not gap and (_CJK_CHAR_RE.match(text, start) or _CJK_CHAR_RE.match(text, start - 1)):
        return SPACE, start            # between two characters of Chinese: a normal place to cut
    return INSIDE_WORD, end


def chunk_text(text: str, chunk_tokens: int = 400, overlap_tokens: int = 50) -> list[tuple[int, str, int]]:
    """(offset, chunk, tokens) for every chunk of ``text``, in order; none for a text without tokens."""
    check_sizes(chunk_tokens, overlap_tokens)
    spans = token_spans(text)
    total = len(spans)
    if total == 0:
        return []
    # gaps[i]: the gap before token i (i = 1 .. total-1)
    gaps = [(0, 0)] + [gap_rank(text, spans[i - 1][1], spans[i][0]) for i in range(1, total)]
    out = []
    first = 0
    while True:
        last = _end_of_chunk(gaps, first, total, chunk_tokens)
        lo = gaps[first][1] if first else 0
        hi = gaps[last][1] if last < total else len(text)
        offset, piece = _trimmed(text, lo, hi)
        out.append((offset, piece, last - first))
        if last >= total:
            return out
        first = _start_of_next(gaps, first, last, overlap_tokens)


def check_sizes(chunk_tokens: int, overlap_tokens: int) -> None:
    if chunk_tokens < 1:
        raise UsageError(f"chunk_tokens must be at least 1 (got {chunk_tokens})")
    # a chunk holds at least half of chunk_tokens; less overlap than that keeps every chunk new
    if not 0 <= overlap_tokens < max(1, (chunk_tokens + 1) // 2):
        raise UsageError(f"overlap_tokens must be at least 0 and less than half of chunk_tokens "
                         f"(got {overlap_tokens} with chunk_tokens {chunk_tokens})")


def _end_of_chunk(gaps: list[tuple[int, int]], first: int, total: int, size: int) -> int:
    """The token the chunk starting at ``first`` stops before: the best gap in its last half."""
    if total - first <= size:
        return total
    lo, hi = first + max(1, (size + 1) // 2), first + size
    return max(range(lo, hi + 1), key=lambda i: (gaps[i][0], i))


def _start_of_next(gaps: list[tuple[int, int]], first: int, last: int, overlap: int) -> int:
    """The first token of the chunk after the one ``first .. last-1``: the best gap among its last
    ``overlap`` tokens (the earliest of equals), or ``last`` without overlap."""
    lo = max(first + 1, last - overlap)
    if overlap == 0 or lo >= last:
        return last
    return min(range(lo, last), key=lambda i: (-gaps[i][0], i))


def _trimmed(text: str, lo: int, hi: int) -> tuple[int, str]:
    """``text[lo:hi]`` without the spaces (and byte-order mark) at its edges, and where it starts."""
    while lo < hi and (text[lo].isspace() or text[lo] == _EDGE_SPACE):
        lo += 1
    while hi > lo and (text[hi - 1].isspace() or text[hi - 1] == _EDGE_SPACE):
        hi -= 1
    return lo, text[lo:hi]


def load_chunks(paths: Sequence[str], chunk_tokens: int = 400, overlap_tokens: int = 50,
                text_field: str | None = None) -> Corpus:
    """Every chunk of every document under ``paths``, in order."""
    check_sizes(chunk_tokens, overlap_tokens)
    if not paths:
        raise UsageError("--documents: name at least one file or folder")
    files = find_files(paths)
    chunks, documents = [], 0
    for path in files:
        for doc in read_documents(path, text_field):
            documents += 1
            chunks += [Chunk(doc.path, doc.line, offset, piece, n)
                       for offset, piece, n in chunk_text(doc.text, chunk_tokens, overlap_tokens)]
    return Corpus(chunks, documents, len(files))
