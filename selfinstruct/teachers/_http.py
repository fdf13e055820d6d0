"""The OpenAI wire format, without any I/O: building request bodies, decoding response bodies,
telling a retryable failure from a final one, and reading Retry-After."""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

from selfinstruct.pricing import estimate_tokens
from selfinstruct.teachers.base import Request

# Statuses worth another attempt: rate limited, timed out at a proxy, and any 5xx (502/503/504 from
# load balancers, 520-529 from CDNs and "overloaded" providers).
RETRY_STATUSES = frozenset({408, 409, 429})

# Longest Retry-After we obey as given; a server asking for more is capped (the attempt budget still
# bounds the total).
MAX_RETRY_AFTER_S = 300.0


class Transient(Exception):
    """One attempt failed in a way another attempt may fix. ``reason`` is the short text the final
    error carries ("http 503", "timeout", ...); ``retry_after`` is the server's wish in seconds."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.status, self.retry_after = reason, status, retry_after


@dataclass
class Decoded:
    text: str
    finish_reason: str
    prompt_tokens: int | None       # None when the server sent no usage
    completion_tokens: int | None
    unusual_finish: str | None = None   # a finish_reason other than stop/length, e.g. content_filter


def endpoint_url(base_url: str, api: str) -> str:
    """``base_url`` (by convention ending in /v1, with or without a trailing slash) + the endpoint."""
    path = "chat/completions" if api == "chat" else "completions"
    return base_url.rstrip("/") + "/" + path


def api_for(request: Request, api: str) -> str:
    """The endpoint a request goes to: a raw request needs /v1/completions whatever --api says."""
    return "completions" if request.kind == "raw" else api


def request_body(request: Request, model: str, api: str) -> bytes:
    """The JSON body for ``api`` (the endpoint ``api_for`` chose)."""
    body: dict[str, Any] = {"model": model, "max_tokens": request.max_tokens,
                            "temperature": request.temperature, "top_p": request.top_p}
    if api == "chat":
        body["messages"] = request.turns() if request.kind == "chat" else [
            {"role": "user", "content": request.prompt}]
    elif request.kind == "chat" and (request.system or request.history):
        # a completions endpoint has no turns: the system text leads, earlier turns as a transcript
        body["prompt"] = transcript(request)
    else:
        body["prompt"] = request.prompt
    if request.stop:
        body["stop"] = list(request.stop)
    if request.seed is not None:
        body["seed"] = request.seed
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def transcript(request: Request) -> str:
    """A chat request as plain text for a completions endpoint."""
    parts = [request.system] if request.system else []
    if request.history:
        parts += [f"{role.capitalize()}: {content}" for role, content in request.history]
        parts += [f"User: {request.prompt}", "Assistant:"]
    else:
        parts.append(request.prompt)
    return "\n\n".join(parts)


def decode_body(body: bytes, api: str) -> Decoded:
    """Text, finish reason and usage of a 200 response; Transient when the body is unusable."""
    try:
        data = json.loads(body)
    except ValueError:
        raise Transient("invalid json") from None
    if not isinstance(data, dict):
        raise Transient("invalid json")
    choices = data.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise Transient("empty choices")
    choice = choices[0]
    if api == "chat":
        text = (choice.get("message") or {}).get("content")
    else:
        text = choice.get("text")
    reason = choice.get("finish_reason")
    if not isinstance(text, str):
        if not reason:
            raise Transient("empty choices")
        text = ""                   # a finished answer without text (e.g. "content_filter")
    usage = data.get("usage") or {}
    return Decoded(text, "length" if reason == "length" else "stop",
                   _int_or_none(usage.get("prompt_tokens")),
                   _int_or_none(usage.get("completion_tokens")),
                   reason if reason not in (None, "stop", "length") else None)


def usage_of(decoded: Decoded, prompt_estimate: int) -> tuple[int, int, dict[str, Any]]:
    """Prompt and completion tokens of an answer (estimated where the server sent no usage) and the
    response's ``extra``: an unusual finish reason, ``usage_estimated`` when a count is a guess."""
    extra: dict[str, Any] = {}
    if decoded.unusual_finish:
        extra["finish_reason"] = decoded.unusual_finish
    prompt_tokens, completion_tokens = decoded.prompt_tokens, decoded.completion_tokens
    if prompt_tokens is None or completion_tokens is None:
        extra["usage_estimated"] = True
        if prompt_tokens is None:
            prompt_tokens = prompt_estimate
        if completion_tokens is None:
            completion_tokens = estimate_tokens(decoded.text)
    return prompt_tokens, completion_tokens, extra


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def is_retryable(status: int) -> bool:
    return status in RETRY_STATUSES or status >= 500


_HINTS = {401: " — check OPENAI_API_KEY", 403: " — check OPENAI_API_KEY and the model's access",
          404: " — check the model name and --base-url"}
_KEYLIKE = re.compile(r"\bsk-[A-Za-z0-9*_\-]{4,}")


def fatal_message(status: int, body: bytes, api_key: str | None) -> str:
    """One line for a 4xx that retrying will not fix, with the server's own message (keys removed)."""
    code, message = None, ""
    try:
        error = json.loads(body).get("error")
        if isinstance(error, dict):
            code = error.get("code") or error.get("type")
            message = str(error.get("message") or "")
        elif isinstance(error, str):
            message = error
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace")
    if api_key:
        message = message.replace(api_key, "***")
    message = _KEYLIKE.sub("sk-***", " ".join(message.split()))[:300]
    head = f"teacher returned HTTP {status}" + (f" ({code})" if code else "")
    return head + (f": {message}" if message else "") + _HINTS.get(status, "")


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms`` (OpenAI), else ``Retry-After`` as
    seconds or as an HTTP date. None when absent or unreadable. ``now`` is wall-clock (tests)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return _clamp(float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return _clamp(float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return _clamp(when - (time.time() if now is None else now))


def _clamp(seconds: float) -> float | None:
    if seconds != seconds:              # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
