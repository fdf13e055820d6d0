"""JSON lines: one record per line (BELLE ships these named ``.json``). Read line by line, so a bad
line can be skipped and the rest still read."""
from __future__ import annotations

import json
from typing import Any, Iterator

from selfinstruct.readers.base import Context, Source
from selfinstruct.record import Record

_BOM = b"\xef\xbb\xbf"
_BLANK = object()
_raw_decode = json.JSONDecoder().raw_decode


class JsonLines(Source):
    name = "jsonl"
    priority = 40

    @classmethod
    def sniff(cls, path: str, head: bytes | None) -> bool:
        # One complete object on the first line; a pretty-printed object ("{" alone) is a document.
        if head is None or not head.lstrip().startswith(b"{"):
            return False
        if b"\n" not in head.lstrip():
            with open(path, "rb") as f:   # a first line longer than the peek
                head = f.readline() + f.read(1)
        first = head.lstrip().split(b"\n", 1)
        return len(first) == 2 and first[0].rstrip().endswith(b"}")

    def rows(self, ctx: Context) -> Iterator[tuple[Any, int]]:
        with open(ctx.path, "rb") as f:
            for line, raw in enumerate(f, 1):
                if line == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    ctx.bad_row("invalid UTF-8", line)
                    continue
                try:   # fast path: an object right at the start of the line, nothing but the newline after
                    row, end = _raw_decode(text)
                    if end == len(text) or text[end:].isspace():
                        yield row, line
                        continue
                except json.JSONDecodeError:
                    pass
                row = self._slow(text, line, ctx)
                if row is not _BLANK:
                    yield row, line

    @staticmethod
    def _slow(text: str, line: int, ctx: Context) -> Any:
        """A blank line, a line with spaces around its object, or a bad line (json's own message)."""
        if not text.strip():
            return _BLANK
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            ctx.bad_row(f"invalid JSON: {e.msg}", line, e.colno,
                        Record("", origin=ctx.origin(line), source=ctx.origin(line),
                               meta={"raw_line": text.rstrip("\n")}))
            return _BLANK
