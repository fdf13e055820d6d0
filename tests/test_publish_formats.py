"""--format, --test-size, --hf-out and the dataset card, for ``filter`` and ``generate``: each format
loaded the way trainers load it (``datasets.load_dataset("json")``, ``load_from_disk``, the
tokenizer's ``apply_chat_template``), the split drawn with the seed, exact messages and exit codes
for what cannot be written, English and Chinese."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from selfinstruct import publish as pub
from selfinstruct.errors import UsageError
from selfinstruct.generate import Settings, run_generate
from selfinstruct.record import Record
from tests.sim_teacher import ScriptedTeacher

EN_CHAT = [{"role": "system", "content": "You are a concise travel guide."},
           {"role": "user", "content": "Suggest a day trip from Lyon."},
           {"role": "assistant", "content": "Pérouges, a medieval village 40 minutes away."},
           {"role": "user", "content": "What should I eat there?"},
           {"role": "assistant", "content": "The galette de Pérouges, a sugared flatbread."},
           {"role": "user", "content": "Is it open in winter?"},
           {"role": "assistant", "content": "Yes, though some shops close on weekdays."}]
ZH_CHAT = [{"role": "user", "content": "推荐一种适合冬天喝的茶。"},
           {"role": "assistant", "content": "红茶性温，适合冬天饮用。"},
           {"role": "user", "content": "怎么泡比较好？"},
           {"role": "assistant", "content": "用九十度左右的水，闷泡三分钟。"},
           {"role": "user", "content": "可以加牛奶吗？"},
           {"role": "assistant", "content": "可以，做成奶茶也很好喝。"}]
SINGLE = [
    {"instruction": "Give three tips for staying warm in winter.", "input": "",
     "output": "Wear layers, drink warm tea and keep moving."},
    {"instruction": "Translate the sentence into French.", "input": "The river is cold.",
     "output": "La rivière est froide."},
    {"instruction": "Name the largest ocean on Earth.", "input": "", "output": "The Pacific Ocean."},
    {"instruction": "把这句话翻译成英文。", "input": "今天下雪了。", "output": "It snowed today."},
    {"instruction": "写一句关于秋天的诗。", "input": "", "output": "秋风送爽，落叶满山。"},
    {"instruction": "Explain why the sky looks blue during the day.", "input": "",
     "output": "Air scatters blue light more than red light."},
    {"instruction": "List two uses of a paper clip.", "input": "", "output": "Holding pages; resetting devices."},
    {"instruction": "Describe the taste of a ripe mango.", "input": "", "output": "Sweet, floral and juicy."},
]


@pytest.fixture
def invoke(invoke_cli):
    return lambda *args: invoke_cli("filter", "--no-progress", "--no-report", *args)


def write_list(path: Path, rows) -> str:
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return str(path)


def write_lines(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def load_json(path: Path, tmp_path: Path):
    import datasets

    return datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf-cache"))


# -- rows --------------------------------------------------------------------------------------------


def test_each_format_writes_the_conversation_its_trainers_read():
    chat = Record.from_messages(ZH_CHAT)
    assert pub.row(chat, "messages") == {"messages": ZH_CHAT}
    assert pub.row(chat, "sharegpt") == {"conversations": [
        {"from": {"user": "human", "assistant": "gpt"}[m["role"]], "value": m["content"]} for m in ZH_CHAT]}
    single = Record("Translate the sentence into French.", "The river is cold.", "La rivière est froide.")
    assert pub.row(single, "alpaca") == {"instruction": "Translate the sentence into French.",
                                         "input": "The river is cold.", "output": "La rivière est froide."}
    assert pub.row(single, "messages")["messages"] == [
        {"role": "user", "content": "Translate the sentence into French.\n\nThe river is cold."},
        {"role": "assistant", "content": "La rivière est froide."}]
    assert pub.row(Record.from_messages(EN_CHAT), "sharegpt")["conversations"][0] == \
        {"from": "system", "value": "You are a concise travel guide."}


def test_a_conversation_cannot_be_alpaca_and_the_error_names_the_formats_that_can_hold_it():
    chat = Record.from_messages(EN_CHAT, source="chats.jsonl:4")
    with pytest.raises(UsageError) as e:
        pub.row(chat, "alpaca")
    assert str(e.value) == ("chats.jsonl:4: a conversation of 3 assistant turns cannot be written in the "
                            "alpaca format: add --format messages or --format sharegpt")
    # one exchange (a system prompt included) is still single-turn data
    one = Record.from_messages([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])
    assert pub.row(one, "alpaca") == {"instruction": "Hi", "input": "", "output": "Hello"}


# -- filter --format -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, data_file, column", [("alpaca", "data.json", "instruction"),
                                                    ("sharegpt", "data.json", "conversations"),
                                                    ("messages", "data.jsonl", "messages")])
def test_filter_writes_each_format_and_datasets_loads_it(tmp_path, invoke, fmt, data_file, column):
    out = tmp_path / "out"
    result = invoke(write_list(tmp_path / "in.json", SINGLE), "--out", out, "--format", fmt, "--only", "exact")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outputs"]["data"] == data_file and summary["outputs"]["format"] == fmt
    assert summary["outputs"]["splits"] == {"train": 8} and summary["kept"] == 8
    loaded = load_json(out / data_file, tmp_path)
    assert loaded.num_rows == 8 and loaded.column_names == (["instruction", "input", "output"]
                                                            if fmt == "alpaca" else [column])
    back = [Record(**r).conversation() if fmt == "alpaca" else
            [{"role": {"human": "user", "gpt": "assistant"}.get(t.get("from"), t.get("role")),
              "content": t.get("value", t.get("content"))} for t in r[column]] for r in loaded]
    assert back == [Record(**r).conversation() for r in SINGLE]
    assert (out / "records.jsonl").exists() and len(lines(out / "records.jsonl")) == 8
    other = {"data.json", "data.jsonl"} - {data_file}
    assert not any((out / name).exists() for name in other)


def test_filter_writes_conversations_as_messages_and_sharegpt_in_both_languages(tmp_path, invoke):
    rows = [{"messages": EN_CHAT}, {"messages": ZH_CHAT}]
    src = write_lines(tmp_path / "chats.jsonl", rows)
    for fmt in ("messages", "sharegpt"):
        out = tmp_path / fmt
        assert invoke(src, "--out", out, "--format", fmt, "--only", "exact").exit_code == 0
        loaded = load_json(out / pub.DATA_FILE[fmt], tmp_path)
        key = "messages" if fmt == "messages" else "conversations"
        turns = [[(t.get("role") or t["from"], t.get("content") or t["value"]) for t in r[key]] for r in loaded]
        names = {"system": "system", "user": "user", "assistant": "assistant"} if fmt == "messages" \
            else {"system": "system", "user": "human", "assistant": "gpt"}
        assert turns == [[(names[m["role"]], m["content"]) for m in chat] for chat in (EN_CHAT, ZH_CHAT)]
    summary = json.loads((tmp_path / "messages" / "summary.json").read_text())
    assert summary["outputs"]["languages"] == {"en": 1, "zh": 1}


def test_a_conversation_read_while_the_format_is_alpaca_stops_filter_naming_its_line(tmp_path, invoke,
                                                                                       error_line):
    src = write_lines(tmp_path / "chats.jsonl", [{"messages": EN_CHAT[1:3]}, {"messages": ZH_CHAT}])
    out = tmp_path / "out"
    assert error_line(invoke(src, "--out", out)) == (
        f"Error: {src}:2: a conversation of 3 assistant turns cannot be written in the alpaca format: "
        "add --format messages or --format sharegpt")
    assert not out.exists()                    # nothing half-written, no empty folder left


def test_a_refused_run_leaves_the_earlier_outputs_as_they_were(tmp_path, invoke):
    out = tmp_path / "out"
    assert invoke(write_list(tmp_path / "in.json", SINGLE), "--out", out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    src = write_lines(tmp_path / "chats.jsonl", [{"messages": ZH_CHAT}])
    assert invoke(src, "--out", out).exit_code == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# -- --test-size ----------------------------------------------------------------------------------------


def split_of(out: Path, fmt: str = "messages"):
    data = lines(out / "data.jsonl") if fmt == "messages" else json.loads((out / "data.json").read_text())
    test = lines(out / "test.jsonl") if fmt == "messages" else json.loads((out / "test.json").read_text())
    return data, test


def test_test_size_splits_with_the_seed_deterministically(tmp_path, invoke):
    src = write_list(tmp_path / "in.json", SINGLE)
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = tmp_path / name
        assert invoke(src, "--out", out, "--format", "messages", "--test-size", "0.25", "--seed", seed,
                      "--only", "exact").exit_code == 0
        runs[name] = split_of(out)
    data, test = runs["a"]
    assert len(test) == 2 and len(data) == 6                      # ceil(8 x 0.25)
    assert runs["a"] == runs["b"]                                 # same seed, same split
    assert runs["a"][1] != runs["c"][1]                           # another seed, another draw
    every = [r["messages"][0]["content"] for r in data + test]
    assert sorted(every) == sorted(Record(**r).conversation()[0]["content"] for r in SINGLE)
    # each part keeps the kept order
    order = [Record(**r).conversation()[0]["content"] for r in SINGLE]
    assert [r["messages"][0]["content"] for r in data] == [t for t in order if t in
                                                          {r["messages"][0]["content"] for r in data}]
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["outputs"]["splits"] == {"train": 6, "test": 2}
    assert summary["outputs"]["test"] == "test.jsonl" and summary["kept"] == 8


def test_test_size_as_a_count_and_the_file_beside_the_data(tmp_path, invoke):
    out = tmp_path / "out"
    assert invoke(write_list(tmp_path / "in.json", SINGLE), "--out", out, "--test-size", "3",
                  "--only", "exact").exit_code == 0
    data, test = split_of(out, "alpaca")
    assert (len(data), len(test)) == (5, 3)
    # a rerun without --test-size leaves no test file of the earlier run behind
    assert invoke(write_list(tmp_path / "in.json", SINGLE), "--out", out, "--only", "exact").exit_code == 0
    assert not (out / "test.json").exists() and len(json.loads((out / "data.json").read_text())) == 8


@pytest.mark.parametrize("size, message", [
    ("8", "Error: --test-size 8 takes 8 of 8 records, leaving none to train on: give a smaller share or count"),
    ("0.99", "Error: --test-size 0.99 takes 8 of 8 records, leaving none to train on: give a smaller share "
             "or count"),
    ("2.5", "Error: --test-size must be a share between 0 and 1 or a whole number of records (got 2.5)"),
    ("0", "Error: --test-size must be a share between 0 and 1 or a whole number of records (got 0)"),
])
def test_a_test_size_that_leaves_nothing_to_train_on_is_refused(tmp_path, invoke, error_line, size, message):
    out = tmp_path / "out"
    assert error_line(invoke(write_list(tmp_path / "in.json", SINGLE), "--out", out, "--test-size", size,
                             "--only", "exact")) == message
    assert not out.exists()


def test_write_data_draws_the_same_split_as_test_rows():
    assert pub.test_rows(10, 0.3, seed=5) == pub.test_rows(10, 0.3, seed=5)
    assert len(pub.test_rows(10, 0.3, seed=5)) == 3 and len(pub.test_rows(10, 4, seed=5)) == 4
    assert pub.test_count(1000, 0.05) == 50 and pub.test_count(7, 0.01) == 1


# -- --hf-out ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, columns", [("alpaca", ["instruction", "input", "output"]),
                                          ("sharegpt", ["conversations"]), ("messages", ["messages"])])
def test_hf_out_saves_a_dataset_dict_load_from_disk_reads(tmp_path, invoke, fmt, columns):
    import datasets

    out, hf = tmp_path / "out", tmp_path / "hf"
    assert invoke(write_list(tmp_path / "in.json", SINGLE), "--out", out, "--format", fmt, "--hf-out", hf,
                  "--test-size", "2", "--seed", "3", "--only", "exact").exit_code == 0
    saved = datasets.load_from_disk(str(hf))
    assert set(saved) == {"train", "test"}
    assert saved["train"].num_rows == 6 and saved["test"].num_rows == 2
    assert saved["train"].column_names == columns
    data_file, test_file = out / pub.DATA_FILE[fmt], out / pub.TEST_FILE[fmt]
    assert saved["train"].to_list() == list(pub.read_rows(data_file))
    assert saved["test"].to_list() == list(pub.read_rows(test_file))
    card = (hf / "README.md").read_text()
    assert front_matter(card)["size_categories"] == ["n<1K"] and "| test | 2 |" in card


def test_hf_out_is_replaced_whole_by_a_rerun(tmp_path, invoke):
    import datasets

    hf = tmp_path / "hf"
    src = write_list(tmp_path / "in.json", SINGLE)
    assert invoke(src, "--out", tmp_path / "o1", "--hf-out", hf, "--only", "exact").exit_code == 0
    assert invoke(src, "--out", tmp_path / "o2", "--hf-out", hf, "--format", "messages",
                  "--only", "exact").exit_code == 0
    saved = datasets.load_from_disk(str(hf))
    assert list(saved) == ["train"] and saved["train"].column_names == ["messages"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".hf")) == []


def test_hf_out_must_be_a_folder_of_its_own(tmp_path, invoke, error_line):
    src = write_list(tmp_path / "in.json", SINGLE)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    (tmp_path / "file.txt").write_text("a file")
    out = tmp_path / "out"
    assert error_line(invoke(src, "--out", out, "--hf-out", tmp_path / "notes")) == \
        f"Error: --hf-out {tmp_path / 'notes'} holds other files: give an empty folder or one an earlier --hf-out wrote"
    assert error_line(invoke(src, "--out", out, "--hf-out", tmp_path / "file.txt")) == \
        f"Error: --hf-out {tmp_path / 'file.txt'} is a file; give a folder"
    assert error_line(invoke(src, "--out", out, "--hf-out", out)) == \
        f"Error: --hf-out {out} is the --out folder: give the dataset a folder of its own"
    assert not out.exists() and (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


# -- the dataset card -----------------------------------------------------------------------------------


def test_the_card_says_what_summary_json_says(tmp_path, invoke):
    rows = SINGLE + [dict(SINGLE[0]), {"instruction": "Hi.", "input": "", "output": "Hello."}]
    out = tmp_path / "out"
    assert invoke(write_list(tmp_path / "in.json", rows), "--out", out, "--format", "sharegpt",
                  "--test-size", "0.2").exit_code == 0
    summary = json.loads((out / "summary.json").read_text())
    card = (out / "README.md").read_text()
    meta = front_matter(card)
    assert meta["language"] == ["en", "zh"]
    assert meta["task_categories"] == ["text-generation"] and meta["size_categories"] == ["n<1K"]
    assert meta["configs"] == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "data.json"}, {"split": "test", "path": "test.json"}]}]
    splits = summary["outputs"]["splits"]
    assert f"| train | {splits['train']} |" in card and f"| test | {splits['test']} |" in card
    assert summary["rejected_total"] == 2 and f"{summary['rejected_total']} rejected" in card
    for stage, reasons in summary["rejected_per_stage"].items():
        for reason, count in reasons.items():
            assert f"| {stage} | {reason} | {count} |" in card
    assert "Format: **sharegpt**" in card and "reminder, not legal advice" in card


def test_load_dataset_reads_an_output_folder_through_its_card(tmp_path, invoke):
    """The card's configs point datasets at the data and test files, not at records.jsonl."""
    import datasets

    out = tmp_path / "out"
    assert invoke(write_list(tmp_path / "in.json", SINGLE), "--out", out, "--format", "messages",
                  "--test-size", "2", "--only", "exact").exit_code == 0
    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert {name: split.num_rows for name, split in loaded.items()} == {"train": 6, "test": 2}
    assert loaded["train"].column_names == ["messages"]


