"""The ``documents`` recipe through the CLI against the loopback OpenAI-compatible server, with a
scripted teacher that answers per chunk: good tasks, a reply with a preamble, near-identical
questions, instruction-only tasks (answered by a second chat request), a garbled reply, replies cut
off by the token limit, and Chinese. Exact counts, the citation in every record, the novelty scope
(per chunk) and exact dedup (everywhere), running out of chunks, bad documents, and a run killed
with SIGKILL and resumed."""
from __future__ import annotations

import os
import random
import re
import subprocess
import sys

import pytest

from selfinstruct.recipes.documents import DocumentsRecipe, clean_answer, parse_tasks
from selfinstruct.teachers.base import Request
from tests.fake_openai_server import FakeOpenAI, length, ok, prompt_of, serve_in_thread
from tests.kill_resume import assert_nothing_journaled_was_sent_again, kill_and_resume

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Six paragraphs of 35-60 words: with chunks of 60 tokens and no overlap, each is one chunk.
VALLEY = [
    "The river rises in the northern hills and runs south through a narrow valley. Its water is "
    "reliable all year, so farmers settled here early. A railway reached the valley in 1887, and two "
    "years later the first stone bridge opened, linking the farms to the markets of the coast.",
    "On the main square stands a bakery that has belonged to the same family for four generations. "
    "On weekdays it sells rye bread and rolls; on Sundays it sells only plum cake, which people queue "
    "for from seven in the morning. The oven is still heated with beech wood.",
    "In 1952 a paper mill opened at the southern end of the valley. It brought two hundred jobs, but "
    "its waste turned the river brown, and the town had to build a new water plant upstream. The mill "
    "closed in 1990 and its hall is now a museum of local industry.",
    "Every autumn the valley holds a harvest festival with a parade of decorated wagons, a cheese "
    "market and a dance in the old granary. Visitors from the coast arrive on a special train, and "
    "the festival ends with a lantern walk along the river at night.",
    "The village school has taught children from the farms since 1868. In 1975 it added music and "
    "woodwork to its lessons, and in 2010 a new wing with a library was built. Today about ninety "
    "pupils attend, most of whom arrive by the morning bus.",
    "The old harbour at the river mouth once shipped grain and timber to the coast. When the railway "
    "took that trade, the harbour declined. Today it is used by fishing boats and small sailing "
    "yachts, and its warehouses have become flats and a fish restaurant.",
]
LIGHTHOUSE = ("A lighthouse stands on the cliff north of the harbour. It was built in 1904 and its lamp, "
              "once fuelled by paraffin, was electrified in 1950. The last keeper left in 1986; since then "
              "the light has run on its own and the keeper's cottage is a holiday let.")
TEA = [
    "龙井茶产于杭州西湖一带，是中国最有名的绿茶之一。它的茶叶扁平光滑，颜色翠绿，冲泡后香气清高，滋味鲜爽。"
    "每年清明节前采摘的明前茶品质最好，价格也最高。",
    "泡龙井茶时，水温不宜太高，一般用八十度左右的水。先在杯中注入少量热水温润茶叶，再沿杯壁缓缓加水。"
    "用玻璃杯冲泡，可以看到茶叶在水中慢慢舒展、上下沉浮。",
]

