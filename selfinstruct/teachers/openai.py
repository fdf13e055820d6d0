"""``--teacher openai``: any OpenAI-compatible HTTP server (api.openai.com, vLLM, llama.cpp,
Ollama, TGI, LiteLLM…), via /v1/chat/completions or /v1/completions.

Built for thousands of requests in flight on little CPU: one aiohttp session with a keep-alive
connection pool the size of ``concurrency`` (about a tenth of the CPU per request of the stock
``AsyncOpenAI`` client, see benchmarks/bench_teacher_throughput.py). Each request:

1. reserves its worst-case cost against ``max_cost`` (``BudgetExhausted`` when spent money leaves no
   room), then waits for the shared rate limiter (``rpm`` / ``tpm`` buckets, pool-wide pauses);
2. is sent; retryable failures (429, 408, 409, 5xx, timeouts, connection errors, truncated or
   non-JSON bodies, empty ``choices``) are retried with exponential back-off and full jitter, or
   after the server's ``Retry-After`` (a 429 or a Retry-After pauses the whole pool, not one
   worker); after ``max_attempts`` the answer is ``Response(text="", error="http 503 after 6
   attempts")`` so the loop records it;
3. any other 4xx (bad key, unknown model, prompt too long) raises ``TeacherError``: retrying cannot
   fix it.

Token counts come from the server's ``usage``; when it sends none they are estimated (see
``selfinstruct.pricing.estimate_tokens``) and the answer carries ``extra["usage_estimated"]``.

Several endpoints (``base_url`` a list, or ``endpoints`` a file): each attempt goes to the endpoint
``selfinstruct.teachers._endpoints.EndpointPool`` chooses (the healthy one with the fewest attempts
in flight; failing ones are paused and probed); ``concurrency``, ``rpm`` and ``tpm`` stay pool-wide.
A retry after a server failure goes at once to another healthy endpoint instead of backing off.
"""
from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from selfinstruct.errors import TeacherError, UsageError
from selfinstruct.pricing import CHAT_OVERHEAD_TOKENS, estimate_tokens, price_for
from selfinstruct.ratelimit import RateLimiter, backoff_s
from selfinstruct.teachers._accounting import Accounting
from selfinstruct.teachers._endpoints import (Endpoint, EndpointPool, EndpointSpec,
                                              parse_endpoints_file, specs_from_urls)
from selfinstruct.teachers._http import (Decoded, Transient, api_for, decode_body, endpoint_url,
                                         fatal_message, is_retryable, request_body, retry_after_s,
                                         usage_of)
from selfinstruct.teachers.base import Request, Response, Teacher

OPENAI_URL = "https://api.openai.com/v1"
APIS = ("chat", "completions")


