"""The chain's asynchronous tail (the judge's mechanism): survivors of the synchronous head are
judged at once, yet settled, counted and written in input order, and a record awaiting judgement
counts for novelty like a kept one."""
from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from selfinstruct.filters.base import Filter, FilterChain, Rejection
from selfinstruct.filters.exact import ExactDedup
from selfinstruct.record import Record
from selfinstruct.teachers.base import BudgetExhausted


class SlowJudge(Filter):
    """Rejects instructions containing 'bad' after a random delay; counts what it saw at once."""
    name = "slow_judge"
    stage = "judge"

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)
        self.in_flight = self.most_in_flight = 0
        self.seen: list[str] = []

    async def check(self, record: Record) -> Rejection | None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(self.rng.uniform(0, 0.01))
        self.in_flight -= 1
        self.seen.append(record.instruction)
        return self.reject("judge_low_score", "bad") if "bad" in record.instruction else None


def records(texts):
    return [Record(t, output="o", origin=f"f:{i}") for i, t in enumerate(texts)]


def test_the_tail_judges_a_batch_at_once_and_settles_in_input_order():
    texts = [f"task {i} {'bad' if i % 3 == 0 else 'good'}" for i in range(60)]
    judge = SlowJudge()
    written = []
    chain = FilterChain([judge], on_reject=lambda r, v: written.append(r.instruction))
    kept = [r.instruction for r in chain.run(records(texts), batch_size=25)]
    assert kept == [t for t in texts if "bad" not in t]
    assert written == [t for t in texts if "bad" in t]          # input order, not arrival order
    assert judge.most_in_flight == 25                            # the whole batch at once
    assert chain.tally.rejected == {"judge_low_score": 20}
    assert chain.tally.per_stage() == {"judge": {"judge_low_score": 20}}
    assert chain.tally.seconds["judge"] > 0


def test_a_record_awaiting_judgement_counts_for_duplicates_even_if_the_judge_rejects_it():
    chain = FilterChain([ExactDedup(), SlowJudge()])
    texts = ["same bad task", "same bad task", "other task"]
    kept = [r.instruction for r in chain.run(records(texts))]
    assert kept == ["other task"]
    assert chain.tally.rejected == {"judge_low_score": 1, "exact_duplicate": 1}
    assert chain.tally.per_stage() == {"exact": {"exact_duplicate": 1}, "judge": {"judge_low_score": 1}}


def test_acheck_one_by_one_decides_like_the_batch():
    texts = [f"t{i % 7} {'bad' if i % 4 == 0 else 'ok'}" for i in range(40)]
    batch_chain = FilterChain([ExactDedup(), SlowJudge(1)])
    batched = [r.instruction for r in batch_chain.run(records(texts), batch_size=8)]
    single_chain = FilterChain([ExactDedup(), SlowJudge(2)])

    async def one_by_one():
        return [r.instruction for r in records(texts) if await single_chain.acheck(r) is None]
    assert asyncio.run(one_by_one()) == batched
    assert single_chain.tally.rejected == batch_chain.tally.rejected


def test_a_synchronous_chain_refuses_nothing_and_an_async_one_needs_acheck():
    chain = FilterChain([SlowJudge()])
    with pytest.raises(TypeError, match="use acheck"):
        chain.check(Record("x"))


def test_asynchronous_filters_run_after_every_synchronous_one():
    judge = SlowJudge()
    chain = FilterChain([judge, ExactDedup()])
    assert chain.names == ["exact", "slow_judge"]
    kept = [r.instruction for r in chain.run(records(["a bad one", "a bad one", "fine"]))]
    assert kept == ["fine"] and sorted(judge.seen) == ["a bad one", "fine"]     # the duplicate never judged


class FailingJudge(Filter):
    """Raises on 'boom' at once; every other record waits long and then passes."""
    name = "failing_judge"
    stage = "judge"

    def __init__(self):
        self.finished: list[str] = []

    async def check(self, record: Record) -> Rejection | None:
        if record.instruction == "boom":
            raise RuntimeError("the judge gave up")
        await asyncio.sleep(0.2)
        self.finished.append(record.instruction)
        return None


def test_a_failing_judgement_cancels_the_others_and_propagates():
    """On the long-lived loop `filter` judges on (asyncio.run would cancel leftovers anyway)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        judge = FailingJudge()
        chain = FilterChain([judge])
        with pytest.raises(RuntimeError, match="the judge gave up"):
            list(chain.run(records(["slow one", "boom", "slow two"]),
                           run_async=lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result()))
        time.sleep(0.5)                     # long enough for the slow ones to have finished
        assert judge.finished == []
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


class BudgetJudge(Filter):
    """'over' hits the budget at once; the others are answers already paid for, arriving later."""
    name = "budget_judge"
    stage = "judge"

    def __init__(self):
        self.finished: list[str] = []

    async def check(self, record: Record) -> Rejection | None:
        if record.instruction == "over":
            raise BudgetExhausted("spent")
        await asyncio.sleep(0.1)
        self.finished.append(record.instruction)
        return None


def test_a_spent_budget_waits_for_the_judgements_already_paid_for():
    judge = BudgetJudge()
    with pytest.raises(BudgetExhausted):
        list(FilterChain([judge]).run(records(["paid one", "over", "paid two"])))
    assert sorted(judge.finished) == ["paid one", "paid two"]