SUMMARY_EN = "Summarise the passage in one sentence."
REPLIES_EN = {
    "northern hills": ("Task 1\nInstruction: " + SUMMARY_EN + "\nOutput: Settlers farmed a valley with a reliable "
                "river, and a railway and a stone bridge later linked it to the coast.\n\nTask 2\n"
                "Instruction: In which year did the railway reach the valley?\nOutput: In 1887, two years "
                "before the first stone bridge opened."),
    "bakery": ("Here are three tasks based on the passage:\n\nTask 1\nInstruction: " + SUMMARY_EN + "\n"
               "Output: A family bakery on the main square sells bread on weekdays and only plum cake on "
               "Sundays.\n\nTask 2\nInstruction: What does the bakery sell on Sundays?\nOutput: Only plum "
               "cake.\n\nTask 3\nInstruction: What does the bakery sell on Sunday?\nOutput: It sells plum "
               "cake."),
    "mill": ("Task 1\nInstruction: **Question:** What problem did the paper mill cause for the town?\n\n"
             "Task 2\nInstruction: Rewrite the last sentence of the passage for a ten-year-old."),
    "festival": "festival festival the the wagons ~~~ lantern lantern lantern",
    "school": ("Task 1\nInstruction: Name the two subjects the school added in 1975.\nOutput: Music and "
               "woodwork.\n\nTask 2\nInstruction: Explain why the sch"),
    "lighthouse": ("Task 1\nInstruction: When was the lighthouse lamp electrified?\nOutput: In 1950."),
    "harbour": ("Task 1\nInstruction: What is the harbour used for today?\nOutput: Today the harbour is "
                "used by fishing"),
}
TRUNCATED = {"school", "harbour"}
ANSWERS_EN = {
    "paper mill cause": "Its waste turned the river brown, so the town had to build a new water plant upstream.",
    "ten-year-old": "The factory shut down in 1990, and now its big hall is a museum about the work people did here.",
    "harbour used for": "Fishing boats and small sailing yachts use it.",
}
REPLIES_ZH = {
    "西湖": ("任务1\n指令：用一句话概括这段文字的内容。\n输出：龙井茶是产于杭州西湖的名绿茶，明前茶品质最好。\n\n"
           "任务2\n指令：根据这段文字，哪个时候采摘的龙井茶品质最好？"),
    "水温": ("好的，以下是两个任务：\n\n任务1\n指令：用一句话概括这段文字的内容。\n输出：泡龙井茶要用八十度左右的水，"
           "先温润茶叶再沿杯壁加水。\n\n任务2\n指令：为什么建议用玻璃杯冲泡龙井茶？\n输出：因为用玻璃杯可以看到茶叶"
           "在水中舒展、上下沉浮。"),
}
ANSWERS_ZH = {"品质最好": "清明节前采摘的明前茶品质最好。"}


def chunk_of_prompt(prompt: str) -> str:
    m = re.search(r'"""\n(.*?)\n"""', prompt, re.S)
    assert m, prompt
    return m.group(1)


def scripted(body: dict, n: int):
    """The scripted teacher: a tasks request gets the reply of its chunk, an answer request the
    answer to its instruction."""
    prompt = prompt_of(body)
    chunk = chunk_of_prompt(prompt)
    if "Answer using only the passage" in prompt or "请只依据上面的文段作答" in prompt:
        task = prompt.split('"""')[-1]
        for table in (ANSWERS_EN, ANSWERS_ZH):
            for needle, answer in table.items():
                if needle in task:
                    return ok(answer)
        raise AssertionError(f"no scripted answer for {task!r}")
    for table in (REPLIES_EN, REPLIES_ZH):
        for needle, reply in table.items():
            if needle in chunk:
                return length(reply) if needle in TRUNCATED else ok(reply)
    raise AssertionError(f"no scripted reply for {chunk!r}")


@pytest.fixture
def server():
    with serve_in_thread(FakeOpenAI(responder=scripted)) as s:
        yield s