@pytest.mark.parametrize("teacher, provider", [
    ("embedded:SmolLM2-135M-Instruct", "SmolLM2 (Hugging Face)"),
    ("openai:gpt-4o-mini", "OpenAI"),
    ("openai:o3-mini", "OpenAI"),
    ("openai:gpt-oss-20b", "OpenAI gpt-oss"),
    ("openai:meta-llama/Llama-3.1-8B-Instruct", "Meta Llama 3.x"),
    ("openai:Qwen/Qwen2.5-7B-Instruct", "Qwen (Alibaba)"),
    ("openai:google/gemma-2-9b-it", "Google Gemma"),
    ("openai:mistralai/Mistral-7B-Instruct-v0.3", "Mistral AI"),
    ("openai:fake-model", "?"),
    ("openai:gpt4all-falcon", "?"),          # not OpenAI's, despite the letters
])
def test_the_license_reminder_is_keyed_by_the_model_not_the_api(teacher, provider):
    assert pub.license_terms(teacher)[0] == provider


def test_a_generate_card_names_the_teacher_and_its_terms(tmp_path):
    s = Settings(num=6, out=str(tmp_path / "out"), progress=False, lang="zh",
                 publish=pub.Publish(format="messages", test_size=2, hf_out=str(tmp_path / "hf")))
    summary = run_generate(s, ScriptedTeacher(lang="zh"))
    out = tmp_path / "out"
    data, test = lines(out / "data.jsonl"), lines(out / "test.jsonl")
    assert (len(data), len(test)) == (4, 2) and summary["outputs"]["splits"] == {"train": 4, "test": 2}
    records = [Record.from_dict(r) for r in lines(out / "records.jsonl")]
    assert sorted(r["messages"][0]["content"] for r in data + test) == \
        sorted(r.conversation()[0]["content"] for r in records)
    card = (out / "README.md").read_text()
    assert front_matter(card)["language"] == ["zh"]
    name = summary["teacher"]["name"]
    provider, terms = pub.license_terms(name)
    assert f"`{name}`" in card and f"| {provider} | {terms} |" in card
    assert "Recipe: `alpaca`, language `zh`" in card and "Requested 6, kept 6" in card
    import datasets
    assert datasets.load_from_disk(str(tmp_path / "hf"))["test"].num_rows == 2


