"""The data file in the format a trainer reads, a Hugging Face dataset, a push to the Hub, and the
dataset card: what ``generate`` and ``filter`` write besides records.jsonl (always written).

(Being written for issue 14: the settings are fixed here first so that both commands take them.)
"""
from __future__ import annotations

from dataclasses import dataclass

from selfinstruct.errors import UsageError

FORMATS = ("alpaca", "sharegpt", "messages")


@dataclass
class Publish:
    format: str = "alpaca"               # the data file: alpaca (data.json) | sharegpt | messages
    hf_out: str | None = None            # a save_to_disk folder
    push_to_hub: str | None = None       # a Hub dataset name ("user/name")
    test_size: float | None = None       # a share (0 < x < 1) or a count (>= 1) split off as "test"
    private: bool = True                 # a pushed dataset is private unless --public

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise UsageError(f"--format {self.format} is not one of {', '.join(FORMATS)}")
        if self.test_size is not None and (self.test_size <= 0 or (self.test_size >= 1
                                                                   and self.test_size != int(self.test_size))):
            raise UsageError(f"--test-size must be a share between 0 and 1 or a whole number of records "
                             f"(got {self.test_size:g})")

    def shown(self) -> dict:
        return {"format": self.format, "hf_out": self.hf_out, "push_to_hub": self.push_to_hub,
                "test_size": self.test_size, "private": self.private}