@pytest.fixture
def valley(tmp_path):
    path = tmp_path / "docs" / "valley.md"
    path.parent.mkdir()
    path.write_text("# The valley\n\n" + "\n\n".join(VALLEY) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def gen(invoke_cli, server):
    def run(out, *args):
        return invoke_cli("generate", "--teacher", "openai", "--base-url", server.url, "--model", "fake-model",
                          "--recipe", "documents", "--no-progress", "--no-report", "--no-cache",
                          "--concurrency", "3", "--out", out, "--opt", "documents.chunk_tokens=60",
                          "--opt", "documents.overlap_tokens=0", *args, env={"OPENAI_API_KEY": ""})
    return run


def outputs(out, read_json, read_jsonl):
    return (read_json(out / "data.json"), read_jsonl(out / "records.jsonl"), read_jsonl(out / "rejects.jsonl"),
            read_json(out / "summary.json"))


# -- one run, every kind of reply --------------------------------------------------------------------


def test_every_kind_of_reply_gives_exact_counts_and_each_record_cites_its_chunk(gen, valley, tmp_path, server,
                                                                               read_json, read_jsonl):
    out = tmp_path / "o"
    r = gen(out, "--num", "50", "--documents", valley)
    assert r.exit_code == 0, r.stderr
    data, records, rejects, summary = outputs(out, read_json, read_jsonl)
    text = valley.read_text(encoding="utf-8")
    # 6 chunks: the "# The valley" heading joins the first paragraph's chunk
    assert summary["stopped"] == "exhausted: all 6 chunks of 1 document were used"
    assert summary["kept"] == len(data) == 8
    assert summary["rejected"] == {"rouge_too_similar": 1, "truncated": 1, "unparseable": 1}
    assert [d["instruction"] for d in data] == [
        SUMMARY_EN, "In which year did the railway reach the valley?",
        SUMMARY_EN, "What does the bakery sell on Sundays?",
        "What problem did the paper mill cause for the town?",      # "**Question:**" stripped
        "Rewrite the last sentence of the passage for a ten-year-old.",
        "Name the two subjects the school added in 1975.",
        "What is the harbour used for today?"]
    for rec in records:
        path, offset = rec["meta"]["chunk"].rsplit(":", 1)
        assert path == str(valley)
        assert text[int(offset):int(offset) + len(rec["input"])] == rec["input"]   # the citation is exact
    assert [r["input"] for r in records[:2]] == [text[:text.index(VALLEY[0]) + len(VALLEY[0])]] * 2
    assert records[2]["input"] == VALLEY[1]
    # instruction-only tasks and a cut-off output got their output from the answer request
    answered = {rec["instruction"]: rec["output"] for rec in records if rec["meta"].get("answered")}
    assert answered == {
        "What problem did the paper mill cause for the town?": ANSWERS_EN["paper mill cause"],
        "Rewrite the last sentence of the passage for a ten-year-old.": ANSWERS_EN["ten-year-old"],
        "What is the harbour used for today?": ANSWERS_EN["harbour used for"]}
    assert summary["requests_per_stage"]["tasks"]["paid"] == 6
    assert summary["requests_per_stage"]["answer"]["paid"] == 3
    answer_bodies = [q.json for q in server.requests if "Answer using only" in prompt_of(q.json)]
    assert len(answer_bodies) == 3 and all(q["messages"][0]["role"] == "user" for q in answer_bodies)
    by_reason = {rj["reason"]: rj for rj in rejects}
    assert by_reason["rouge_too_similar"]["record"]["instruction"] == "What does the bakery sell on Sunday?"
    assert "What does the bakery sell on Sundays?" in by_reason["rouge_too_similar"]["detail"]
    assert by_reason["unparseable"]["record"]["instruction"].startswith("festival festival")
    assert by_reason["truncated"]["record"]["instruction"] == "Explain why the sch"
    assert all(rj["record"]["meta"]["chunk"].startswith(f"{valley}:") for rj in rejects)


def test_the_same_summary_task_on_two_chunks_is_kept_but_not_twice_on_one_chunk(gen, valley, tmp_path,
                                                                               read_json, read_jsonl):
    """Two passes show every chunk twice and the scripted teacher repeats itself: the second pass
    adds nothing (exact dedup on instruction + input holds across the whole run)."""
    out = tmp_path / "o"
    r = gen(out, "--num", "50", "--documents", valley, "--opt", "documents.passes=2")
    assert r.exit_code == 0, r.stderr
    data, records, rejects, summary = outputs(out, read_json, read_jsonl)
    assert summary["stopped"] == "exhausted: all 6 chunks of 1 document were used (2 passes)"
    assert len(data) == 8
    assert [d["instruction"] for d in data].count(SUMMARY_EN) == 2
    second_pass = [rj for rj in rejects if int(rj["source"].split(":")[0][1:]) >= 6]
    assert sorted(rj["reason"] for rj in second_pass) == ["exact_duplicate"] * 8 + [
        "rouge_too_similar", "truncated", "unparseable"]


def test_num_counts_accepted_records_and_the_run_stops_when_it_is_reached(gen, valley, tmp_path, read_json,
                                                                          read_jsonl):
    out = tmp_path / "o"
    r = gen(out, "--num", "3", "--documents", valley)
    assert r.exit_code == 0, r.stderr
    data, _, _, summary = outputs(out, read_json, read_jsonl)
    assert len(data) == 3 and summary["stopped"] == "done"
    assert "3/3 examples" in r.stdout


# -- Chinese, JSONL, personas, the ways to name documents ------------------------------------------


def test_a_chinese_article_in_jsonl_cites_file_line_and_offset(gen, tmp_path, read_json, read_jsonl,
                                                               write_jsonl, server):
    path = write_jsonl(tmp_path / "tea.jsonl", [{"id": "a", "text": TEA[0]}, {"id": "b", "content": TEA[1]}])
    out = tmp_path / "o"
    r = gen(out, "--num", "20", "--lang", "zh", "--documents", path, "--opt", "documents.chunk_tokens=200")
    assert r.exit_code == 0, r.stderr
    data, records, rejects, summary = outputs(out, read_json, read_jsonl)
    assert summary["stopped"] == "exhausted: all 2 chunks of 2 documents were used"
    assert [(d["instruction"], d["output"]) for d in data] == [
        ("用一句话概括这段文字的内容。", "龙井茶是产于杭州西湖的名绿茶，明前茶品质最好。"),
        ("根据这段文字，哪个时候采摘的龙井茶品质最好？", "清明节前采摘的明前茶品质最好。"),
        ("用一句话概括这段文字的内容。", "泡龙井茶要用八十度左右的水，先温润茶叶再沿杯壁加水。"),
        ("为什么建议用玻璃杯冲泡龙井茶？", "因为用玻璃杯可以看到茶叶在水中舒展、上下沉浮。")]
    assert rejects == []          # the "好的，以下是两个任务：" preamble is not a task
    assert [rec["meta"]["chunk"] for rec in records] == [f"{path}:1:0"] * 2 + [f"{path}:2:0"] * 2
    assert all(rec["lang"] == "zh" for rec in records)
    tasks_prompts = [prompt_of(q.json) for q in server.requests if "请严格使用以下格式" in prompt_of(q.json)]
    assert len(tasks_prompts) == 2 and "请写3个不同的任务" in tasks_prompts[0]


def test_personas_are_in_the_prompt_and_every_record_of_the_unit(gen, valley, tmp_path, read_jsonl, server):
    personas = tmp_path / "personas.txt"
    personas.write_text("a retired railway engineer\n", encoding="utf-8")
    out = tmp_path / "o"
    r = gen(out, "--num", "2", "--documents", valley, "--personas", personas)
    assert r.exit_code == 0, r.stderr
    records = read_jsonl(out / "records.jsonl")
    assert [rec["meta"]["persona"] for rec in records] == ["a retired railway engineer"] * 2
    first = prompt_of(server.requests[0].json)
    assert "Write it as a retired railway engineer would ask it. Each instruction" in first


def test_documents_may_be_named_by_flag_repeated_folder_or_opt(gen, valley, tmp_path, read_jsonl):
    extra = tmp_path / "docs" / "more" / "lighthouse.txt"
    extra.parent.mkdir()
    extra.write_text(LIGHTHOUSE, encoding="utf-8")
    a = gen(tmp_path / "a", "--num", "100", "--documents", valley, "--documents", extra)
    b = gen(tmp_path / "b", "--num", "100", "--documents", tmp_path / "docs")
    c = gen(tmp_path / "c", "--num", "100", "--opt", f"documents={valley}{os.pathsep}{extra}")
    for r in (a, b, c):
        assert r.exit_code == 0, r.stderr
    chunks = [[rec["meta"]["chunk"] for rec in read_jsonl(tmp_path / o / "records.jsonl")] for o in "abc"]
    assert chunks[0] == chunks[2]
    # the folder walk lists more/lighthouse.txt before valley.md (sorted by path)
    assert chunks[1] == [c for c in chunks[0] if "lighthouse" in c] + [c for c in chunks[0] if "valley" in c]
    assert len({c.rsplit(":", 1)[0] for c in chunks[0]}) == 2


# -- errors: one line, nothing written -----------------------------------------------------------------


def test_bad_documents_are_one_error_line_before_anything_is_written(gen, tmp_path, error_line, write_jsonl):
    out = tmp_path / "o"
    assert error_line(gen(out, "--num", "5")) == (
        "Error: --recipe documents needs --documents PATH… (.txt, .md or .jsonl files, or folders of them)")
    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert error_line(gen(out, "--num", "5", "--documents", binary)) == (
        f"Error: {binary}: a binary file, not text (a NUL byte at byte 8)")
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"text": "Rivers shape valleys."}, {"body": "no text"}])
    assert error_line(gen(out, "--num", "5", "--documents", rows)) == (
        f"Error: {rows}:2: no 'text' or 'content' field (name the field with --opt documents.text_field=NAME)")
    empty = tmp_path / "empty.md"
    empty.write_text("\n\n", encoding="utf-8")
    assert error_line(gen(out, "--num", "5", "--documents", empty)) == (
        "Error: --documents: no text in 1 document of 1 file")
    assert error_line(gen(out, "--num", "5", "--documents", tmp_path / "missing")) == (
        f"Error: --documents {tmp_path / 'missing'}: no such file or folder")
    assert not out.exists()


