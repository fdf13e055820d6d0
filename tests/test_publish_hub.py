"""--push-to-hub against a loopback stand-in for the Hub (tests/fake_hub_server.py): the command runs
in a subprocess whose environment points huggingface_hub at the server (HF_ENDPOINT; Xet off, so
the shards go by LFS), as a user's shell would. What the server received is checked: the repo's
visibility, the parquet shards' rows, the dataset card as README.md. A missing token or a Hub
failure is one ``Error:`` line, after the local outputs are written."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfinstruct import publish as pub
from selfinstruct.generate import Settings, run_generate
from tests.fake_hub_server import serve_in_thread
from tests.sim_teacher import ScriptedTeacher

BIN = Path(sys.executable).with_name("selfinstruct")
ROWS = [
    {"messages": [{"role": "user", "content": "Name a bird that cannot fly."},
                  {"role": "assistant", "content": "The ostrich."},
                  {"role": "user", "content": "Why can't it fly?"},
                  {"role": "assistant", "content": "Its wings are too small for its heavy body."}]},
    {"messages": [{"role": "user", "content": "用一句话介绍长城。"},
                  {"role": "assistant", "content": "长城是中国古代修建的军事防御工程。"}]},
    {"messages": [{"role": "user", "content": "Suggest a name for a bakery."},
                  {"role": "assistant", "content": "The Rising Crust."}]},
    {"messages": [{"role": "user", "content": "推荐一个周末放松的方法。"},
                  {"role": "assistant", "content": "去公园散步，晒晒太阳。"}]},
    {"messages": [{"role": "user", "content": "Give one tip for learning to juggle."},
                  {"role": "assistant", "content": "Start with two balls and one hand."}]},
]


@pytest.fixture
def hub():
    with serve_in_thread() as server:
        yield server


def hub_env(hub, tmp_path: Path, token: str | None = "hf_test_token") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "HUGGING_FACE_HUB_TOKEN"}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
               HF_HOME=str(tmp_path / "hf-home"))         # no stored token from `hf auth login`
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def filter_push(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    src = tmp_path / "chats.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    return subprocess.run([str(BIN), "filter", str(src), "--out", str(tmp_path / "out"), "--no-progress",
                           "--no-report", "--only", "exact", "--format", "messages", *args],
                          env=env, capture_output=True, text=True, timeout=300)


def parquet_rows(content: bytes) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(content)).to_pylist()


def test_a_push_creates_a_private_repo_with_the_shards_and_the_card(tmp_path, hub):
    result = filter_push(tmp_path, hub_env(hub, tmp_path), "--test-size", "2", "--seed", "7",
                         "--push-to-hub", "tester/birds-and-bread")
    assert result.returncode == 0, result.stderr
    repo = hub.repos["tester/birds-and-bread"]
    assert repo["private"] is True and repo["type"] == "dataset"
    files = repo["files"]
    train = [p for p in files if p.startswith("data/train-") and p.endswith(".parquet")]
    test = [p for p in files if p.startswith("data/test-") and p.endswith(".parquet")]
    assert len(train) == 1 and len(test) == 1
    out = tmp_path / "out"
    assert parquet_rows(files[train[0]]) == list(pub.read_rows(out / "data.jsonl"))
    assert parquet_rows(files[test[0]]) == list(pub.read_rows(out / "test.jsonl"))
    assert len(parquet_rows(files[test[0]])) == 2
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert files["README.md"].decode("utf-8") == pub.card(summary, target="hub")
    card = files["README.md"].decode("utf-8")
    assert "  - split: train\n    path: data/train-*" in card and "# tester/birds-and-bread" in card
    # the shards went by LFS, the way the Hub takes parquet files
    assert ("POST", "/datasets/tester/birds-and-bread.git/info/lfs/objects/batch") in hub.requests
    assert summary["outputs"]["push_to_hub"] == "tester/birds-and-bread" and summary["outputs"]["private"]


def test_public_makes_a_public_repo(tmp_path, hub):
    result = filter_push(tmp_path, hub_env(hub, tmp_path), "--push-to-hub", "tester/open-chat", "--public")
    assert result.returncode == 0, result.stderr
    repo = hub.repos["tester/open-chat"]
    assert repo["private"] is False
    [shard] = [p for p in repo["files"] if p.endswith(".parquet")]
    assert [r["messages"] for r in parquet_rows(repo["files"][shard])] == [r["messages"] for r in ROWS]


def test_no_token_is_one_error_line_after_the_local_outputs_are_written(tmp_path, hub, error_line):
    result = filter_push(tmp_path, hub_env(hub, tmp_path, token=None), "--push-to-hub", "tester/x")
    assert error_line(result) == ("Error: --push-to-hub tester/x: no Hugging Face token: set HF_TOKEN or "
                                  "run `hf auth login` (the local outputs are written)")
    assert len(list(pub.read_rows(tmp_path / "out" / "data.jsonl"))) == len(ROWS)
    assert (tmp_path / "out" / "README.md").exists()
    assert not hub.repos


def test_a_hub_failure_is_one_error_line_after_the_local_outputs_are_written(tmp_path, hub, error_line):
    hub.fail_commits = True
    result = filter_push(tmp_path, hub_env(hub, tmp_path), "--push-to-hub", "tester/broken")
    line = error_line(result)
    assert line.startswith("Error: --push-to-hub tester/broken: the Hub refused the push (")
    assert line.endswith("); the local outputs are written") and "500" in line
    assert len(list(pub.read_rows(tmp_path / "out" / "data.jsonl"))) == len(ROWS)


def test_a_bad_dataset_name_is_refused_before_any_work(tmp_path, hub, error_line):
    result = filter_push(tmp_path, hub_env(hub, tmp_path), "--push-to-hub", "tester/two words")
    assert error_line(result) == "Error: --push-to-hub tester/two words is not a dataset name (NAME or USER/NAME)"
    assert not (tmp_path / "out").exists() and not hub.requests


def test_generate_pushes_once_at_the_end_with_the_hub_card(tmp_path, monkeypatch):
    """generate's side, up to the push call: the finished run's dataset and card, once."""
    pushed = []
    monkeypatch.setattr(pub, "push", lambda dataset, publish, card: pushed.append((dataset, publish, card))
                        or "http://hub/datasets/x")
    s = Settings(num=4, out=str(tmp_path / "out"), progress=False,
                 publish=pub.Publish(format="sharegpt", push_to_hub="tester/gen", test_size=1))
    summary = run_generate(s, ScriptedTeacher())
    [(dataset, publish, card)] = pushed
    assert publish.push_to_hub == "tester/gen" and publish.private is True
    assert {name: split.num_rows for name, split in dataset.items()} == {"train": 3, "test": 1}
    assert dataset["train"].to_list() == list(pub.read_rows(tmp_path / "out" / "data.json"))
    assert card == pub.card(summary, target="hub")
