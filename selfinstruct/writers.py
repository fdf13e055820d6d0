"""Writers at the edge: every output file appears whole or not at all (write to a temporary file in
the same folder, flush, fsync, rename)."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from selfinstruct.record import Record

# json.dumps(obj, ensure_ascii=False) with the encoder built once (dumps builds one per call when
# given options; dump does not even use the C one). The journal writes its lines with it too.
to_json = json.JSONEncoder(ensure_ascii=False).encode


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary sibling of ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def write_alpaca(path: str | os.PathLike, records: Iterable[Record]) -> int:
    """Alpaca JSON: a list of ``{instruction, input, output}``, streamed (no list of dicts in memory)."""
    n = 0
    with atomic_open(path) as f:
        f.write("[")
        for r in records:
            f.write(",\n  " if n else "\n  ")
            f.write(to_json(r.to_alpaca()))
            n += 1
        f.write("\n]\n" if n else "]\n")
    return n


def reject_line(record: Record, reason: str, detail: str = "", source: str | None = None) -> str:
    """One line of rejects.jsonl: the record, where it came from, the reason code and its detail."""
    return reject_row(record.to_dict(), reason, detail, source or record.where)


def reject_row(record: dict[str, Any], reason: str, detail: str, source: str) -> str:
    """``reject_line`` for a record already in its dict form (``Record.to_dict()``)."""
    return to_json({"reason": reason, "detail": detail, "source": source, "record": record}) + "\n"
