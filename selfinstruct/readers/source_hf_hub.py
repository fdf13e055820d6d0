"""``hf:NAME[:split]``: a dataset from the local Hugging Face cache, never the network."""
from __future__ import annotations

import os
import sys
from typing import Any, Iterator

from selfinstruct.errors import InputError
from selfinstruct.readers.base import MISSING, Context, Source
from selfinstruct.readers.source_hf_disk import arrow_rows

PREFIX = "hf:"


def go_offline() -> None:
    """Make ``datasets`` and ``huggingface_hub`` use the cache only (before they are imported, or by
    patching their constants when they already are)."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    for module, names in (("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
                          ("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))):
        loaded = sys.modules.get(module)
        for name in names:
            if loaded is not None and hasattr(loaded, name):
                setattr(loaded, name, True)


class HubCache(Source):
    name = "hf"
    priority = 10

    @classmethod
    def sniff(cls, path: str, head: bytes | None) -> bool:
        return head is None and path.startswith(PREFIX) and not os.path.exists(path)

    def rows(self, ctx: Context) -> Iterator[tuple[Any, int]]:
        name, _, split = ctx.path[len(PREFIX):].partition(":")
        go_offline()
        try:
            import datasets
        except ImportError:
            raise InputError(MISSING.format(package="datasets"), ctx.path) from None
        try:
            dataset = datasets.load_dataset(name, split=split or "train")
        except Exception as e:   # noqa: BLE001  datasets raises many kinds; all mean "not here"
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"not in the local Hugging Face cache ({reason})", f"{PREFIX}{name}") from None
        yield from arrow_rows(dataset)
