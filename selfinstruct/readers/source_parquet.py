"""Parquet files, streamed a batch of rows at a time (pyarrow is imported only when one is read)."""
from __future__ import annotations

from typing import Any, Iterator

from selfinstruct.errors import InputError
from selfinstruct.readers.base import MISSING, Context, Source

_BATCH = 4096


class Parquet(Source):
    name = "parquet"
    priority = 30

    @classmethod
    def sniff(cls, path: str, head: bytes | None) -> bool:
        return head is not None and head.startswith(b"PAR1")

    def rows(self, ctx: Context) -> Iterator[tuple[Any, int]]:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError(MISSING.format(package="pyarrow"), ctx.path) from None
        try:
            batches = pq.ParquetFile(ctx.path).iter_batches(batch_size=_BATCH)
            row = 0
            for batch in batches:
                for item in batch.to_pylist():
                    row += 1
                    yield item, row
        except (OSError, ValueError) as e:   # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
            raise InputError(f"invalid parquet ({e})", ctx.path) from None