def test_documents_does_not_apply_to_other_recipes(invoke_cli, error_line, valley, tmp_path):
    r = invoke_cli("generate", "--num", "2", "--out", tmp_path / "o", "--documents", valley)
    assert error_line(r) == "Error: --documents does not apply to --recipe alpaca"


# -- parsing, in detail ----------------------------------------------------------------------------------


def test_parse_tasks_reads_labels_in_both_languages_and_every_task_start():
    text = ("1. Instruction: List the dates in the passage.\nOutput: 1868, 1975 and 2010.\n"
            "Task 2: Explain why the harbour declined.\n**Output:** The railway took its trade.\n\n"
            "### Task 3\nInstruction: Rewrite this sentence simply.\nInput: <noinput>\nOutput: Rivers cut valleys.\n"
            "指令：这段文字提到了哪些年份？\n输出：1868年、1975年和2010年。")
    tasks = parse_tasks(text, truncated=False)
    assert [(t.instruction, t.output) for t in tasks] == [
        ("List the dates in the passage.", "1868, 1975 and 2010."),
        ("Explain why the harbour declined.", "The railway took its trade."),
        ("Rewrite this sentence simply.", "Rivers cut valleys."),
        ("这段文字提到了哪些年份？", "1868年、1975年和2010年。")]


