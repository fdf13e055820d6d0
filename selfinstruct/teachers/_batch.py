"""``--batch``: the OpenAI Batch API (placeholder until the batch helper lands)."""
from __future__ import annotations

from selfinstruct.errors import UsageError


class Batcher:
    def __init__(self, teacher, write, events):
        raise UsageError("--batch is not implemented yet")

    async def complete(self, request):
        raise NotImplementedError

    async def aclose(self) -> None:
        pass
