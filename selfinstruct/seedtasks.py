"""Seed tasks: the project's own (``seeds/en.jsonl``, ``seeds/zh.jsonl``) or the user's ``--seeds``
files in any format the readers know (Self-Instruct JSONL, BELLE, Alpaca JSON…)."""
from __future__ import annotations

import os
from importlib import resources
from typing import Sequence

from selfinstruct.errors import InputError
from selfinstruct.record import Record


def default_seed_path(lang: str) -> str:
    return str(resources.files("selfinstruct.seeds").joinpath(f"{lang}.jsonl"))


def load_seeds(paths: Sequence[str] | None, lang: str) -> list[Record]:
    from selfinstruct.readers import read_records
    paths = list(paths) if paths else [default_seed_path(lang)]
    seeds: list[Record] = []
    for path in paths:
        if os.path.isdir(path):
            raise InputError("is a folder, expected a seed file", path)
        got = [r for r in read_records(path) if r.instruction.strip()]
        if not got:
            raise InputError("no seed tasks", path)
        for r in got:
            r.origin = r.origin or path
            r.lang = r.lang or lang
        seeds.extend(got)
    return seeds
