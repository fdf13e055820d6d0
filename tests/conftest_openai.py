"""Pytest fixtures for the OpenAI-compatible teacher: a scriptable fake server on loopback.

Use as a plugin (``pytest_plugins = ["tests.conftest_openai"]``) or import the fixtures into a test
module (``from conftest_openai import fake_openai``).
"""
from __future__ import annotations

from typing import Iterator

import pytest

try:                                            # imported as tests.conftest_openai
    from .fake_openai_server import FakeOpenAI, serve_in_thread
except ImportError:                             # imported as a top-level module (tests/ on sys.path)
    from fake_openai_server import FakeOpenAI, serve_in_thread


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A fresh fake server per test: ``.url`` is its base URL (…/v1), ``.script(...)`` queues
    behaviours, ``.requests`` lists what it received, ``.max_in_flight`` its peak concurrency."""
    with serve_in_thread(FakeOpenAI()) as server:
        yield server
