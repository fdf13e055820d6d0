"""Instruction-only records: Self-Instruct's machine-generated instructions (``instruction`` plus
``most_similar``, ``avg_similarity_score``…), chosen when the first record has no output."""
from __future__ import annotations

from selfinstruct.readers.base import Schema, script_lang, text
from selfinstruct.readers.schema_alpaca import extras
from selfinstruct.record import Record


class InstructionOnly(Schema):
    name = "instruction"
    priority = 40

    @classmethod
    def matches(cls, row: dict, names: dict[str, str]) -> bool:
        return names["instruction"] in row

    def records(self, row: dict, origin: str) -> list[Record]:
        instruction = text(row, self.instruction_key, required=True)
        record = Record(instruction, text(row, self.input_key), lang=script_lang(instruction), origin=origin)
        return [extras(row, record)]