class OpenAITeacher(Teacher):
    name = "openai"

    def __init__(self, *, model: str | None = None, base_url: str | list[str] | None = None,
                 endpoints: str | None = None, batch: bool = False, batch_poll: float = 30.0,
                 api_key: str | None = None, api: str = "chat", concurrency: int = 16,
                 rpm: float | None = None, tpm: float | None = None, max_attempts: int = 6,
                 timeout: float = 120.0, price_in: float | None = None,
                 price_out: float | None = None, max_cost: float | None = None,
                 backoff_base: float = 1.0, backoff_cap: float = 60.0):
        _check_options(api, concurrency, rpm, tpm, max_attempts, timeout, max_cost, backoff_base)
        self.model = model or os.environ.get("OPENAI_MODEL") or "gpt-4o-mini"
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._api_key = self._api_key or None           # "" means no key, as for local servers
        specs = _endpoint_specs(base_url, endpoints, batch, self.model, self._api_key)
        models = list(dict.fromkeys(spec.model for spec in specs))
        # The first endpoint's URL and model stand for the pool where one is asked for (the batch
        # path, --price lookup); the label names every model, as the data may come from any.
        self.model = specs[0].model
        self.base_url = specs[0].url
        self._shown_url = str(URL(self.base_url).with_user(None))     # no user:password@
        self.api, self.concurrency, self.rpm, self.tpm = api, concurrency, rpm, tpm
        self.max_attempts, self.timeout = max_attempts, timeout
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        known = price_for(self.model) or (0.0, 0.0)
        self.price_in = known[0] if price_in is None else price_in
        self.price_out = known[1] if price_out is None else price_out
        self.max_cost = max_cost
        # --base-url given several times or --endpoints FILE: the endpoint pool (see _endpoints);
        # --batch: requests go through the Batch API in waves (see _batch)
        self.endpoints_file = endpoints
        self.batch, self.batch_poll = batch, batch_poll     # seconds between polls of a batch
        self._batcher = None
        self._journal_write, self._journal_events = None, []
        self.label = "openai:" + "+".join(models)
        self._pool = EndpointPool(specs, backoff_base, backoff_cap)
        self._routes: list[_Route] = []
        # parsed once, not per request; a raw request (magpie) goes to /v1/completions whatever --api says
        self._urls = {kind: URL(endpoint_url(self.base_url, kind)) for kind in APIS}
        self._url = self._urls[api]
        self._accounting = Accounting(self.price_in, self.price_out, max_cost)
        self._limiter = RateLimiter(rpm, tpm)
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._rng = random.Random()

    def __repr__(self) -> str:                          # never shows the key
        return f"OpenAITeacher(model={self.model!r}, base_url={self._shown_url!r}, api={self.api!r})"

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        if self._session is not None:
            return
        specs = [e.spec for e in self._pool.endpoints]
        for spec in specs:
            if spec.api_key is None and spec.url.rstrip("/") == OPENAI_URL:
                raise TeacherError(f"no API key for {OPENAI_URL}: set OPENAI_API_KEY "
                                   "(or --base-url for a local server that needs none)")
        self._routes = [_Route(spec) for spec in specs]
        self._pool.restart()
        headers = {"Content-Type": "application/json", "User-Agent": "selfinstruct"}
        # One key and one proxy for every endpoint (always so with one): set once on the session;
        # otherwise each request carries its endpoint's own.
        shared_key = len({spec.api_key for spec in specs}) == 1
        if shared_key and specs[0].api_key is not None:
            headers["Authorization"] = f"Bearer {specs[0].api_key}"
        shared_proxy = len({(r.proxy, r.proxy_auth) for r in self._routes}) == 1
        for route in self._routes:
            route.headers = None if shared_key else route.headers
            if shared_proxy:
                route.proxy, route.proxy_auth = None, None
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=0,
                                         ttl_dns_cache=300)
        # No trust_env: aiohttp would then look up proxies and .netrc in a thread per request
        # (2-3x the CPU of the request itself). The environment's proxy is resolved once instead.
        proxy, proxy_auth = _env_proxy(self._url) if shared_proxy else (None, None)
        self._session = aiohttp.ClientSession(
            connector=connector, headers=headers, proxy=proxy, proxy_auth=proxy_auth,
            cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=self.timeout))
        # The pool never has more than `concurrency` requests on the wire, however many the caller
        # starts: waiting for a slot must not eat into a request's timeout.
        self._slots = asyncio.Semaphore(self.concurrency)
        self._limiter = RateLimiter(self.rpm, self.tpm)
        self._accounting.start()
        if self.batch:
            from selfinstruct.teachers._batch import Batcher
            self._batcher = Batcher(self, self._journal_write, self._journal_events)

    def attach(self, write, events) -> None:
        self._journal_write, self._journal_events = write, [e for e in events]

    async def aclose(self) -> None:
        if self._batcher is not None:
            await self._batcher.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- one request ------------------------------------------------------------------------
    async def complete(self, request: Request) -> Response:
        if self._session is None:
            await self.start()
        if self._batcher is not None:
            return await self._batcher.complete(request)
        api = api_for(request, self.api)
        prompt_estimate = (estimate_tokens(request.prompt) + estimate_tokens(request.system)
                           + sum(estimate_tokens(content) for _, content in request.history))
        if api == "chat":
            prompt_estimate += CHAT_OVERHEAD_TOKENS
        worst_cost = self._accounting.cost(prompt_estimate, request.max_tokens)
        await self._accounting.reserve(worst_cost)
        try:
            return await self._with_retries(request, prompt_estimate, api)
        finally:
            self._accounting.release(worst_cost)

    async def _with_retries(self, request: Request, prompt_estimate: int, api: str) -> Response:
        assert self._slots is not None
        bodies: dict[str, bytes] = {}                  # per model: endpoints may serve different ones
        tokens_needed = prompt_estimate + request.max_tokens
        reason = ""
        avoid: Endpoint | None = None                  # where the last attempt failed
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                self._accounting.retried(request.stage)
            await self._limiter.acquire(tokens_needed)
            # The endpoint is chosen once a slot is free, so the in-flight counts it compares are now's.
            async with self._slots:
                # (no coroutine to wait for when an endpoint is free, the usual case)
                endpoint = self._pool.pick(avoid) or await self._pool.choose(avoid)
                body = bodies.get(endpoint.model)
                if body is None:
                    body = bodies[endpoint.model] = request_body(request, endpoint.model, api)
                outcome = await self._attempt(endpoint, body, tokens_needed, request.stage, api)
            if isinstance(outcome, Transient):
                self._limiter.settle(tokens_needed, 0)       # a failed attempt used no tokens
                reason, avoid = outcome.reason, endpoint
                if attempt < self.max_attempts:
                    await self._back_off(outcome, attempt, endpoint)
                continue
            return self._answer(request, outcome, prompt_estimate, tokens_needed)
        self._accounting.failed(request.stage)
        return Response(text="", error=f"{reason} after {self.max_attempts} attempts")

    async def _attempt(self, endpoint: Endpoint, body: bytes, tokens_needed: int, stage: str,
                       api: str) -> Decoded | Transient:
        """One attempt on ``endpoint``, its outcome told to the pool; a transient failure is
        returned (the caller retries), a final one raised."""
        started = self._pool.sent(endpoint)
        try:
            decoded = await self._post(self._routes[endpoint.index], body, tokens_needed, stage, api)
        except Transient as failure:
            # a 429 is the rate limiter's business, not a sign that the server is down
            self._pool.failed(endpoint, unhealthy=failure.status != 429)
            return failure
        except TeacherError:                             # refused (4xx): retrying cannot help
            self._pool.refused(endpoint)
            raise
        except BaseException:                            # the run stopped waiting for it
            self._pool.abandoned(endpoint)
            raise
        self._pool.answered(endpoint, started)
        return decoded

    async def _post(self, route: "_Route", body: bytes, tokens_needed: int, stage: str,
                    api: str) -> Decoded:
        assert self._session is not None
        try:
            async with self._session.post(route.urls[api], data=body, headers=route.headers,
                                          proxy=route.proxy, proxy_auth=route.proxy_auth) as http:
                payload = await http.read()
                status, headers = http.status, http.headers
        except asyncio.TimeoutError:
            raise Transient("timeout") from None
        except aiohttp.ClientPayloadError:
            raise Transient("truncated body") from None
        except aiohttp.ClientConnectorError as refused:     # nothing listening, DNS, TLS
            raise Transient(f"cannot connect to {refused.host}:{refused.port}") from None
        except (aiohttp.ClientConnectionError, ConnectionError):
            raise Transient("connection error") from None
        self._limiter.observe(headers, tokens_needed)
        if status == 200:
            return decode_body(payload, api)
        if is_retryable(status):
            raise Transient(f"http {status}", status, retry_after_s(headers))
        self._accounting.rejected(stage)
        raise TeacherError(fatal_message(status, payload, route.api_key))

    async def _back_off(self, failure: Transient, attempt: int, endpoint: Endpoint) -> None:
        if failure.retry_after is not None:
            # The server named a time: nobody in the pool sends before it.
            self._limiter.pause(failure.retry_after)
        elif failure.status == 429:
            self._limiter.pause(backoff_s(attempt, self.backoff_base, self.backoff_cap, self._rng))
        elif self._pool.has_other_healthy(endpoint):
            return                      # the retry goes to another endpoint, which is up: no wait
        else:
            await asyncio.sleep(backoff_s(attempt, self.backoff_base, self.backoff_cap, self._rng))

    def _answer(self, request: Request, decoded: Decoded, prompt_estimate: int,
                tokens_needed: int) -> Response:
        prompt_tokens, completion_tokens, extra = usage_of(decoded, prompt_estimate)
        estimated = "usage_estimated" in extra
        self._limiter.settle(tokens_needed, prompt_tokens + completion_tokens)
        self._accounting.answered(request.stage, prompt_tokens, completion_tokens,
                                  truncated=decoded.finish_reason == "length",
                                  estimated=estimated)
        return Response(text=decoded.text, finish_reason=decoded.finish_reason,
                        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        extra=extra)

    @property
    def cache_namespace(self) -> str:
        # The same prompt to another model is a miss; endpoints that all serve one model share the
        # namespace of one endpoint (an existing cache, and the shards of a sharded run, keep working).
        return f"{self.label}|{self.api}"

    def all_down(self) -> bool:
        return self._pool.all_down()

    # -- accounting -------------------------------------------------------------------------
    def ledger(self) -> dict[str, Any]:
        """Everything this teacher sent, received and spent, per stage (for standalone use; in a
        generate run the loop counts requests and tokens, see ``stats``)."""
        return {"teacher": self.label, **self._accounting.totals()}

    def retries_per_stage(self) -> dict[str, int]:
        return {stage: c.retries for stage, c in self._accounting.stages.items() if c.retries}

    def stats(self) -> dict[str, Any]:
        totals = self._accounting.totals()
        return {
            "model": self.model, "api": self.api, "base_url": self._shown_url,
            "concurrency": self.concurrency, "rpm": self.rpm, "tpm": self.tpm,
            "max_attempts": self.max_attempts, "price_in": self.price_in,
            "price_out": self.price_out, "max_cost": self.max_cost,
            **{k: totals[k] for k in ("retries", "failures", "rejected", "truncated", "usage_estimated")},
            "rate_limit_pauses": self._limiter.pauses,
            "rate_limit_paused_s": round(self._limiter.paused_s, 3),
            # per endpoint, keyed by URL without credentials; only for a pool (one endpoint's
            # figures are the ones above)
            **({"endpoints": self._pool.stats()} if self._pool.several else {}),
            **({"batch": self._batcher.stats()} if self._batcher is not None else {}),
        }

    def cost_usd(self) -> float:
        return round(self._accounting.spent, 6)

    def live(self) -> dict[str, Any]:
        live = self._accounting.live()
        if self._pool.several:          # how many endpoints take traffic now
            live["endpoints_up"] = f"{self._pool.healthy_count()}/{len(self._pool.endpoints)}"
        return live


