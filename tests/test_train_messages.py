"""train_sft on conversations: the chat template rendered turn by turn, the loss on every assistant
turn (its content and end-of-turn token) and on nothing else, in English and Chinese; truncation,
the all-masked check and the errors for conversations (template=alpaca, a template that rewrites
earlier turns, one that refuses the conversation, no assistant turn).

The tokenizer is the embedded SmolLM2's (ChatML: <|im_start|>role\\n…<|im_end|>\\n), read once from its
GGUF file; other templates are set on copies of it."""
from __future__ import annotations

import copy
import json

import pytest

from selfinstruct.errors import InputError, UsageError
from selfinstruct.record import Record
from selfinstruct.train_sft import data
from selfinstruct.train_sft.data import IGNORE

pytestmark = [pytest.mark.train, pytest.mark.embedded]

ENGLISH = [
    {"role": "system", "content": "You answer in one sentence."},
    {"role": "user", "content": "What is a prime number?"},
    {"role": "assistant", "content": "A whole number above 1 divisible only by 1 and itself."},
    {"role": "user", "content": "Is 9 one?"},
    {"role": "assistant", "content": "No, 9 is 3 times 3."},
    {"role": "user", "content": "And 11?"},
    {"role": "assistant", "content": "Yes, 11 is prime."},
]
CHINESE = [
    {"role": "system", "content": "请用一句话回答。"},
    {"role": "user", "content": "什么是质数？"},
    {"role": "assistant", "content": "只能被1和它本身整除的大于1的整数。"},
    {"role": "user", "content": "9是质数吗？"},
    {"role": "assistant", "content": "不是，9等于3乘3。"},
    {"role": "user", "content": "那11呢？"},
    {"role": "assistant", "content": "是的，11是质数。"},
]
END = "<|im_end|>"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from selfinstruct.train_sft import modeling

    folder = tmp_path_factory.mktemp("tokenizer")
    modeling.smollm2_tokenizer().save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def with_template(tokenizer, template: str):
    other = copy.deepcopy(tokenizer)
    other.chat_template = template
    return other


def runs(example, supervised: bool) -> list[list[int]]:
    """The stretches of consecutive tokens whose label is set (``supervised``) or -100."""
    found, current = [], []
    for token, label in zip(example.input_ids, example.labels):
        if (label != IGNORE) == supervised:
            current.append(token)
        elif current:
            found.append(current)
            current = []
    return found + ([current] if current else [])


def decoded_runs(tokenizer, example, supervised: bool) -> list[str]:
    return [tokenizer.decode(ids) for ids in runs(example, supervised)]


def write_jsonl(tmp_path, rows) -> str:
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


# --- exact labels ------------------------------------------------------------------------------------


@pytest.mark.parametrize("messages", [ENGLISH, CHINESE], ids=["en", "zh"])
def test_the_loss_is_on_the_three_replies_and_their_end_of_turn_tokens_and_nothing_else(tokenizer, messages):
    [example] = data.encode_batch([Record.from_messages(messages)], tokenizer, "chat", 1024)
    replies = [m["content"] for m in messages if m["role"] == "assistant"]
    # Supervised: exactly each reply, then <|im_end|>.
    assert decoded_runs(tokenizer, example, True) == [reply + END for reply in replies]
    # Masked: the system turn, the user turns, the role headers and the "\n" after each <|im_end|>.
    system, user1, _, user2, _, user3, _ = (m["content"] for m in messages)
    assert decoded_runs(tokenizer, example, False) == [
        f"<|im_start|>system\n{system}{END}\n<|im_start|>user\n{user1}{END}\n<|im_start|>assistant\n",
        f"\n<|im_start|>user\n{user2}{END}\n<|im_start|>assistant\n",
        f"\n<|im_start|>user\n{user3}{END}\n<|im_start|>assistant\n"]
    # The input is the template's rendering of the conversation, up to the last <|im_end|>.
    assert tokenizer.decode(example.input_ids) == tokenizer.apply_chat_template(messages, tokenize=False)[:-1]
    assert example.supervised == sum(label != IGNORE for label in example.labels)
    assert not example.truncated and example.prompt_tokens == len(runs(example, False)[0])


def test_every_label_that_is_set_is_the_token_it_labels(tokenizer):
    [example] = data.encode_batch([Record.from_messages(ENGLISH)], tokenizer, "chat", 1024)
    assert all(label in (IGNORE, token) for token, label in zip(example.input_ids, example.labels))


def test_a_single_turn_record_and_the_same_exchange_as_messages_give_the_same_example(tokenizer):
    plain = Record("把这句话翻译成英文。", "今天天气很好。", "The weather is nice today.")
    as_messages = Record.from_messages(plain.conversation())
    [a], [b] = (data.encode_batch([r], tokenizer, "chat", 512) for r in (plain, as_messages))
    assert (a.input_ids, a.labels) == (b.input_ids, b.labels)
    assert decoded_runs(tokenizer, a, True) == ["The weather is nice today." + END]


