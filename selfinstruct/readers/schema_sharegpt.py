"""ShareGPT conversations: ``{"conversations": [{"from": "human"|"gpt"|"system", "value"}, …]}``, as
LLaMA-Factory (``formatting: sharegpt``), axolotl and the ShareGPT/Vicuna dumps write them; a JSON
list or JSON lines (the source decides). Speakers may also be named user/assistant, and turns written
with ``role``/``content`` keys are read too (some converters keep OpenAI's keys inside
"conversations"). LLaMA-Factory's top-level ``system`` string becomes the first turn. The turns are
checked as OpenAI messages are (``schema_messages.checked_turns``).
"""
from __future__ import annotations

from selfinstruct.readers.base import BadRecord, Schema, type_name
from selfinstruct.readers.schema_messages import checked_turns, conversation_record
from selfinstruct.record import Record

SPEAKERS = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


class ShareGPT(Schema):
    name = "sharegpt"
    priority = 20

    @classmethod
    def matches(cls, row: dict, names: dict[str, str]) -> bool:
        return "conversations" in row and names["instruction"] not in row

    def records(self, row: dict, origin: str) -> list[Record]:
        turns = row.get("conversations")
        first = turns[0] if type(turns) is list and turns else None
        keys = ("role", "content") if type(first) is dict and "from" not in first and "role" in first \
            else ("from", "value")
        messages = checked_turns(turns, "conversations", SPEAKERS, *keys)
        system = row.get("system")
        if system is not None and type(system) is not str:
            raise BadRecord(f"field 'system' is {type_name(system)}, expected a string")
        if system and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system})
        return [conversation_record(messages, row, origin)]
