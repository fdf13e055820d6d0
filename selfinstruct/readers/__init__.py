"""Read instruction data in any of the formats people ship it in, as a stream of ``Record``s.

The format is recognised from the content, not the file name: a JSON list (Alpaca), JSON lines
(also BELLE's ``.json`` files), parquet, a folder written by ``datasets``' ``save_to_disk``, or
``hf:NAME[:split]`` from the local Hugging Face cache. What a row means is recognised from the keys
of the first row: Alpaca ``{instruction, input, output}``, Self-Instruct/BELLE seed tasks with
``instances``, instruction-only machine-generated records, BELLE's ``{input, target}``; ``--fields``
maps other key names.

Every record's ``origin`` is ``path:line`` (the line where the record starts; the row number for
tables). Bad content raises ``InputError`` with that location, or with ``on_bad_record="skip"`` is
appended to ``bad`` as ``(record or None, origin, message)`` while reading goes on (the record holds
the raw row in ``meta``; None when the row could not even be decoded). A JSON document (a list) that
stops parsing, or is not UTF-8, ends the read in both modes: the records after the error cannot be
found.
"""
from __future__ import annotations

import os
from typing import Iterator

from selfinstruct.errors import InputError, UsageError
from selfinstruct.readers.base import SCHEMAS, SOURCES, TARGETS, BadRecord, Context, Source, type_name
from selfinstruct.record import Record

# Importing a module registers its source or schema; the order is the order they are tried in.
from selfinstruct.readers import source_hf_hub, source_hf_disk, source_parquet  # noqa: E402,F401  isort:skip
from selfinstruct.readers import source_jsonl, source_json  # noqa: E402,F401  isort:skip
from selfinstruct.readers import schema_seed, schema_belle, schema_alpaca, schema_instruction  # noqa: E402,F401  isort:skip

__all__ = ["read_records", "open_source", "parse_fields", "ON_BAD_RECORD"]

ON_BAD_RECORD = ("error", "skip")
_HEAD = 1 << 16
_BOM = b"\xef\xbb\xbf"


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
    for cls in SOURCES:
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
    if on_bad_record not in ON_BAD_RECORD:
        raise UsageError(f"--on-bad-record must be one of {', '.join(ON_BAD_RECORD)}, not '{on_bad_record}'")
    path = str(path)
    names = {key: key for key in TARGETS} | parse_fields(fields)
    ctx = Context(path, on_bad_record, [] if bad is None else bad)
    rows = open_source(path).rows(ctx)
    return _records(rows, ctx, names)


def _records(rows, ctx: Context, names: dict[str, str]) -> Iterator[Record]:
    schema = None
    n = 0
    path = ctx.path
    for row, line in rows:
        n += 1
        origin = f"{path}:{line}"
        if not isinstance(row, dict):
            ctx.bad_row(f"record is {type_name(row)}, expected an object", line,
                        record=Record("", origin=origin, meta={"raw": row}))
            continue
        if schema is None:
            schema = next((cls(names) for cls in SCHEMAS if cls.matches(row, names)), None)
            if schema is None:
                ctx.bad_row(f"record has no '{names['instruction']}' field", line,
                            record=Record("", origin=origin, meta={"raw": row}))
                continue
        try:
            records = schema.records(row, origin)
        except BadRecord as e:
            ctx.bad_row(str(e), line, record=Record("", origin=origin, meta={"raw": row}))
            continue
        yield from records
    if n == 0:
        raise InputError("no records", ctx.path)
