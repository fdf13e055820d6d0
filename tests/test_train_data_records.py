"""train_sft's data loading on records.jsonl: the same examples as the run's Alpaca data.json (and,
for conversations, as the messages / ShareGPT file filter writes), and errors that name the line in
the training file and where the record was first read.

The tokenizer is a byte-level BPE trained here on a few sentences (English and Chinese), so these
tests need transformers (the ``train`` extra) but no model file and no download."""
from __future__ import annotations

import json

import pytest

from selfinstruct.curate import run_filter
from selfinstruct.errors import InputError
from selfinstruct.generate import Settings, run_generate
from selfinstruct.record import Record
from selfinstruct.train_sft import data
from tests.sim_teacher import ScriptedTeacher

pytestmark = pytest.mark.train

CORPUS = ["Below is an instruction that describes a task. Write a response that appropriately completes "
          "the request.", "### Instruction: ### Input: ### Response:", "Each has its own charm and purpose.",
          "请介绍山水花鸟的特点。它们各有特色，值得一看。"]


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<s>", "</s>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    # A BOS on the prompt, as LLaMA's tokenizer adds: the records and the Alpaca file must agree on it too.
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bpe.token_to_id("<s>"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    return tokenizer


def tokens(examples):
    return [(e.input_ids, e.labels, e.prompt_tokens, e.truncated) for e in examples]


@pytest.fixture(scope="module", params=[("en", "self-instruct"), ("zh", "alpaca")], ids=["en", "zh"])
def run(request, tmp_path_factory):
    """A generate run and a filter run of its records.jsonl."""
    lang, recipe = request.param
    folder = tmp_path_factory.mktemp(f"run_{lang}")
    run_generate(Settings(num=6, out=str(folder / "gen"), lang=lang, recipe=recipe, progress=False),
                 ScriptedTeacher(lang=lang))
    run_filter([str(folder / "gen" / "records.jsonl")], str(folder / "filtered"), progress=False)
    return folder


@pytest.mark.parametrize("template", ["alpaca", "chat"])
@pytest.mark.parametrize("step", ["gen", "filtered"])
def test_records_jsonl_gives_the_same_examples_as_the_alpaca_data_json(run, tokenizer, step, template):
    records_file, data_file = str(run / step / "records.jsonl"), str(run / step / "data.json")
    from_records, skipped = data.load_examples(records_file, tokenizer, template, 512)
    from_alpaca, _ = data.load_examples(data_file, tokenizer, template, 512)
    assert len(from_records) == len(json.load(open(data_file, encoding="utf-8"))) > 0 and skipped == []
    assert tokens(from_records) == tokens(from_alpaca)
    assert [e.origin for e in from_records] == [f"{records_file}:{i}" for i in range(1, len(from_records) + 1)]


def test_a_filtered_records_file_remembers_where_each_record_was_first_read(run, tokenizer):
    records_file = str(run / "filtered" / "records.jsonl")
    examples, _ = data.load_examples(records_file, tokenizer, "alpaca", 512)
    first_read = [json.loads(line)["source"] for line in open(records_file, encoding="utf-8")]
    assert [e.source for e in examples] == first_read
    assert all(s.startswith(str(run / "gen" / "records.jsonl") + ":") for s in first_read)
    # Read for the first time, the record's own line is its source: nothing to add.
    fresh, _ = data.load_examples(str(run / "gen" / "records.jsonl"), tokenizer, "alpaca", 512)
    assert {e.source for e in fresh} == {""}


def test_a_record_without_output_names_its_line_here_and_where_it_was_first_read(run, tokenizer, tmp_path):
    rows = [json.loads(line) for line in open(run / "filtered" / "records.jsonl", encoding="utf-8")]
    rows[1]["output"] = "  "
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(InputError) as info:
        data.load_examples(str(path), tokenizer, "alpaca", 512)
    assert str(info.value) == (f"{path}:2: record has no output to train on (expected Alpaca records: instruction, "
                               f"input, output) (first read at {rows[1]['source']})")


def test_a_prompt_that_fills_max_length_names_both_places(run, tokenizer, tmp_path):
    rows = [json.loads(line) for line in open(run / "filtered" / "records.jsonl", encoding="utf-8")]
    rows[0]["instruction"] += " Please answer" * 80
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    # Room for every other record's prompt and a few response tokens, not for the long one's prompt.
    limit = 4 + max(len(tokenizer(data.alpaca_prompt(Record(r["instruction"], r["input"])))["input_ids"])
                    for r in rows[1:])
    with pytest.raises(InputError) as info:
        data.load_examples(str(path), tokenizer, "alpaca", limit)
    assert str(info.value).startswith(f"{path}:1: the prompt fills max_length={limit} tokens")
    assert str(info.value).endswith(f"set too_long=skip (first read at {rows[0]['source']})")
    _, skipped = data.load_examples(str(path), tokenizer, "alpaca", limit, too_long="skip")
    assert skipped == [f"{path}:1"]


# --- conversations: records.jsonl after filter, and the messages / sharegpt files it writes -------------------

CONVERSATIONS = {
    "en": [[{"role": "user", "content": "Name a primary color."},
            {"role": "assistant", "content": "Red is a primary color."},
            {"role": "user", "content": "Name another one."},
            {"role": "assistant", "content": "Blue is another."}],
           [{"role": "system", "content": "Answer in plain words."},
            {"role": "user", "content": "Describe the purpose of each charm."},
            {"role": "assistant", "content": "Each has its own charm and purpose."},
            {"role": "user", "content": "Give one example of a purpose."},
            {"role": "assistant", "content": "A charm may bring luck."},
            {"role": "user", "content": "And one more?"},
            {"role": "assistant", "content": "Another may protect a home."}]],
    "zh": [[{"role": "user", "content": "请介绍山水画的特点。"},
            {"role": "assistant", "content": "山水画以山川为主题，意境深远。"},
            {"role": "user", "content": "花鸟画呢？"},
            {"role": "assistant", "content": "花鸟画描绘花卉和禽鸟，生动细腻。"}],
           [{"role": "user", "content": "它们各有什么特色？"},
            {"role": "assistant", "content": "它们各有特色，值得一看。"},
            {"role": "user", "content": "哪一种更适合初学者？"},
            {"role": "assistant", "content": "初学者可以先从花鸟画开始。"}]],
}


@pytest.fixture(scope="module", params=["en", "zh"])
def conversations_run(request, tmp_path_factory):
    """A records.jsonl of conversations (as generate --turns writes it) filtered into each chat format."""
    from selfinstruct.publish import Publish

    lang = request.param
    folder = tmp_path_factory.mktemp(f"chats_{lang}")
    records = [Record.from_messages(m, id=f"{lang}{k}", lang=lang, origin="machine", teacher="scripted",
                                    request_id=f"r{k}") for k, m in enumerate(CONVERSATIONS[lang])]
    (folder / "records.jsonl").write_text("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n"
                                                  for r in records), encoding="utf-8")
    for fmt in ("messages", "sharegpt"):
        run_filter([str(folder / "records.jsonl")], str(folder / fmt), progress=False, publish=Publish(format=fmt))
    return folder


