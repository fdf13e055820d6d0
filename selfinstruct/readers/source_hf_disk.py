"""A folder written by ``datasets``' ``save_to_disk`` (a Dataset, or a DatasetDict whose ``train``
split, or only split, is read; ``FOLDER:SPLIT`` picks another)."""
from __future__ import annotations

import os
from typing import Any, Iterator

from selfinstruct.errors import InputError
from selfinstruct.readers.base import MISSING, Context, Source

_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_BATCH = 1024


def split_spec(path: str) -> tuple[str, str | None]:
    """``FOLDER:SPLIT`` → (FOLDER, SPLIT) when FOLDER is a dataset folder and ``path`` is not."""
    folder, colon, split = path.rpartition(":")
    if colon and split and not os.path.exists(path) and is_dataset_folder(folder):
        return folder, split
    return path, None


def is_dataset_folder(path: str) -> bool:
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, m)) for m in _MARKERS)


def arrow_rows(dataset) -> Iterator[tuple[Any, int]]:
    """Rows of a ``datasets.Dataset`` as dicts, a batch of Arrow rows at a time."""
    row = 0
    for table in dataset.with_format("arrow").iter(batch_size=_BATCH):
        for item in table.to_pylist():
            row += 1
            yield item, row


def pick_split(dataset, split: str | None, where: str):
    """The split to read of a DatasetDict (``train`` or the only one unless named)."""
    if not hasattr(dataset, "keys"):
        if split:
            raise InputError(f"has no splits (asked for '{split}')", where)
        return dataset
    names = list(dataset.keys())
    if split is None:
        split = "train" if "train" in names or len(names) != 1 else names[0]
    if split not in names:
        raise InputError(f"no split '{split}' (splits: {', '.join(names)})", where)
    return dataset[split]


class SavedDataset(Source):
    name = "hf_disk"
    priority = 20

    @classmethod
    def sniff(cls, path: str, head: bytes | None) -> bool:
        return head is None and is_dataset_folder(split_spec(path)[0])

    def rows(self, ctx: Context) -> Iterator[tuple[Any, int]]:
        folder, split = split_spec(ctx.path)
        try:
            import datasets
        except ImportError:
            raise InputError(MISSING.format(package="datasets"), ctx.path) from None
        try:
            dataset = datasets.load_from_disk(folder)
        except (OSError, ValueError) as e:
            raise InputError(f"not a readable dataset folder ({e})", ctx.path) from None
        yield from arrow_rows(pick_split(dataset, split, ctx.path))
