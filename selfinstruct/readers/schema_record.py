"""Our own ``records.jsonl`` rows (``Record.to_dict()``, written by ``generate`` and ``filter``), read
back with every field as written, so that metadata survives generate → filter → filter → train.

Recognition: the row has ``instruction``, ``origin``, ``teacher`` and ``request_id``. Every version of
``Record.to_dict`` has written all three metadata keys on every line (null when unset), and none of
the formats people ship (Alpaca, BELLE, Self-Instruct's seeds and machine-generated instructions,
which say ``request_idx``) uses them, so an Alpaca row with an extra ``id`` or ``lang`` stays Alpaca.
The keys are our own names whatever ``--fields`` maps: ``--fields`` is for other people's files.

Provenance: ``origin`` is kept as written ("machine", "seed", or the ``file:line`` a record was read
from), and so is ``source`` ("" until a reader first reads the record); the reader fills an empty
``source`` with the ``path:line`` it reads, so a second read keeps the first provenance.

Unknown keys (a row written by a newer version) are not dropped: each goes to ``meta`` under its own
name, so nothing is lost and an older install still filters and trains on the file. A row whose
``meta`` already holds that name is refused rather than have one value overwrite the other. A known
field of the wrong type (``"rouge": "x"``) is a bad record, reported with its ``file:line``.

``messages`` (a conversation, written only when set) reads back as written, each turn checked like
an OpenAI messages row's (``schema_messages.checked_turns``); the row's ``instruction`` and ``output``
are kept as written rather than derived again, so a row reads back exactly.
"""
from __future__ import annotations

from typing import Any

from selfinstruct.readers.base import BadRecord, Schema, type_name
from selfinstruct.readers.schema_messages import ROLES, checked_turns
from selfinstruct.record import Record

SIGNATURE = ("instruction", "origin", "teacher", "request_id")

# The fields by the JSON values they take (null for a text field means its default "").
_TEXT = ("instruction", "input", "output", "id", "lang", "origin", "source")          # str
_OPTIONAL_TEXT = ("most_similar", "nearest_seed", "judge_reason", "teacher", "request_id")
_OPTIONAL_FLOAT = ("rouge", "nearest_seed_rouge")
_OPTIONAL_INT = ("judge_score",)
_KNOWN = frozenset(_TEXT + _OPTIONAL_TEXT + _OPTIONAL_FLOAT + _OPTIONAL_INT + ("meta", "messages"))
_ROLE_OF = {role: role for role in ROLES}


class OwnRecords(Schema):
    name = "record"
    priority = 5          # before the others: its signature is the strictest, and unique to us

    @classmethod
    def matches(cls, row: dict, names: dict[str, str]) -> bool:
        return all(key in row for key in SIGNATURE)

    def records(self, row: dict, origin: str) -> list[Record]:
        return [_checked(row)]


def _checked(row: dict) -> Record:
    """The row with every field checked (and a null text, a whole-number similarity, an unknown key
    made what ``Record`` holds)."""
    values: dict[str, Any] = {}
    for key in _TEXT:
        value = row.get(key)
        if type(value) is str:
            values[key] = value
        elif value is not None or key == "instruction":
            raise _wrong(key, value, "a string")
    for key in _OPTIONAL_TEXT:
        value = row.get(key)
        if value is not None and type(value) is not str:
            raise _wrong(key, value, "a string or null")
        values[key] = value
    for key in _OPTIONAL_FLOAT:
        value = row.get(key)
        if value is not None:
            if type(value) is int:
                value = float(value)
            elif type(value) is not float:
                raise _wrong(key, value, "a number or null")
        values[key] = value
    for key in _OPTIONAL_INT:
        value = row.get(key)
        if value is not None and type(value) is not int:
            raise _wrong(key, value, "an integer or null")
        values[key] = value
    values["meta"] = _meta(row)
    messages = row.get("messages")
    if messages is not None:
        values["messages"] = checked_turns(messages, "messages", _ROLE_OF)
    return Record(**values)


def _meta(row: dict) -> dict[str, Any]:
    """``meta`` as written, plus every key this version does not know."""
    meta = row.get("meta")
    if meta is None:
        meta = {}
    elif type(meta) is not dict:
        raise _wrong("meta", meta, "an object or null")
    if not _KNOWN.issuperset(row):
        unknown = {key: value for key, value in row.items() if key not in _KNOWN}
        clash = next((key for key in unknown if key in meta), None)
        if clash is not None:
            raise BadRecord(f"field '{clash}' is both a field of its own and a key of 'meta'")
        meta = {**meta, **unknown}
    return meta


def _wrong(key: str, value: Any, expected: str) -> BadRecord:
    return BadRecord(f"field '{key}' is {type_name(value)}, expected {expected}")