def conversation_tokens(examples):
    return [(e.input_ids, e.labels) for e in examples]


@pytest.mark.parametrize("fmt", ["messages", "sharegpt"])
def test_filtered_conversations_train_the_same_from_records_jsonl_and_the_chat_file(conversations_run, tokenizer, fmt):
    from selfinstruct.publish import DATA_FILE

    folder = conversations_run / fmt
    chat_file = folder / DATA_FILE[fmt]
    from_records, _ = data.load_examples(str(folder / "records.jsonl"), tokenizer, "chat", 512)
    from_chat_file, _ = data.load_examples(str(chat_file), tokenizer, "chat", 512)
    assert len(from_records) == 2 and conversation_tokens(from_records) == conversation_tokens(from_chat_file)
    # The filtered records.jsonl still names the line the conversation was first read from.
    assert [e.source for e in from_records] == [f"{conversations_run / 'records.jsonl'}:{k}" for k in (1, 2)]


def test_every_reply_of_a_filtered_conversation_is_supervised_and_nothing_else(conversations_run, tokenizer):
    examples, _ = data.load_examples(str(conversations_run / "messages" / "records.jsonl"), tokenizer, "chat", 512)
    conversations = CONVERSATIONS["zh" if "zh" in conversations_run.name else "en"]
    for example, messages in zip(examples, conversations):
        supervised = [t for t, label in zip(example.input_ids, example.labels) if label != -100]
        replies = [m["content"] for m in messages if m["role"] == "assistant"]
        # This tokenizer's template has no end-of-turn token: each reply ends "\n" + EOS.
        assert tokenizer.decode(supervised) == "".join(f"{reply}\n</s>" for reply in replies)


def test_conversations_with_template_alpaca_name_the_line_here_and_where_they_were_first_read(
        conversations_run, tokenizer):
    records_file = conversations_run / "messages" / "records.jsonl"
    with pytest.raises(InputError) as info:
        data.load_examples(str(records_file), tokenizer, "alpaca", 512)
    assert str(info.value).startswith(f"{records_file}:1: this record is a conversation (2 assistant turns); ")
    assert str(info.value).endswith(f"train it with template=chat (first read at {conversations_run / 'records.jsonl'}:1)")