def test_user_turns_after_the_last_reply_are_left_out(tokenizer):
    trailing = ENGLISH + [{"role": "user", "content": "Thanks!"}]
    [with_tail], [without] = (data.encode_batch([Record.from_messages(m)], tokenizer, "chat", 1024)
                              for m in (trailing, ENGLISH))
    assert (with_tail.input_ids, with_tail.labels) == (without.input_ids, without.labels)


def test_a_template_without_an_end_of_turn_token_gets_eos_after_every_reply(tokenizer):
    plain = with_template(tokenizer, "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
                                     "{% if add_generation_prompt %}assistant: {% endif %}")
    [example] = data.encode_batch([Record.from_messages(ENGLISH)], plain, "chat", 1024)
    replies = [m["content"] for m in ENGLISH if m["role"] == "assistant"]
    assert decoded_runs(plain, example, True) == [f"{reply}\n{plain.eos_token}" for reply in replies]
    assert decoded_runs(plain, example, False)[1] == f"user: {ENGLISH[3]['content']}\nassistant: "


def test_a_special_token_followed_by_more_than_whitespace_does_not_end_the_reply(tokenizer):
    # The reply itself holds a special token (here as text the tokenizer maps to <|endoftext|>) with
    # words after it: the reply still ends at its own <|im_end|>, every word of it supervised.
    messages = [ENGLISH[1], dict(ENGLISH[2], content="Before <|endoftext|> after.")]
    [example] = data.encode_batch([Record.from_messages(messages)], tokenizer, "chat", 512)
    assert decoded_runs(tokenizer, example, True) == ["Before <|endoftext|> after." + END]
    # A template without an end-of-turn token, and such a reply: EOS is appended after all of it.
    plain = with_template(tokenizer, "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
                                     "{% if add_generation_prompt %}assistant: {% endif %}")
    [example] = data.encode_batch([Record.from_messages(messages)], plain, "chat", 512)
    assert decoded_runs(plain, example, True) == [f"Before <|endoftext|> after.\n{plain.eos_token}"]


def test_a_template_that_ignores_add_generation_prompt_is_a_usage_error(tokenizer):
    no_prompt = with_template(tokenizer, "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
                                         "<|im_end|>\n{% endfor %}")
    with pytest.raises(UsageError) as e:
        data.encode_batch([Record.from_messages(ENGLISH)], no_prompt, "chat", 1024)
    assert str(e.value) == ("template=chat: this tokenizer's chat template ignores add_generation_prompt, so the "
                            "assistant's role header cannot be told from its reply; use a tokenizer folder whose "
                            "template supports it, or template=alpaca")


# --- truncation and the all-masked check ----------------------------------------------------------------


def test_truncation_inside_a_later_reply_keeps_the_labels_aligned(tokenizer):
    [full] = data.encode_batch([Record.from_messages(ENGLISH)], tokenizer, "chat", 1024)
    cut_at = len(full.input_ids) - 8
    [cut] = data.encode_batch([Record.from_messages(ENGLISH)], tokenizer, "chat", cut_at)
    assert (cut.input_ids, cut.labels) == (full.input_ids[:cut_at], full.labels[:cut_at]) and cut.truncated
    assert decoded_runs(tokenizer, cut, True)[:2] == decoded_runs(tokenizer, full, True)[:2]


def test_a_conversation_whose_first_reply_starts_beyond_max_length_is_an_error_naming_its_line(
        tokenizer, tmp_path):
    long_question = dict(ENGLISH[1], content="Explain this. " + "Every word counts here. " * 40)
    rows = [{"messages": CHINESE}, {"messages": [ENGLISH[0], long_question, *ENGLISH[2:]]}]
    path = write_jsonl(tmp_path, rows)
    with pytest.raises(InputError) as e:
        data.load_examples(path, tokenizer, "chat", 128)
    assert str(e.value).startswith(f"{path}:2: the prompt fills max_length=128 tokens, leaving no response")
    examples, skipped = data.load_examples(path, tokenizer, "chat", 128, too_long="skip")
    assert len(examples) == 1 and skipped == [f"{path}:2"]
    assert decoded_runs(tokenizer, examples[0], True)[0] == CHINESE[2]["content"] + END


def test_a_messages_file_trains_like_the_records_it_holds(tokenizer, tmp_path):
    path = write_jsonl(tmp_path, [{"messages": ENGLISH}, {"messages": CHINESE}])
    examples, skipped = data.load_examples(path, tokenizer, "chat", 1024)
    direct = data.encode_batch([Record.from_messages(ENGLISH), Record.from_messages(CHINESE)], tokenizer,
                               "chat", 1024)
    assert [(e.input_ids, e.labels) for e in examples] == [(e.input_ids, e.labels) for e in direct]
    assert [e.origin for e in examples] == [f"{path}:1", f"{path}:2"] and skipped == []


