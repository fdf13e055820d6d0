"""What teacher calls cost: a built-in price table for OpenAI models, and a token estimate for text
whose usage the server did not report (or that has not been sent yet).

Prices are USD per 1M tokens (input, output), standard (non-batch, non-cached-input) tier, as listed
on https://openai.com/api/pricing in 2025. They go stale: pass ``price_in`` / ``price_out`` to the
teacher to override. Unknown models (local servers, other providers) cost 0 unless told otherwise.
"""
from __future__ import annotations

import math

from selfinstruct.text import cjk_count

# model -> (input, output) USD per 1M tokens. Dated snapshots ("gpt-4o-mini-2024-07-18") match the
# longest entry they extend with "-".
PRICES: dict[str, tuple[float, float]] = {
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-2024-05-13": (5.00, 15.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-4-32k": (60.00, 120.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-3.5-turbo-instruct": (1.50, 2.00),
    "davinci-002": (2.00, 2.00),
    "babbage-002": (0.40, 0.40),
    "o1": (15.00, 60.00),
    "o1-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
}

# Per-message framing a chat request adds to the prompt (role markers, separators).
CHAT_OVERHEAD_TOKENS = 7


def price_for(model: str) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for a known OpenAI model, else None."""
    model = model.rsplit("/", 1)[-1]           # "openai/gpt-4o" as some gateways spell it
    best = None
    for name in PRICES:
        if (model == name or model.startswith(name + "-")) and (best is None or len(name) > len(best)):
            best = name
    return PRICES[best] if best is not None else None


def estimate_tokens(text: str) -> int:
    """Tokens in ``text`` without a tokenizer: the usual chars/4 for alphabetic text, but one token
    per Han/kana character (BPE vocabularies spend about one per character on Chinese, so chars/4
    would under-count it four-fold and let a budget or a --tpm limit overshoot)."""
    cjk = cjk_count(text)
    return cjk + math.ceil((len(text) - cjk) / 4)
