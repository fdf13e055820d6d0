"""Reading conversations: ShareGPT (JSON list or lines; from/value, also role/content), OpenAI
messages JSONL, and records.jsonl rows holding ``messages``; bad turns are bad records with their
file:line; every format written by ``selfinstruct.publish`` reads back as the same conversation, in
English and Chinese; files of the single-turn formats are read as before."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfinstruct import publish as pub
from selfinstruct.errors import InputError
from selfinstruct.readers import read_records
from selfinstruct.record import Record

EN = [{"role": "system", "content": "You are a patient maths tutor."},
      {"role": "user", "content": "What is a prime number?"},
      {"role": "assistant", "content": "A whole number above 1 whose only divisors are 1 and itself."},
      {"role": "user", "content": "Is 21 prime?"},
      {"role": "assistant", "content": "No: 21 = 3 x 7."},
      {"role": "user", "content": "And 23?"},
      {"role": "assistant", "content": "Yes, 23 is prime."}]
ZH = [{"role": "user", "content": "请推荐一本适合初学者的历史书。"},
      {"role": "assistant", "content": "可以从《万历十五年》读起，篇幅不长，文笔生动。"},
      {"role": "user", "content": "作者是谁？"},
      {"role": "assistant", "content": "作者是黄仁宇。"}]


def write_lines(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def write_list(path: Path, rows) -> str:
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    return str(path)


def sharegpt(messages):
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    return {"conversations": [{"from": names[m["role"]], "value": m["content"]} for m in messages]}


# -- ShareGPT -------------------------------------------------------------------------------------


@pytest.mark.parametrize("write", [write_list, write_lines], ids=["json-list", "json-lines"])
def test_sharegpt_reads_into_a_conversation_record(tmp_path, write):
    path = write(tmp_path / "chats.json", [sharegpt(EN), sharegpt(ZH)])
    en, zh = read_records(path)
    assert en.messages == EN and zh.messages == ZH
    # the first exchange is what the single-turn rules read
    assert (en.instruction, en.input, en.output) == ("What is a prime number?", "",
                                                     "A whole number above 1 whose only divisors are 1 and itself.")
    assert (zh.instruction, zh.output, zh.lang) == (ZH[0]["content"], ZH[1]["content"], "zh")
    assert en.turns == 3 and zh.turns == 2
    assert en.source.startswith(f"{path}:") and en.origin == en.source


def test_sharegpt_speakers_may_be_user_and_assistant_and_turns_may_use_role_and_content(tmp_path):
    rows = [{"conversations": [{"from": "user", "value": "Hi"}, {"from": "assistant", "value": "Hello!"}]},
            {"conversations": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"}]}]
    a, b = read_records(write_lines(tmp_path / "mixed.jsonl", rows))
    assert a.messages == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    assert b.messages == [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"}]


def test_llama_factorys_system_column_becomes_the_first_turn(tmp_path):
    row = {**sharegpt(ZH), "system": "你是一位历史老师。"}
    [record] = read_records(write_lines(tmp_path / "lf.jsonl", [row]))
    assert record.messages == [{"role": "system", "content": "你是一位历史老师。"}, *ZH]


def test_an_id_next_to_the_conversation_is_kept(tmp_path):
    [record] = read_records(write_lines(tmp_path / "ids.jsonl", [{"id": 7, **sharegpt(EN)}]))
    assert record.id == "7"


@pytest.mark.parametrize("turns, message", [
    ([{"from": "human", "value": "Hi"}, {"from": "bot", "value": "Hello"}],
     "conversations[1]: unknown from 'bot' (known: system, human, user, gpt, assistant)"),
    ([{"from": "human", "value": "Hi"}], "field 'conversations' has no assistant turn"),
    ([{"from": "gpt", "value": "Hello"}], "field 'conversations' has no user turn"),
    ([{"from": "human", "value": "Hi"}, {"from": "gpt", "value": 42}],
     "conversations[1]: 'value' is int, expected a string"),
    ([{"from": "human", "value": "Hi"}, "Hello"], "conversations[1] is str, expected an object"),
    ([{"value": "Hi"}, {"from": "gpt", "value": "Hello"}], "conversations[0] has no 'from'"),
    ("Hi -> Hello", "field 'conversations' is str, expected a list of turns"),
])
def test_a_bad_turn_is_an_input_error_naming_file_line_and_turn(tmp_path, turns, message):
    good = sharegpt(EN)
    path = write_lines(tmp_path / "bad.jsonl", [good, {"conversations": turns}])
    with pytest.raises(InputError) as e:
        list(read_records(path))
    assert str(e.value) == f"{path}:2: {message}"


def test_skip_mode_sets_a_bad_conversation_aside_and_reads_on(tmp_path):
    rows = [sharegpt(EN), {"conversations": [{"from": "human", "value": "只有问题"}]}, sharegpt(ZH)]
    path = write_lines(tmp_path / "some-bad.jsonl", rows)
    bad: list = []
    records = list(read_records(path, on_bad_record="skip", bad=bad))
    assert [r.messages for r in records] == [EN, ZH]
    [(record, origin, message)] = bad
    assert origin == f"{path}:2" and message == "field 'conversations' has no assistant turn"
    assert record.meta["raw"] == rows[1]


# -- OpenAI messages -----------------------------------------------------------------------------


def test_openai_messages_lines_read_into_conversations(tmp_path):
    path = write_lines(tmp_path / "chat.jsonl", [{"messages": EN}, {"messages": ZH}])
    en, zh = read_records(path)
    assert en.messages == EN and zh.messages == ZH
    assert en.source == f"{path}:1" and zh.source == f"{path}:2"


@pytest.mark.parametrize("turns, message", [
    ([{"role": "user", "content": "Hi"}, {"role": "tool", "content": "{}"}],
     "messages[1]: unknown role 'tool' (known: system, user, assistant)"),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None}],
     "messages[1]: 'content' is null, expected a string"),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
     "field 'messages' has no assistant turn"),
    ({"role": "user", "content": "Hi"}, "field 'messages' is dict, expected a list of turns"),
])
def test_a_bad_message_is_an_input_error_naming_file_and_line(tmp_path, turns, message):
    path = write_lines(tmp_path / "bad.jsonl", [{"messages": ZH}, {"messages": ZH}, {"messages": turns}])
    with pytest.raises(InputError) as e:
        list(read_records(path))
    assert str(e.value) == f"{path}:3: {message}"


# -- the single-turn formats are left alone ------------------------------------------------------


def test_alpaca_rows_stay_alpaca_even_with_a_conversations_or_messages_key(tmp_path):
    """Human-written Alpaca files sometimes carry extra keys; an instruction column keeps them Alpaca."""
    rows = [{"instruction": "Name a colour.", "input": "", "output": "Blue.", "conversations": "see notes"},
            {"instruction": "说出一种水果。", "input": "", "output": "苹果。", "messages": 3}]
    first, second = read_records(write_list(tmp_path / "alpaca.json", rows))
    assert first.messages is None and second.messages is None
    assert (first.instruction, first.output, second.instruction, second.output) == \
        ("Name a colour.", "Blue.", "说出一种水果。", "苹果。")


# -- records.jsonl rows with messages --------------------------------------------------------------


def machine_record(messages, lang) -> Record:
    return Record.from_messages(messages, id=f"{lang}-000001", lang=lang, origin="machine",
                                teacher="openai:gpt-4o-mini", request_id="r1", meta={"turns_asked": 3})


def test_records_jsonl_rows_with_messages_read_back_exactly(tmp_path):
    records = [machine_record(EN, "en"), machine_record(ZH, "zh"), Record("Name a colour.", "", "Blue.",
                                                                          origin="machine", teacher="t")]
    path = write_lines(tmp_path / "records.jsonl", [r.to_dict() for r in records])
    back = list(read_records(path))
    for before, after in zip(records, back):
        expected = before.to_dict()
        expected["source"] = after.source          # filled by this first read, as for every record
        assert after.to_dict() == expected
    assert "messages" not in back[2].to_dict()        # single-turn rows stay as they were


def test_a_records_jsonl_row_with_a_bad_turn_is_a_bad_record(tmp_path):
    row = machine_record(EN, "en").to_dict()
    row["messages"][2]["role"] = "model"
    path = write_lines(tmp_path / "records.jsonl", [row])
    with pytest.raises(InputError) as e:
        list(read_records(path))
    assert str(e.value) == f"{path}:1: messages[2]: unknown role 'model' (known: system, user, assistant)"


# -- round trips through every format ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["sharegpt", "messages"])
def test_generated_conversations_round_trip_through_each_chat_format(tmp_path, fmt):
    records = [machine_record(EN, "en"), machine_record(ZH, "zh"),
               Record("把这句话翻译成英文。", "今天天气很好。", "The weather is nice today.",
                      lang="zh")]
    counts = pub.write_data(tmp_path, records, pub.Publish(format=fmt))
    assert counts == {"train": 3}
    back = list(read_records(str(tmp_path / pub.DATA_FILE[fmt])))
    assert [r.conversation() for r in back] == [r.conversation() for r in records]
    assert back[2].messages == [{"role": "user", "content": "把这句话翻译成英文。\n\n今天天气很好。"},
                                {"role": "assistant", "content": "The weather is nice today."}]


def test_single_turn_records_round_trip_through_alpaca(tmp_path):
    records = [Record("Give three tips for staying healthy.", "", "Eat well, sleep, move."),
               Record("把这句话翻译成英文。", "今天天气很好。", "The weather is nice today.")]
    pub.write_data(tmp_path, records, pub.Publish())
    back = list(read_records(str(tmp_path / "data.json")))
    assert [r.to_alpaca() for r in back] == [r.to_alpaca() for r in records]
    assert [r.conversation() for r in back] == [r.conversation() for r in records]


@pytest.mark.parametrize("fmt", ["sharegpt", "messages"])
def test_an_hf_out_folder_of_conversations_reads_back(tmp_path, fmt):
    """A save_to_disk dataset of either chat format is an input like any other (columns of turns)."""
    records = [machine_record(EN, "en"), machine_record(ZH, "zh")]
    publish = pub.Publish(format=fmt, hf_out=str(tmp_path / "hf"))
    pub.write_data(tmp_path, records, publish)
    pub.publish_hf(tmp_path, publish, {"outputs": {"splits": {"train": 2}}})
    assert [r.messages for r in read_records(str(tmp_path / "hf"))] == [EN, ZH]
