"""The response cache: hits cost nothing, keys separate models and endpoints, failures and secrets
are never stored, and several processes can write to one file at once."""
from __future__ import annotations

import asyncio
import json
import multiprocessing

from selfinstruct.cache import ResponseCache, complete_cached
from selfinstruct.teachers.base import Request, Response
from tests.fake_openai_server import server_error


def run_through_cache(teacher, cache, requests):
    async def main():
        await teacher.start()
        try:
            return await asyncio.gather(*(complete_cached(teacher, cache, r) for r in requests))
        finally:
            await teacher.aclose()
    return asyncio.run(main())


REQUESTS = [Request(prompt=f"Write task {i}", max_tokens=32, stage="instructions") for i in range(10)]


def test_a_second_run_is_served_from_the_cache_without_a_single_request(fake_openai, openai_teacher, tmp_path):
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        first = run_through_cache(openai_teacher(), cache, REQUESTS)
    assert fake_openai.count == 10

    second_teacher = openai_teacher()
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        second = run_through_cache(second_teacher, cache, REQUESTS)
        assert cache.stats() == {"hits": 10, "misses": 0, "puts": 0}
    assert fake_openai.count == 10
    assert [a.text for a in second] == [a.text for a in first]
    assert [a.cached for a in second] == [True] * 10
    assert (second_teacher.ledger()["requests"], second_teacher.cost_usd()) == (0, 0.0)


def test_the_same_prompt_to_another_model_or_endpoint_is_a_miss(fake_openai, openai_teacher, tmp_path):
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        run_through_cache(openai_teacher(model="a"), cache, REQUESTS[:2])
        run_through_cache(openai_teacher(model="b"), cache, REQUESTS[:2])
        run_through_cache(openai_teacher(model="a", api="completions"), cache,
                          REQUESTS[:2])
        run_through_cache(openai_teacher(model="a"), cache, REQUESTS[:2])
        assert len(cache) == 6
    assert fake_openai.count == 6


def test_the_api_key_is_never_written_to_the_cache_file(fake_openai, openai_teacher, tmp_path):
    key = "sk-never-store-me-0123456789"
    path = tmp_path / "cache.sqlite"
    cache = ResponseCache(path)
    run_through_cache(openai_teacher(api_key=key), cache, REQUESTS)
    assert fake_openai.requests[0].headers["authorization"] == f"Bearer {key}"
    cache.flush()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("cache.sqlite")]
    assert any(p.name.endswith("-wal") for p in files)       # checked before the WAL is folded in
    for p in files:
        assert key.encode() not in p.read_bytes()
        assert b"Bearer" not in p.read_bytes()
    cache.close()
    assert key.encode() not in path.read_bytes()


def test_failed_answers_are_not_cached(fake_openai, openai_teacher, tmp_path):
    fake_openai.script(*[server_error(503)] * 2)
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        [answer] = run_through_cache(openai_teacher(max_attempts=2), cache, REQUESTS[:1])
        assert answer.error == "http 503 after 2 attempts"
        assert len(cache) == 0
        [again] = run_through_cache(openai_teacher(), cache, REQUESTS[:1])
    assert again.error is None and fake_openai.count == 3


def test_a_cached_answer_keeps_text_finish_reason_usage_and_extra(tmp_path):
    request = Request(prompt="中文提示", stop=("\n",))
    answer = Response(text="回答", finish_reason="length", prompt_tokens=5, completion_tokens=2,
                      extra={"usage_estimated": True})
    cache_hit = Response(text="回答", finish_reason="length", prompt_tokens=5, completion_tokens=2,
                         cached=True, extra={"usage_estimated": True})
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        key = ResponseCache.key_for(request, "openai:m|chat")
        assert cache.get(key) is None
        cache.put(key, request, answer, "openai:m")
        assert cache.get(key) == cache_hit                  # pending, not yet written
        cache.flush()
        [stored] = cache._db.execute("SELECT request FROM responses").fetchone()
        assert json.loads(stored) == request.to_dict()
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert cache.get(key) == cache_hit


def test_puts_are_written_in_batches_and_on_close(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path, batch=3)
    for i in range(4):
        request = Request(prompt=str(i))
        cache.put(ResponseCache.key_for(request, "t"), request, Response(text=str(i)), "t")
    with ResponseCache(path) as other:                      # another reader sees written batches
        assert len(other) == 3
    cache.close()
    with ResponseCache(path) as other:
        assert len(other) == 4


def _write_many(path: str, writer: int, n: int) -> None:
    with ResponseCache(path, batch=1 + 15 * (writer % 2)) as cache:    # a commit per put, or 16
        for i in range(n):
            request = Request(prompt=f"writer {writer} item {i}")
            cache.put(ResponseCache.key_for(request, "t"), request, Response(text=str(i)), "t")


def test_several_processes_can_write_to_one_cache_at_once(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_write_many, args=(path, w, 150)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    with ResponseCache(path) as cache:
        assert len(cache) == 600


def test_request_keys_are_stable_across_versions():
    """Caches and journals written by earlier versions must still hit: the key of a fixed request
    is pinned, stage does not enter it, and asking twice gives the same key."""
    from selfinstruct.teachers.base import Request
    r = Request("Task 1: 写一首诗\n", max_tokens=64, temperature=0.7, top_p=0.95, stop=("Task 3",), seed=7,
                stage="instructions")
    assert r.key() == "656bbb12364e473530b9abbb12e3818e" == r.key()
    assert Request(r.prompt, 64, 0.7, 0.95, ("Task 3",), 7, stage="instances").key() == r.key()
    assert Request(r.prompt, 64, 0.7, 0.95, ("Task 3",), 8).key() != r.key()
