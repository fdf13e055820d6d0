"""Topic and persona conditioning: one topic and/or persona drawn per unit and written into its
prompt, so that thousands of requests do not all land on the same few subjects.

``--topics FILE`` / ``--personas FILE`` hold one entry per line (blank lines and lines starting
with ``#`` are skipped); ``--topics builtin`` is the project's own short list for the run's language
(``seeds/topics_<lang>.txt``). What a unit drew goes in its first request's ``carry`` and in every
record it makes (``meta["topic"]``, ``meta["persona"]``).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from importlib import resources

from selfinstruct.errors import InputError, UsageError

BUILTIN = "builtin"

SENTENCES = {
    "en": {"topic": "The task should be about {topic}.",
           "persona": "Write it as {persona} would ask it."},
    "zh": {"topic": "任务的主题是：{topic}。",
           "persona": "请以这样一个人的口吻来写：{persona}。"},
}


def builtin_topics_path(lang: str) -> str:
    return str(resources.files("selfinstruct.seeds").joinpath(f"topics_{lang}.txt"))


def read_entries(path: str, flag: str) -> list[str]:
    """The non-blank, non-comment lines of ``path``; an unreadable or empty file is an error."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise UsageError(f"{flag} {path}: no such file") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot read it ({e.strerror or e})") from None
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise InputError(f"{path}: no entries (one {flag.lstrip('-').rstrip('s')} per line)")
    return entries


@dataclass
class Conditions:
    topics: list[str]
    personas: list[str]
    lang: str

    @classmethod
    def load(cls, topics: str | None, personas: str | None, lang: str) -> "Conditions":
        topic_path = builtin_topics_path(lang) if topics == BUILTIN else topics
        return cls(read_entries(topic_path, "--topics") if topic_path else [],
                   read_entries(personas, "--personas") if personas else [], lang)

    def __bool__(self) -> bool:
        return bool(self.topics or self.personas)

    def pick(self, rng: random.Random) -> dict[str, str]:
        """One topic and one persona (those configured), drawn from ``rng``."""
        picked = {}
        if self.topics:
            picked["topic"] = rng.choice(self.topics)
        if self.personas:
            picked["persona"] = rng.choice(self.personas)
        return picked

    def text(self, picked: dict[str, str]) -> str:
        """The prompt sentences for what was picked ("" for nothing)."""
        words = SENTENCES[self.lang]
        return " ".join(words[k].format(**{k: picked[k]}) for k in ("topic", "persona") if k in picked)