class _Route:
    """How a request reaches one endpoint: its URLs per API, and the headers and proxy it needs
    beyond the session's (None: the session's)."""

    def __init__(self, spec: EndpointSpec):
        self.api_key = spec.api_key
        # parsed once, not per request; a raw request (magpie) goes to /v1/completions whatever --api says
        self.urls = {kind: URL(endpoint_url(spec.url, kind)) for kind in APIS}
        self.headers = ({"Authorization": f"Bearer {spec.api_key}"} if spec.api_key is not None
                        else None)
        self.proxy, self.proxy_auth = _env_proxy(self.urls["chat"])


def _endpoint_specs(base_url: str | list[str] | None, endpoints: str | None, batch: bool,
                    model: str, api_key: str | None) -> list[EndpointSpec]:
    """The endpoints the options name: ``endpoints`` (a file), several ``base_url``s, or one (by
    default $OPENAI_BASE_URL, else OpenAI's)."""
    urls = [base_url] if isinstance(base_url, str) else list(base_url or [])
    if endpoints is not None and urls:
        raise UsageError("--endpoints FILE and --base-url: give one of them (the file lists every endpoint)")
    if batch and (endpoints is not None or len(urls) > 1):
        raise UsageError("--batch sends every request to one endpoint: give one --base-url, "
                         "not --endpoints or several")
    if endpoints is not None:
        return parse_endpoints_file(endpoints, model, api_key)
    if len(urls) > 1:
        return specs_from_urls(urls, model, api_key)
    url = urls[0] if urls else os.environ.get("OPENAI_BASE_URL") or OPENAI_URL
    return [EndpointSpec(url, model, api_key)]


