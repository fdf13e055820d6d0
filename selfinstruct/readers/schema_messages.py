"""OpenAI chat messages, one conversation a row: ``{"messages": [{"role", "content"}, …]}`` (OpenAI's
fine-tuning files, TRL's conversational datasets, our own ``--format messages``).

The turns are checked here, once, for every chat schema (ShareGPT's too): each is an object with a
known role (system, user, assistant) and string content; a conversation needs a user turn and an
assistant turn. A bad turn is a bad record, reported with the row's ``file:line``, so
``--on-bad-record skip`` sets it aside like any other. Keys beyond the turns (``id``, ``tools``) are
left out, except ``id``.
"""
from __future__ import annotations

from typing import Any

from selfinstruct.readers.base import BadRecord, Schema, script_lang, type_name
from selfinstruct.record import Record

ROLES = ("system", "user", "assistant")


def checked_turns(turns: Any, key: str, role_of: dict[str, str], role_key: str = "role",
                  content_key: str = "content") -> list[dict[str, str]]:
    """``turns`` (the row's ``key``) as our messages; ``role_of`` maps the row's speaker names to
    our roles. Raises ``BadRecord`` naming the first thing wrong."""
    if type(turns) is not list:
        raise BadRecord(f"field '{key}' is {type_name(turns)}, expected a list of turns")
    messages = []
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if type(turn) is not dict:
            raise BadRecord(f"{where} is {type_name(turn)}, expected an object")
        speaker = turn.get(role_key)
        role = role_of.get(speaker) if type(speaker) is str else None
        if role is None:
            if role_key not in turn:
                raise BadRecord(f"{where} has no '{role_key}'")
            raise BadRecord(f"{where}: unknown {role_key} {speaker!r} (known: {', '.join(role_of)})")
        content = turn.get(content_key)
        if type(content) is not str:
            raise BadRecord(f"{where}: '{content_key}' is {type_name(content)}, expected a string")
        messages.append({"role": role, "content": content})
    for needed in ("user", "assistant"):
        if not any(m["role"] == needed for m in messages):
            raise BadRecord(f"field '{key}' has no {needed} turn")
    return messages


def conversation_record(messages: list[dict[str, str]], row: dict, origin: str) -> Record:
    record = Record.from_messages(messages, origin=origin)
    record.lang = script_lang(record.instruction)
    rid = row.get("id")
    if isinstance(rid, (str, int)) and not isinstance(rid, bool):
        record.id = str(rid)
    return record


class ChatMessages(Schema):
    name = "messages"
    priority = 20         # after our own records.jsonl rows, which may hold "messages" too

    @classmethod
    def matches(cls, row: dict, names: dict[str, str]) -> bool:
        return "messages" in row and names["instruction"] not in row

    def records(self, row: dict, origin: str) -> list[Record]:
        messages = checked_turns(row.get("messages"), "messages", {role: role for role in ROLES})
        return [conversation_record(messages, row, origin)]
