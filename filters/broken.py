"""``broken_text``: a field holding U+FFFD (the mark of a broken decode) or a control character other
than line feed, tab and carriage return. Such text was damaged on its way (a byte-level cut inside a
multi-byte character, a binary file read as text); training on it teaches the damage.

Default rule set only (the papers have no such rule). Reason code: broken_text, detail the field
and the character (``output holds U+FFFD``).
"""
from __future__ import annotations

import re

from selfinstruct.filters.base import Rejection
from selfinstruct.filters.quality import ALL_FIELDS, RuleSetFilter
from selfinstruct.record import Record

# C0 controls but \t \n \r, DEL, C1 controls, and the replacement character.
_BROKEN_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")


class BrokenText(RuleSetFilter):
    name = "broken_text"
    stage = "quality"
    order = 150
    fields = ALL_FIELDS

    def check(self, record: Record) -> Rejection | None:
        if self.rules_for(record) != "default":
            return None
        for field in ALL_FIELDS:
            text = getattr(record, field)
            if text.isascii() and text.isprintable():      # cheap: most fields are plain text
                continue
            m = _BROKEN_RE.search(text)
            if m:
                return self.reject("broken_text", f"{field} holds U+{ord(m.group(0)):04X}")
        return None
