"""``generate --estimate`` (placeholder until the estimate helper lands)."""
from __future__ import annotations

from selfinstruct.errors import UsageError


def run_estimate(s, started=None):
    raise UsageError("--estimate is not implemented yet")


def print_estimate(estimate, out) -> None:
    raise NotImplementedError
