"""JSON documents: an Alpaca-style list of objects, or objects one after another (a pretty-printed
object, concatenated objects).

The file is decoded a window at a time and each element is parsed on its own with ``raw_decode``,
so a list of a million records is never held twice (no list of dicts, no whole-file string) and every
element knows the line it starts on. Errors carry json's own message, line and column.
"""
from __future__ import annotations

import codecs
import json
import re
from typing import Any, Iterator

from selfinstruct.errors import InputError
from selfinstruct.readers.base import Context, Source

_CHUNK = 1 << 20
_WS = re.compile(r"[ \t\n\r]*")
_COMMA = re.compile(r"[ \t\n\r]*,[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_raw_decode = _DECODER.raw_decode
_scan_once = _DECODER.scan_once   # raw_decode without its Python frame (raises StopIteration)


class _Window:
    """The decoded text of a binary file, a window at a time, with the line (and, for errors, the
    column) of the read position ``pos``."""

    def __init__(self, f, path: str):
        self.f, self.path = f, path
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.buf = ""
        self.pos = 0
        self.line = 1          # line number at pos
        self.dropped = 0       # characters of buf's first line that were dropped with earlier windows
        self.eof = False

    def more(self) -> bool:
        """Drop what was read and append the next chunk (as big as the window, so that re-parsing a
        huge element after each chunk stays linear); False at the end of the file."""
        if self.eof:
            return False
        if self.pos:
            nl = self.buf.rfind("\n", 0, self.pos)
            self.dropped = self.pos - nl - 1 if nl >= 0 else self.dropped + self.pos
            self.buf = self.buf[self.pos:]
            self.pos = 0
        data = self.f.read(max(_CHUNK, len(self.buf)))
        try:
            text = self.decoder.decode(data, final=not data)
        except UnicodeDecodeError as e:
            line = self.line + self.buf.count("\n") + data[:max(e.start, 0)].count(b"\n")
            raise InputError("invalid UTF-8", self.path, line) from None
        self.eof = not data
        self.buf += text
        return True

    def advance(self, to: int) -> None:
        self.line += self.buf.count("\n", self.pos, to)
        self.pos = to

    def peek(self) -> str:
        """The next non-whitespace character ("" at the end), skipping to it."""
        while True:
            end = _WS.match(self.buf, self.pos).end()
            self.advance(end)
            if end < len(self.buf):
                return self.buf[end]
            if not self.more():
                return ""

    def value(self) -> Any:
        """Parse the JSON value at pos and move past it, reading more text as needed."""
        while True:
            try:
                value, end = _raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self.more():
                    continue
                self.fail(e.msg, e.pos)
            if end >= len(self.buf) and self.more():
                continue   # a number or literal may go on in the next chunk
            self.advance(end)
            return value

    def fail(self, msg: str, at: int | None = None):
        at = self.pos if at is None else at
        nl = self.buf.rfind("\n", 0, at)
        column = at - nl if nl >= 0 else at + 1 + self.dropped
        raise InputError(f"invalid JSON: {msg}", self.path, self.line + self.buf.count("\n", self.pos, at), column)


class JsonDocument(Source):
    """A JSON list of records, or JSON objects one after another (not one per line)."""
    name = "json"
    priority = 50

    @classmethod
    def sniff(cls, path: str, head: bytes | None) -> bool:
        return head is not None and head.lstrip()[:1] in (b"[", b"{")

    def rows(self, ctx: Context) -> Iterator[tuple[Any, int]]:
        with open(ctx.path, "rb") as f:
            window = _Window(f, ctx.path)
            if window.peek() == "[":
                yield from _list(window)
            else:
                yield from _values(window)


def _list(w: _Window) -> Iterator[tuple[Any, int]]:
    w.advance(w.pos + 1)
    if w.peek() == "]":
        w.advance(w.pos + 1)
    else:
        while True:
            # Fast path: a whole element followed by a comma and more text, all inside the window.
            if len(w.buf) - w.pos < _CHUNK // 2:
                w.more()
            line, pos = w.line, w.pos
            try:
                value, end = _scan_once(w.buf, pos)
                comma = _COMMA.match(w.buf, end)
            except (StopIteration, json.JSONDecodeError):
                comma = None
            if comma is not None and comma.end() < len(w.buf):
                w.line += w.buf.count("\n", pos, comma.end())
                w.pos = comma.end()
                yield value, line
                continue
            # Slow path: the element or what follows it crosses the window, the list ends, or an error.
            yield w.value(), line
            c = w.peek()
            if c == "]":
                w.advance(w.pos + 1)
                break
            if c != ",":
                w.fail("Expecting ',' delimiter")
            w.advance(w.pos + 1)
            w.peek()
    if w.peek():
        w.fail("Extra data")


def _values(w: _Window) -> Iterator[tuple[Any, int]]:
    while w.peek():
        line = w.line
        yield w.value(), line