@pytest.mark.parametrize("fmt", ["sharegpt", "messages"])
def test_generate_writes_the_format_asked_and_names_it_in_summary(tmp_path, fmt):
    s = Settings(num=5, out=str(tmp_path / "out"), progress=False, publish=pub.Publish(format=fmt))
    summary = run_generate(s, ScriptedTeacher())
    assert summary["outputs"]["data"] == pub.DATA_FILE[fmt]
    rows = list(pub.read_rows(tmp_path / "out" / pub.DATA_FILE[fmt]))
    assert len(rows) == 5 and all(set(r) == {"conversations" if fmt == "sharegpt" else "messages"} for r in rows)


def test_publish_refuses_turns_above_one_with_alpaca_before_any_work():
    with pytest.raises(UsageError) as e:
        pub.Publish().validate(turns=3)
    assert str(e.value) == ("--turns 3 makes conversations, which the alpaca format cannot hold: add "
                            "--format messages or --format sharegpt")
    pub.Publish(format="messages").validate(turns=3)
    with pytest.raises(UsageError, match="takes 10 of 10 records"):
        pub.Publish(test_size=10).validate(num=10)


def test_generate_cli_refuses_turns_with_alpaca_and_creates_nothing(tmp_path, invoke_cli, error_line,
                                                                     monkeypatch):
    def started(*_):      # a run that gets this far was not refused up front
        raise RuntimeError("the run started")
    monkeypatch.setattr("selfinstruct.generate.run.open_journal", started)
    out = tmp_path / "out"
    args = ("generate", "--no-progress", "--no-report", "--teacher", "openai", "--base-url",
            "http://127.0.0.1:9/v1", "--num", "2", "--out", out)
    assert error_line(invoke_cli(*args, "--turns", "3")) == (
        "Error: --turns 3 makes conversations, which the alpaca format cannot hold: "
        "add --format messages or --format sharegpt")
    assert error_line(invoke_cli(*args, "--test-size", "2")) == (
        "Error: --test-size 2 takes 2 of 2 records, leaving none to train on: give a smaller share or count")
    assert not out.exists()


# -- the trainers' own reading ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.embedded
def test_the_smollm2_chat_template_renders_every_turn_of_each_format(tmp_path, invoke):
    """What TRL does with a conversational row: the tokenizer's chat template over the messages."""
    from selfinstruct.train_sft import modeling

    tokenizer = modeling.smollm2_tokenizer()
    src = write_lines(tmp_path / "chats.jsonl", [{"messages": EN_CHAT}, {"messages": ZH_CHAT}])
    for fmt in ("messages", "sharegpt"):
        out = tmp_path / fmt
        assert invoke(src, "--out", out, "--format", fmt, "--only", "exact").exit_code == 0
        for row, chat in zip(load_json(out / pub.DATA_FILE[fmt], tmp_path), (EN_CHAT, ZH_CHAT)):
            messages = row["messages"] if fmt == "messages" else [
                {"role": {"human": "user", "gpt": "assistant"}.get(t["from"], t["from"]), "content": t["value"]}
                for t in row["conversations"]]
            text = tokenizer.apply_chat_template(messages, tokenize=False)
            expected = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in chat)
            assert text.endswith(expected)
