"""Read instruction data in any of the formats people ship it in, as a stream of ``Record``s.

The format is recognised from the content, not the file name: a JSON list (Alpaca), JSON lines
(also BELLE's ``.json`` files), parquet, a folder written by ``datasets``' ``save_to_disk``, or
``hf:NAME[:split]`` from the local Hugging Face cache. What a row means is recognised from the keys
of the first row: our own ``records.jsonl`` (every ``Record`` field, read back as written), Alpaca
``{instruction, input, output}``, Self-Instruct/BELLE seed tasks with ``instances``, instruction-only
machine-generated records, BELLE's ``{input, target}``; ``--fields`` maps other key names.

Every record's ``source`` is ``path:line`` (the line where the record starts; the row number for
tables) unless it already has one: a ``records.jsonl`` row keeps the ``source`` and ``origin`` it was
written with, so a record read a second time still names where it was first read. For every other
format ``origin`` is ``path:line`` too. Bad content raises ``InputError`` with the location read, or
with ``on_bad_record="skip"`` is appended to ``bad`` as ``(record or None, origin, message)`` while
reading goes on (the record holds the raw row in ``meta``; None when the row could not even be
decoded). A JSON document (a list) that stops parsing, or is not UTF-8, ends the read in both modes:
the records after the error cannot be found.
"""
from __future__ import annotations

import os
import functools
import importlib
from typing import Iterator

from selfinstruct import plugins
from selfinstruct.errors import InputError, UsageError
from selfinstruct.readers.base import TARGETS, BadRecord, Context, Schema, Source, type_name
from selfinstruct.record import Record

__all__ = ["read_records", "read_located", "open_source", "parse_fields", "ON_BAD_RECORD"]

ON_BAD_RECORD = ("error", "skip")
_HEAD = 1 << 16
_BOM = b"\xef\xbb\xbf"


@functools.lru_cache(maxsize=None)
def components() -> tuple[tuple[type[Source], ...], tuple[type[Schema], ...]]:
    """(sources, schemas), each in priority order: the modules of this folder and the
    ``selfinstruct.readers`` entry points (a module or a class)."""
    found = [importlib.import_module(f"{__name__}.{name}")
             for name in plugins.builtin_module_names(__name__, exclude=("base",))]
    found += [plugins.load_entry_point("readers", ep) for ep in plugins.plugin_entry_points("readers")]
    sources = [c for obj in found for c in plugins.classes_in(obj, Source)]
    schemas = [c for obj in found for c in plugins.classes_in(obj, Schema)]
    return (tuple(sorted(sources, key=lambda c: c.priority)),
            tuple(sorted(schemas, key=lambda c: c.priority)))


def parse_fields(spec: str | dict[str, str] | None) -> dict[str, str]:
    """``"instruction=question,output=answer"`` → ``{"instruction": "question", "output": "answer"}``."""
    if not spec:
        return {}
    pairs = spec.items() if isinstance(spec, dict) else (_pair(p) for p in spec.split(",") if p.strip())
    fields = {}
    for target, name in pairs:
        if target not in TARGETS:
            raise UsageError(f"--fields: unknown field '{target}' (known: {', '.join(TARGETS)})")
        fields[target] = name
    return fields


def _pair(part: str) -> tuple[str, str]:
    target, eq, name = part.partition("=")
    if not eq or not target.strip() or not name.strip():
        raise UsageError(f"--fields: '{part.strip()}' is not FIELD=NAME (e.g. instruction=question)")
    return target.strip(), name.strip()


def open_source(path: str) -> Source:
    """The source that reads ``path``, recognised from its content."""
    head = None
    if os.path.isfile(path):
        try:
            with open(path, "rb") as f:
                head = f.read(_HEAD)
        except OSError as e:
            raise InputError(f"not readable ({e.strerror})", path) from None
        if head.startswith(_BOM):
            head = head[len(_BOM):]
        if not head.strip():
            raise InputError("no records", path)
    for cls in components()[0]:
        if cls.sniff(path, head):
            return cls()
    if head is not None:
        raise InputError("not JSON, JSON lines or parquet", path)
    if os.path.exists(path):
        raise InputError("not a readable file or dataset folder", path)
    raise InputError("no such file", path)


def read_records(path: str, *, fields: dict[str, str] | str | None = None, on_bad_record: str = "error",
                 bad: list | None = None) -> Iterator[Record]:
    """The records of ``path`` (see the module docstring), streamed."""
    return _open(path, fields, on_bad_record, bad, located=False)


def read_located(path: str, *, fields: dict[str, str] | str | None = None, on_bad_record: str = "error",
                 bad: list | None = None) -> Iterator[tuple[str, Record]]:
    """``read_records`` as ``(path:line, record)`` pairs: where each record is in ``path``, which a
    ``records.jsonl`` record's own ``source`` no longer says once the file has been read before (the
    place to point at when the record is wrong in *this* file)."""
    return _open(path, fields, on_bad_record, bad, located=True)


def _open(path, fields, on_bad_record: str, bad: list | None, located: bool) -> Iterator:
    if on_bad_record not in ON_BAD_RECORD:
        raise UsageError(f"--on-bad-record must be one of {', '.join(ON_BAD_RECORD)}, not '{on_bad_record}'")
    path = str(path)
    names = {key: key for key in TARGETS} | parse_fields(fields)
    ctx = Context(path, on_bad_record, [] if bad is None else bad)
    rows = open_source(path).rows(ctx)
    return _records(rows, ctx, names, located)


def _records(rows, ctx: Context, names: dict[str, str], located: bool) -> Iterator:
    schema = None
    n = 0
    path = ctx.path
    for row, line in rows:
        n += 1
        origin = f"{path}:{line}"
        if not isinstance(row, dict):
            ctx.bad_row(f"record is {type_name(row)}, expected an object", line,
                        record=Record("", origin=origin, source=origin, meta={"raw": row}))
            continue
        if schema is None:
            schema = next((cls(names) for cls in components()[1] if cls.matches(row, names)), None)
            if schema is None:
                ctx.bad_row(f"record has no '{names['instruction']}' field", line,
                            record=Record("", origin=origin, source=origin, meta={"raw": row}))
                continue
        try:
            records = schema.records(row, origin)
        except BadRecord as e:
            ctx.bad_row(str(e), line, record=Record("", origin=origin, source=origin, meta={"raw": row}))
            continue
        for record in records:
            if not record.source:        # first read: here; a record read before keeps its source
                record.source = origin
            yield (origin, record) if located else record
    if n == 0:
        raise InputError("no records", ctx.path)
