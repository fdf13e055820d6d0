"""The two kinds of reader component behind ``read_records``.

A *source* knows a container (a JSON list, JSON lines, parquet, a saved Hugging Face dataset…): it
recognises it from the content and yields ``(row, line)`` pairs, ``line`` being where the row starts
(the row number for tables). A *schema* knows what a row means (Alpaca, Self-Instruct seed task,
BELLE's input/target…): it is chosen from the keys of the first row of a file and turns every row
into ``Record``s. Adding a format is one new module in this folder that defines a ``Source`` or
``Schema`` subclass with a ``name`` and a ``priority`` (or an installed plugin's, through the
``selfinstruct.readers`` entry points): sources are tried, and schemas matched, lowest priority first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

from selfinstruct.errors import InputError
from selfinstruct.record import Record
from selfinstruct.text import script_lang as _script_of

TARGETS = ("instruction", "input", "output")   # the keys --fields may map
# datasets and pyarrow are dependencies of selfinstruct itself, not of an extra: one missing means a
# broken environment, so the fix named is the package, not an extra.
MISSING = "{package} is not installed, though selfinstruct depends on it (pip install {package})"


class BadRecord(Exception):
    """One row cannot become a record; the message says why (without the location)."""


@dataclass
class Context:
    """Where a file is read from and what to do with its bad rows."""
    path: str
    on_bad_record: str = "error"
    bad: list = field(default_factory=list)

    def origin(self, line: int | None) -> str:
        return self.path if line is None else f"{self.path}:{line}"

    def bad_row(self, message: str, line: int | None, column: int | None = None,
                record: Record | None = None) -> None:
        """Raise, or in skip mode remember ``(record, origin, message)`` and let the reader go on."""
        if self.on_bad_record != "skip":
            raise InputError(message, self.path, line, column)
        self.bad.append((record, self.origin(line), message))


class Source:
    """A container of rows."""
    name: ClassVar[str] = ""
    priority: ClassVar[int] = 100      # sniffing order: lower is tried first

    @classmethod
    def sniff(cls, path: str, head: bytes | None) -> bool:
        """True when this source reads ``path``; ``head`` is its first bytes (None for folders and
        names that are not files)."""
        raise NotImplementedError

    def rows(self, ctx: Context) -> Iterator[tuple[Any, int]]:
        raise NotImplementedError


class Schema:
    """What the keys of a row mean. ``names`` maps our keys (instruction, input, output) to the
    row's own keys (``--fields``)."""
    name: ClassVar[str] = ""
    priority: ClassVar[int] = 100      # matching order: lower is tried first

    def __init__(self, names: dict[str, str]):
        self.names = names
        self.instruction_key = names["instruction"]
        self.input_key = names["input"]
        self.output_key = names["output"]

    @classmethod
    def matches(cls, row: dict, names: dict[str, str]) -> bool:
        raise NotImplementedError

    def records(self, row: dict, origin: str) -> list[Record]:
        """The records of one row; raise ``BadRecord`` when it is malformed."""
        raise NotImplementedError


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def text(row: dict, key: str, required: bool = False) -> str:
    """The string at ``row[key]``; a missing optional field (or null) is ""."""
    value = row.get(key)
    if type(value) is str:
        return value
    if value is None:
        if not required:
            return ""
        if key not in row:
            raise BadRecord(f"record has no '{key}' field")
    raise BadRecord(f"field '{key}' is {type_name(value)}, expected a string")


def script_lang(instruction: str) -> str:
    """"zh" for mostly-Han instructions; "" (unknown, left to the language filter) otherwise."""
    return "zh" if _script_of(instruction) == "zh" else ""