def test_a_titled_task_header_is_not_a_task_of_its_own():
    tasks = parse_tasks("Task 1: Summary\nInstruction: Summarise the passage.\nOutput: Bees live in hives.\n\n"
                        "任务2：提取信息\n指令：蜂后每天最多产多少卵？\n输出：两千个。", truncated=False)
    assert [(t.instruction, t.output) for t in tasks] == [("Summarise the passage.", "Bees live in hives."),
                                                          ("蜂后每天最多产多少卵？", "两千个。")]


def test_an_excerpt_under_an_input_label_joins_the_instruction_unless_it_is_the_passage():
    passage = "Rivers cut valleys over thousands of years. Floods move stones."
    [task] = parse_tasks("Instruction: Rewrite this sentence simply.\nInput: Floods move stones.\nOutput: Water "
                         "pushes rocks.", truncated=False)
    assert task.with_material(passage) == "Rewrite this sentence simply.\nFloods move stones."
    [task] = parse_tasks(f"Instruction: Summarise the passage.\nInput: {passage}\nOutput: Rivers make valleys.",
                         truncated=False)
    assert task.with_material(passage) == "Summarise the passage."


def test_a_reply_cut_off_keeps_a_whole_instruction_and_drops_a_partial_one():
    [whole] = parse_tasks("Instruction: What is the harbour used for?\nOutput: Fishing bo", truncated=True)
    assert (whole.instruction, whole.output, whole.reason) == ("What is the harbour used for?", None, "")
    [cut] = parse_tasks("Task 1\nInstruction: What is the harb", truncated=True)
    assert cut.reason == "truncated"
    [none] = parse_tasks("I cannot help with that.", truncated=False)
    assert none.reason == "unparseable"
    assert parse_tasks("", truncated=False)[0].reason == "unparseable"


def test_clean_answer_drops_an_answer_label():
    assert clean_answer("Answer: In 1887.") == "In 1887."
    assert clean_answer("**输出：** 明前茶。") == "明前茶。"
    assert clean_answer("The answer is in 1887.") == "The answer is in 1887."


