"""BELLE's ``{"input": …, "target": …}`` records: the input is the whole prompt (the instruction),
the target is the output."""
from __future__ import annotations

from selfinstruct.readers.base import Schema, script_lang, text
from selfinstruct.record import Record


class BelleTarget(Schema):
    name = "belle_target"
    priority = 20

    @classmethod
    def matches(cls, row: dict, names: dict[str, str]) -> bool:
        return "target" in row and "input" in row and names["instruction"] not in row

    def records(self, row: dict, origin: str) -> list[Record]:
        instruction = text(row, "input", required=True)
        record = Record(instruction, "", text(row, "target", required=True), lang=script_lang(instruction),
                        origin=origin)
        return [record]