# --- errors ----------------------------------------------------------------------------------------------


def test_a_conversation_with_template_alpaca_names_its_line_and_says_to_use_template_chat(tokenizer, tmp_path):
    path = write_jsonl(tmp_path, [{"messages": ENGLISH[1:3]}, {"messages": CHINESE}])
    with pytest.raises(InputError) as e:
        data.load_examples(path, tokenizer, "alpaca", 1024)
    assert str(e.value) == (f"{path}:2: this record is a conversation (3 assistant turns, a system turn); "
                            f"template=alpaca holds one instruction and one response: train it with template=chat")


def test_a_single_exchange_in_messages_trains_with_template_alpaca_as_the_alpaca_record(tokenizer):
    exchange = Record.from_messages(CHINESE[1:3])
    [a], [b] = (data.encode_batch([r], tokenizer, "alpaca", 512)
                for r in (exchange, Record(CHINESE[1]["content"], "", CHINESE[2]["content"])))
    assert (a.input_ids, a.labels) == (b.input_ids, b.labels)


def test_a_template_that_rewrites_earlier_turns_is_a_usage_error_saying_so(tokenizer):
    # Like templates that drop past reasoning: the last assistant turn renders differently from the
    # same turn once another follows.
    rewriting = with_template(tokenizer, "{% for m in messages %}<|im_start|>{{ m.role }}\n"
                                         "{% if loop.last and m.role == 'assistant' %}Final: {% endif %}"
                                         "{{ m.content }}<|im_end|>\n{% endfor %}"
                                         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with pytest.raises(UsageError) as e:
        data.encode_batch([Record.from_messages(ENGLISH, source="c.jsonl:4")], rewriting, "chat", 1024)
    assert str(e.value) == (
        "template=chat: this tokenizer's chat template does not render a conversation as its earlier turns "
        "followed by the next ones (assistant turn 2 of the record at c.jsonl:4), so its turns cannot be masked "
        "one by one; use a tokenizer folder whose chat template keeps earlier turns as they were")


def test_a_generation_prompt_that_is_not_how_replies_start_is_a_usage_error_for_single_turn_data(tokenizer):
    mismatched = with_template(tokenizer, "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
                                          "<|im_end|>\n{% endfor %}"
                                          "{% if add_generation_prompt %}<|im_start|>model\n{% endif %}")
    with pytest.raises(UsageError, match=r"\(assistant turn 1 of the record at d.json:3\).*use template=alpaca$"):
        data.encode_batch([Record("Say hi.", "", "Hi", origin="d.json:3")], mismatched, "chat", 512)


def test_a_template_that_refuses_the_conversation_names_the_record(tokenizer, tmp_path):
    strict = with_template(tokenizer, "{% for m in messages %}{% if m.role == 'system' %}"
                                      "{{ raise_exception('System role not supported') }}{% endif %}"
                                      "{{ m.role }}: {{ m.content }}\n{% endfor %}"
                                      "{% if add_generation_prompt %}assistant: {% endif %}")
    path = write_jsonl(tmp_path, [{"messages": ENGLISH[1:3]}, {"messages": ENGLISH}])
    with pytest.raises(InputError) as e:
        data.load_examples(path, strict, "chat", 1024)
    assert str(e.value) == (f"{path}:2: the tokenizer's chat template refuses this conversation: "
                            f"System role not supported")


def test_errors_about_a_filtered_conversation_name_both_its_lines(tokenizer, tmp_path):
    first_read = "gen/records.jsonl:7"
    rows = [Record.from_messages(ENGLISH, origin="machine", source=first_read, teacher="t", request_id="r").to_dict()]
    path = write_jsonl(tmp_path, rows)
    strict = with_template(tokenizer, "{% for m in messages %}{% if m.role == 'system' %}"
                                      "{{ raise_exception('System role not supported') }}{% endif %}"
                                      "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                                      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with pytest.raises(InputError) as e:
        data.load_examples(path, strict, "chat", 1024)
    assert str(e.value) == (f"{path}:1: the tokenizer's chat template refuses this conversation: "
                            f"System role not supported (first read at {first_read})")


def test_a_conversation_without_an_assistant_reply_is_an_error_naming_its_line(tokenizer, tmp_path):
    path = write_jsonl(tmp_path, [{"messages": CHINESE},
                                  {"messages": [ENGLISH[1], dict(ENGLISH[2], content="  ")]}])
    with pytest.raises(InputError) as e:
        data.load_examples(path, tokenizer, "chat", 1024)
    assert str(e.value) == f"{path}:2: conversation has no assistant turn to train on"
