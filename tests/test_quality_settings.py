"""Who judges: the run's teacher, or one of the judge's own, from the quality flags."""
from __future__ import annotations

import pytest

from selfinstruct.errors import UsageError
from selfinstruct.quality import QualitySettings, judge_teacher
from selfinstruct.teachers.openai import OpenAITeacher


def test_the_generating_teacher_judges_unless_another_is_named():
    run = OpenAITeacher(model="gen", base_url="http://127.0.0.1:1/v1")
    assert judge_teacher(QualitySettings(judge=True), run, "openai") is run
    assert judge_teacher(QualitySettings(judge_teacher="openai"), run, "openai") is run
    other = judge_teacher(QualitySettings(judge_model="big", judge_concurrency=3), run, "openai")
    assert other is not run and (other.model, other.concurrency) == ("big", 3)


def test_filter_judges_with_the_environments_endpoint(monkeypatch):
    monkeypatch.setenv("OPENAI_MODEL", "env-model")
    t = judge_teacher(QualitySettings(judge=True))
    assert isinstance(t, OpenAITeacher) and t.model == "env-model"


def test_judge_flags_that_cannot_apply_are_errors():
    run = OpenAITeacher(model="gen", base_url="http://127.0.0.1:1/v1")
    with pytest.raises(UsageError, match="--judge-concurrency applies to a judge of its own"):
        judge_teacher(QualitySettings(judge=True, judge_concurrency=4), run, "openai")
    with pytest.raises(UsageError, match="^--judge-min-score must be between 0 and 10 \\(got 11\\)$"):
        QualitySettings(judge_min_score=11).validate()


def test_what_turns_the_judge_and_decontamination_on():
    assert QualitySettings().default_off() == ("judge", "decontam")
    assert QualitySettings(judge_min_score=0).default_off() == ("decontam",)
    assert QualitySettings(judge_base_url="http://x/v1", decontam_against=["e.jsonl"]).default_off() == ()