def test_unit_n_shows_chunk_n_then_there_is_no_more_work(valley):
    recipe = DocumentsRecipe([], "en", documents=[str(valley)], chunk_tokens=60, overlap_tokens=0, passes=2)
    rng = random.Random(0)
    firsts = [recipe.request_for_unit(n, rng, []) for n in range(12)]
    assert [f.carry["chunk"] for f in firsts[:6]] == [c.citation for c in recipe.chunks]
    assert [f.carry["chunk"] for f in firsts[6:]] == [c.citation for c in recipe.chunks]
    assert len({f.seed for f in firsts}) == 12          # a second pass asks with new seeds
    assert recipe.request_for_unit(12, rng, []) is None
    assert all(f.kind == "chat" and f.stage == "tasks" and f.stop == ("Task 4",) for f in firsts)


# -- killed and resumed ----------------------------------------------------------------------------------

MANY = 40   # chunks in the resume test


def many_reply(prompt: str) -> str:
    """Two tasks per chunk ("Paragraph N …"); every third chunk's second task has no output."""
    if "Answer using only the passage" in prompt:
        n = re.search(r"Which colour is paragraph (\d+) about", prompt).group(1)
        return f"Paragraph {n} is about the colour {COLOURS[int(n) % len(COLOURS)]}."
    n = int(re.search(r"Paragraph (\d+) ", chunk_of_prompt(prompt)).group(1))
    second = f"Task 2\nInstruction: Which colour is paragraph {n} about?"
    if n % 3:
        second += f"\nOutput: The colour {COLOURS[n % len(COLOURS)]}."
    return (f"Task 1\nInstruction: List the {NOUNS[n % len(NOUNS)]} that paragraph {n} names.\nOutput: It names "
            f"a {NOUNS[n % len(NOUNS)]} and a {COLOURS[n % len(COLOURS)]} roof.\n\n" + second)


COLOURS = ("red", "green", "blue", "amber", "violet", "ochre", "teal")
NOUNS = ("boats", "mills", "bridges", "orchards", "towers", "wells", "barns", "ferries", "quarries")


def request_key(body: dict) -> str:
    """The journal's key of a chat request the server received (the recipe's requests are all chat)."""
    return Request(prompt=prompt_of(body), max_tokens=body["max_tokens"], temperature=body["temperature"],
                   top_p=body["top_p"], stop=tuple(body.get("stop", ())), seed=body.get("seed"),
                   kind="chat").key()


def test_sigkill_in_mid_run_then_resume_ends_with_the_uninterrupted_runs_data(tmp_path, read_json,
                                                                              read_jsonl):
    doc = tmp_path / "many.txt"
    doc.write_text("\n\n".join(f"Paragraph {n} tells of a {NOUNS[n % len(NOUNS)]} with a "
                               f"{COLOURS[n % len(COLOURS)]} roof near the river bend number {n}. "
                               "It stands there still." for n in range(MANY)), encoding="utf-8")
    num = 70            # of 80 possible: the run ends "done"

    def command(server, out):
        return [sys.executable, "cli.py", "generate", "--teacher", "openai", "--base-url", server.url,
                "--model", "fake-model", "--recipe", "documents", "--documents", str(doc), "--num", str(num),
                "--out", str(out), "--no-progress", "--no-report", "--no-cache", "--concurrency", "3",
                "--opt", "documents.chunk_tokens=30", "--opt", "documents.overlap_tokens=0"]

    env = {**os.environ, "OPENAI_API_KEY": ""}
    with serve_in_thread(FakeOpenAI(text_fn=many_reply, latency=0.03)) as server:
        ref = subprocess.run(command(server, tmp_path / "ref"), cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
        assert ref.returncode == 0, ref.stderr
        server.requests.clear()

        out = tmp_path / "o"
        runs = kill_and_resume(command(server, out), out, env, seed=3)
        sent = [(q.t, request_key(q.json)) for q in server.requests]
    data, ref_data = read_json(out / "data.json"), read_json(tmp_path / "ref" / "data.json")
    assert len(data) == num and data == ref_data
    records = read_jsonl(out / "records.jsonl")
    def cited(rows):
        return [(rec["meta"]["chunk"], rec["meta"].get("answered")) for rec in rows]
    assert cited(records) == cited(read_jsonl(tmp_path / "ref" / "records.jsonl"))
    assert any(rec["meta"].get("answered") for rec in records)     # answer requests were part of it
    assert_nothing_journaled_was_sent_again(runs, out, sent)