def _env_proxy(url: URL) -> tuple[str | None, aiohttp.BasicAuth | None]:
    """The proxy HTTPS_PROXY / HTTP_PROXY / NO_PROXY give for ``url``, as the stock client uses."""
    try:
        proxy, auth = get_env_proxy_for_url(url)
    except LookupError:
        return None, None
    return str(proxy), auth


def _check_options(api: str, concurrency: int, rpm: float | None, tpm: float | None,
                   max_attempts: int, timeout: float, max_cost: float | None,
                   backoff_base: float) -> None:
    if api not in APIS:
        raise UsageError(f"unknown --api '{api}' (choose from {', '.join(APIS)})")
    for option, value in (("--concurrency", concurrency), ("--max-attempts", max_attempts)):
        if not isinstance(value, int) or value < 1:
            raise UsageError(f"{option} must be a whole number >= 1, got {value!r}")
    for option, limit in (("--rpm", rpm), ("--tpm", tpm), ("--timeout", timeout)):
        if limit is not None and not limit > 0:
            raise UsageError(f"{option} must be > 0, got {limit!r}")
    if max_cost is not None and max_cost < 0:
        raise UsageError(f"--max-cost must be >= 0, got {max_cost!r}")
    if backoff_base < 0:
        raise UsageError(f"backoff_base must be >= 0, got {backoff_base!r}")
