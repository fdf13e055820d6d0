"""Alpaca: ``{instruction, input, output}``; a missing input is "". Also BELLE's generated data and
anything mapped with ``--fields``. Known extras (id, Self-Instruct's similarity fields) are kept."""
from __future__ import annotations

from selfinstruct.readers.base import Schema, script_lang, text
from selfinstruct.record import Record


def extras(row: dict, record: Record) -> Record:
    """Copy the fields other tools put next to instruction/input/output (cheap when absent)."""
    rid = row.get("id")
    if isinstance(rid, (str, int)) and not isinstance(rid, bool):
        record.id = str(rid)
    similar = row.get("most_similar")
    if isinstance(similar, dict) and similar:          # Self-Instruct: {instruction: rouge, …}
        best = max(similar, key=lambda k: similar[k] if isinstance(similar[k], (int, float)) else -1)
        record.most_similar = best
        if isinstance(similar[best], (int, float)):
            record.rouge = float(similar[best])
    elif isinstance(similar, str):
        record.most_similar = similar
    for key in ("avg_similarity_score", "is_classification", "name"):
        if key in row:
            record.meta[key] = row[key]
    return record


class Alpaca(Schema):
    name = "alpaca"
    priority = 30

    @classmethod
    def matches(cls, row: dict, names: dict[str, str]) -> bool:
        return names["output"] in row

    def records(self, row: dict, origin: str) -> list[Record]:
        instruction = row.get(self.instruction_key)
        input_ = row.get(self.input_key, "")
        output = row.get(self.output_key)
        if type(instruction) is not str or type(input_) is not str or type(output) is not str:
            # The checks with their messages, only when the fast look found something off.
            instruction = text(row, self.instruction_key, required=True)
            input_, output = text(row, self.input_key), text(row, self.output_key, required=True)
        record = Record(instruction, input_, output, "", script_lang(instruction), origin)
        if len(row) > 2 + (self.input_key in row):   # keys beyond instruction/input/output
            extras(row, record)
        return [record]
