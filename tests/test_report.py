"""``selfinstruct report``: the numbers the page states match the data (funnel, length histograms,
ROUGE-L, judge scores, language mix, usage), hostile record text is shown as text and never runs, the
PNGs are real PNGs, Chinese labels get a font with Han glyphs, and the command's errors are one line.

Run folders are written by hand here, with known content, in English and Chinese. The verb–noun and
nearest-ROUGE-L functions are passed in (small, obviously correct versions below), so these tests
check the report, not those modules.
"""
from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import warnings
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from selfinstruct.record import Record

from selfinstruct.report import write_report
from selfinstruct.report.load import default_out_dir, load
from selfinstruct.report.stats import compute, histogram, length_edges, rouge_edges
from selfinstruct.text import tokens

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.report        # needs the `report` extra (matplotlib, noto-cjk-sans-otc)


# -- small stand-ins for nearest.nearest_scores and verbnoun.top_pairs ---------------------------


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure on the project's tokens, by the textbook LCS table."""
    ta, tb = tokens(a), tokens(b)
    if not ta or not tb:
        return 0.0
    prev = [0] * (len(tb) + 1)
    for x in ta:
        cur = [0]
        for j, y in enumerate(tb):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if not lcs:
        return 0.0
    p, r = lcs / len(ta), lcs / len(tb)
    return 2 * p * r / (p + r)


class Result:
    def __init__(self, scores, n_total):
        self.scores, self.sampled, self.n_total = scores, False, n_total
        self.nearest = [None] * len(scores)


class NearestSpy:
    """Brute-force nearest ROUGE-L; remembers what it was asked."""
    def __init__(self):
        self.calls = []

    def __call__(self, instructions, against, limit=20000, seed=0):
        self.calls.append((list(instructions), None if against is None else list(against)))
        scores = []
        for i, a in enumerate(instructions):
            pool = against if against is not None else [b for j, b in enumerate(instructions) if j != i]
            scores.append(max((rouge_l(a, b) for b in pool), default=0.0))
        return Result(scores, len(instructions))


def never_nearest(*args, **kwargs):
    raise AssertionError("nearest_scores must not run when records carry nearest_seed_rouge")


def first_word_pairs(items, n_verbs=20, n_nouns=4):
    """Verb = first word (first character for Chinese), noun = last word (last two characters)."""
    verbs, nouns = Counter(), {}
    for text, lang in items:
        words = text.rstrip("。.!?").split() if lang == "en" else [text[0], text.rstrip("。")[-2:]]
        verb = words[0].lower()
        verbs[verb] += 1
        if len(words) > 1:
            nouns.setdefault(verb, Counter())[words[-1].lower()] += 1
    return [(v, c, sorted(nouns.get(v, Counter()).items(), key=lambda kv: (-kv[1], kv[0]))[:n_nouns])
            for v, c in sorted(verbs.items(), key=lambda kv: (-kv[1], kv[0]))[:n_verbs]]


# -- run folders written by hand -----------------------------------------------------------------

EN = [  # instruction words 4, 5, 5, 6, 7, 3; outputs and inputs of known lengths
    dict(instruction="Write a short poem.", input="", output="Roses bloom in spring light.",
         judge_score=8, nearest_seed_rouge=0.1, meta={"is_classification": False}),
    dict(instruction="Classify the sentiment of this review.", input="I loved it.", output="Positive",
         judge_score=9, nearest_seed_rouge=0.12, meta={"is_classification": True}),
    dict(instruction="List three fruits that are red.", input="", output="Apple, cherry, strawberry.",
         judge_score=8, nearest_seed_rouge=0.3, meta={"is_classification": False}),
    dict(instruction="Translate the sentence into plain French.", input="Good morning, friend.",
         output="Bonjour, mon ami.", judge_score=3, nearest_seed_rouge=0.31, meta={"is_classification": False}),
    dict(instruction="Explain why the sky looks blue today.", input="", output="Air scatters blue light most.",
         nearest_seed_rouge=0.35),
    dict(instruction="Write a limerick.", input="", output="There once was a cat from Peru.",
         judge_score=10, nearest_seed_rouge=0.7, meta={"is_classification": False}),
]
ZH = [
    dict(instruction="写一首关于春天的诗。", input="", output="春风拂面，花开满园。", lang="zh",
         judge_score=7, nearest_seed_rouge=0.95),
    dict(instruction="把下面的句子翻译成英文。", input="今天天气很好。", output="The weather is nice today.",
         lang="zh", judge_score=8, nearest_seed_rouge=1.0, meta={"is_classification": False}),
]
REJECT_REASONS = {"generate": {"unparseable": 3}, "quality": {"too_short": 5, "blacklist_word": 1},
                  "rouge": {"rouge_too_similar": 2}}


def records_of(rows, lang="en"):
    out = []
    for i, row in enumerate(rows, 1):
        d = {"id": f"{row.get('lang', lang)}-{i:06d}", "lang": lang, "origin": "machine", **row}
        out.append(Record.from_dict(d).to_dict())        # every field, as generate writes it
    return out


def write_run(folder: Path, records, reasons=REJECT_REASONS, kind="generate", extra_rejects=(),
              settings=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "records.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (folder / "data.json").write_text(json.dumps([{k: r.get(k, "") for k in ("instruction", "input", "output")}
                                                  for r in records], ensure_ascii=False), encoding="utf-8")
    n = 0
    with open(folder / "rejects.jsonl", "w", encoding="utf-8") as f:
        for stage, per in reasons.items():
            for reason, count in per.items():
                for k in range(count):
                    rec = {"instruction": f"{reason} candidate {k}", "input": "", "output": "x"}
                    f.write(json.dumps({"reason": reason, "detail": f"{stage} said no", "source": f"u{n}",
                                        "record": rec}) + "\n")
                    n += 1
        for row in extra_rejects:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    rejected = {reason: c for per in reasons.values() for reason, c in per.items()}
    summary = {"kept": len(records), "rejected": rejected, "rejected_total": sum(rejected.values()),
               "rejected_per_stage": reasons, "elapsed_seconds": 12.5,
               "seconds_per_stage": {"quality": 0.25, "rouge": 0.5}}
    if kind == "generate":
        summary |= {"requested": len(records), "stopped": "done",
                    "tokens": {"prompt": 3000, "completion": 1000,
                               "per_stage": {"instructions": {"prompt": 2000, "completion": 600},
                                             "instances": {"prompt": 1000, "completion": 400}}},
                    "requests": {"paid": 7, "cached": 2, "replayed": 1, "failed": 1}, "cost_usd": 0.0009,
                    "requests_per_stage": {"instructions": {"paid": 4, "cached": 2, "replayed": 1, "retried": 3},
                                           "instances": {"paid": 3, "failed": 1, "retried": 1}},
                    "teacher": {"name": "openai:gpt-4o-mini", "retries": 4, "price_in": 0.15, "price_out": 0.6},
                    "settings": settings or {"seed_files": [], "lang": "en"}}
    else:
        summary |= {"input_records": len(records) + summary["rejected_total"], "malformed": 0,
                    "against": {"paths": [], "records": 0, "malformed": 0}}
    (folder / "summary.json").write_text(json.dumps(summary, ensure_ascii=False), encoding="utf-8")
    return folder


@pytest.fixture
def en_run(tmp_path):
    return write_run(tmp_path / "run_en", records_of(EN) + records_of(ZH, "zh"))


@pytest.fixture(scope="module")
def en_page(tmp_path_factory):
    """The report of the mixed run, written once for the tests that only read it: (out folder, html)."""
    folder = tmp_path_factory.mktemp("page")
    run = write_run(folder / "run_en", records_of(EN) + records_of(ZH, "zh"))
    out = report([run], folder / "out")
    return out.parent, out.read_text(encoding="utf-8")


def report(paths, out, **kw):
    kw.setdefault("nearest_fn", never_nearest)
    kw.setdefault("top_pairs_fn", first_word_pairs)
    return write_report([str(p) for p in paths], None if out is None else str(out), **kw)


class TextOf(HTMLParser):
    """The page's text as a browser shows it (entities decoded), and its tags."""
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text, self.tags = [], Counter()

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1

    def handle_data(self, data):
        self.text.append(data)


def page_text(html: str) -> tuple[str, Counter]:
    parser = TextOf()
    parser.feed(html)
    return "".join(parser.text), parser.tags


def rows_of(html: str, cls: str) -> list[list[str]]:
    """The body rows of ``<table class=CLS>`` as cell texts."""
    m = re.search(rf"<table class={re.escape(cls)}>(.*?)</table>", html, re.S)
    assert m, f"no table {cls}"
    rows = re.findall(r"<tr>(.*?)</tr>", m.group(1), re.S)[1:]
    return [[page_text(c)[0] for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)] for row in rows]


# -- the numbers ---------------------------------------------------------------------------------


def test_funnel_counts_and_shares_match_the_summary(en_run, en_page, tmp_path):
    stats = compute(load(en_run), nearest_fn=never_nearest, top_pairs_fn=first_word_pairs)
    f = stats.funnel
    assert (f.candidates, f.kept) == (8 + 11, 8)
    assert [(r.stage, r.reason, r.count) for r in f.rows] == [
        ("generate", "unparseable", 3), ("quality", "too_short", 5), ("quality", "blacklist_word", 1),
        ("rouge", "rouge_too_similar", 2)]
    assert f.rows[1].share == pytest.approx(5 / 19)
    out, html = en_page
    assert rows_of(html, "funnel") == [
        ["candidates", "", "19", "100.0%"], ["generate", "unparseable", "3", "15.8%"],
        ["quality", "too_short", "5", "26.3%"], ["quality", "blacklist_word", "1", "5.3%"],
        ["rouge", "rouge_too_similar", "2", "10.5%"], ["kept", "", "8", "42.1%"]]


def test_length_histograms_count_words_for_english_and_characters_for_chinese(en_run, en_page, tmp_path):
    stats = compute(load(en_run), nearest_fn=never_nearest, top_pairs_fn=first_word_pairs)
    en = stats.lengths["instruction"]["en"]
    words = [len(r["instruction"].split()) for r in EN]            # 4, 6, 6, 6, 7, 3
    assert sum(en.counts) == len(EN)
    for lo, hi, count in zip(en.edges, en.edges[1:], en.counts):
        assert count == sum(lo <= w < hi for w in words)
    assert dict(zip(en.labels(), en.counts)) == {"3": 1, "4": 1, "5": 0, "6": 3, "7": 1}
    zh = stats.lengths["instruction"]["zh"]
    chars = [9, 11]                                                  # 写一首关于春天的诗 / 把下面…英文
    for lo, hi, count in zip(zh.edges, zh.edges[1:], zh.counts):
        assert count == sum(lo <= c < hi for c in chars)
    assert stats.length_medians["instruction"]["zh"] == 10
    assert stats.with_input == 3 and stats.input_share == pytest.approx(3 / 8)
    assert stats.classification == (1, 6)                           # 6 records say, 1 of them is
    out, html = en_page
    assert ["6", "3"] in rows_of(html, "hist-instruction-en")
    assert ["9", "1"] in rows_of(html, "hist-instruction-zh") and ["11", "1"] in rows_of(html, "hist-instruction-zh")
    assert "with an input: 3 of 8 (37.5%)" in html
    assert "classification tasks: 1 of 6 that say (16.7%)" in html


def test_length_bins_put_a_far_tail_into_one_overflow_bin():
    values = list(range(1, 101)) + [5000]
    edges = length_edges(values)
    assert edges[-1] == float("inf") and edges[-2] <= 105
    hist = histogram(values, edges)
    assert hist.counts[-1] == 1 and hist.total == 101
    assert length_edges([0, 0]) == [0, 1]
    assert length_edges([40, 41, 45]) == [40, 41, 42, 43, 44, 45, 46]     # bins start at the data
    wide = length_edges(list(range(1000, 2001)))
    assert wide[0] == 1000 - 1000 % (wide[1] - wide[0]) and len(wide) <= 27


def test_rouge_histogram_uses_the_runs_own_field(en_run, en_page, tmp_path):
    stats = compute(load(en_run), nearest_fn=never_nearest, top_pairs_fn=first_word_pairs)
    r = stats.rouge
    assert r.origin == "records.jsonl" and not r.sampled
    expected = Counter({2: 2, 6: 2, 7: 1, 14: 1, 19: 2})            # 0.1 0.12 | 0.3 0.31 | 0.35 | 0.7 | 0.95 1.0
    assert r.histogram.counts == [expected[i] for i in range(20)]
    assert r.histogram.edges == rouge_edges()
    out, html = en_page
    assert ["0.30–0.35", "2"] in rows_of(html, "hist-rouge") and ["0.95–1.00", "2"] in rows_of(html, "hist-rouge")
    assert "all 8 instructions, exact" in html


def test_rouge_is_computed_against_the_seeds_when_a_record_lacks_the_field(tmp_path, write_jsonl):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [
        {"id": "s1", "name": "a", "instruction": "Write a short poem about the sea.",
         "instances": [{"input": "", "output": "Waves."}], "is_classification": False}])
    rows = [dict(r) for r in EN]
    del rows[0]["nearest_seed_rouge"]
    run = write_run(tmp_path / "run", records_of(rows), settings={"seed_files": [seeds], "lang": "en"})
    spy = NearestSpy()
    stats = compute(load(run), nearest_fn=spy, top_pairs_fn=first_word_pairs)
    assert spy.calls == [([r["instruction"] for r in EN], ["Write a short poem about the sea."])]
    assert stats.rouge.origin == "computed" and "seeds.jsonl" in stats.rouge.against
    assert stats.rouge.scores[0] == pytest.approx(rouge_l(EN[0]["instruction"], "Write a short poem about the sea."))


def test_rouge_of_a_dataset_is_against_its_other_instructions(tmp_path):
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"instruction": "Name a red fruit.", "input": "", "output": "Apple"},
                                {"instruction": "Name a red flower.", "input": "", "output": "Rose"},
                                {"instruction": "计算二加二。", "input": "", "output": "四"}], ensure_ascii=False))
    spy = NearestSpy()
    stats = compute(load(data), nearest_fn=spy, top_pairs_fn=first_word_pairs)
    assert spy.calls[0][1] is None
    assert stats.rouge.scores == pytest.approx([0.75, 0.75, 0.0])
    assert stats.funnel is None and stats.lang_mix == {"en": 2, "zh": 1}


def test_judge_histogram_language_mix_and_usage(en_run, en_page, tmp_path):
    stats = compute(load(en_run), nearest_fn=never_nearest, top_pairs_fn=first_word_pairs)
    scores = Counter(r["judge_score"] for r in EN + ZH if "judge_score" in r)
    assert stats.judge.edges[0] == 1 and stats.judge.edges[-1] == 11
    assert stats.judge.counts == [scores[s] for s in range(1, 11)]
    assert stats.lang_mix == {"en": 6, "zh": 2}
    u = stats.usage
    assert u.requests == {"paid": 7, "cached": 2, "replayed": 1, "failed": 1, "retried": 4}
    assert u.cost_per_stage["instructions"] == pytest.approx((2000 * 0.15 + 600 * 0.6) / 1e6)
    out, html = en_page
    assert ["8", "3"] in rows_of(html, "judge") and ["3", "1"] in rows_of(html, "judge")
    assert rows_of(html, "langs") == [["English", "en", "6", "75.0%"], ["Chinese", "zh", "2", "25.0%"]]
    assert ["retried", "4"] in rows_of(html, "requests")
    assert rows_of(html, "requests-per-stage") == [["instructions", "4", "2", "1", "3", "0"],
                                                   ["instances", "3", "0", "0", "1", "1"]]
    assert ["instances", "1,000", "400", "$0.0004"] in rows_of(html, "tokens")


def test_verb_noun_table_per_language(en_run, tmp_path):
    seen = []

    def spy(items, n_verbs=20, n_nouns=4):
        items = list(items)
        seen.append(items)
        return first_word_pairs(items, n_verbs, n_nouns)
    html = report([en_run], tmp_path / "out", top_pairs_fn=spy).read_text(encoding="utf-8")
    assert [{lang for _, lang in items} for items in seen] == [{"en"}, {"zh"}]
    assert len(seen[0]) == 6 and len(seen[1]) == 2
    assert ["write", "2", "limerick 1, poem 1"] in rows_of(html, "vn-en")
    assert ["写", "1", "的诗 1"] in rows_of(html, "vn-zh")
    assert (tmp_path / "out" / "report_verbnoun_en.png").is_file()


def test_samples_are_seeded_and_rejects_are_a_few_per_reason(en_run):
    a = compute(load(en_run), nearest_fn=never_nearest, top_pairs_fn=first_word_pairs, sample_size=3)
    b = compute(load(en_run), nearest_fn=never_nearest, top_pairs_fn=first_word_pairs, sample_size=3)
    assert [r.id for r in a.samples] == [r.id for r in b.samples] and len(a.samples) == 3
    assert {k: len(v) for k, v in a.reject_samples.items()} == {
        "unparseable": 3, "too_short": 3, "blacklist_word": 1, "rouge_too_similar": 2}
    assert [row["record"]["instruction"] for row in a.reject_samples["too_short"]] == [
        f"too_short candidate {k}" for k in range(3)]


# -- the page and its files ----------------------------------------------------------------------


HOSTILE = ["<script>alert(1)</script>", "</div></section></body>", "{{x}} {% raw %}", '"onload="alert(2)',
           "<img src=x onerror=alert(3)>"]


def test_hostile_text_is_shown_as_text_and_the_page_has_no_script(tmp_path):
    long_line = "A" * 50_000
    rows = [dict(instruction=h, input=h, output=h + " " + long_line if i == 0 else h, nearest_seed_rouge=0.2)
            for i, h in enumerate(HOSTILE)]
    bad_reject = {"reason": "<script>r()</script>", "detail": "</details>\"'", "source": "<b>src</b>",
                  "record": {"instruction": "<script>alert(9)</script>", "input": "", "output": "{{x}}"}}
    run = write_run(tmp_path / "<run>", records_of(rows), reasons={"quality": {"<script>r()</script>": 1}},
                    extra_rejects=())
    (run / "rejects.jsonl").write_text(json.dumps(bad_reject) + "\n")
    html = report([run], tmp_path / "out").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "onerror=" not in html.replace("onerror=alert(3)&gt;", "")     # only inside escaped text
    assert 'http-equiv="Content-Security-Policy"' in html and "default-src 'none'" in html
    text, tags = page_text(html)
    for h in HOSTILE + ["<script>r()</script>", "<script>alert(9)</script>", "<b>src</b>"]:
        assert h in text
    assert tags["script"] == 0 and tags["b"] == 0 and tags["img"] == len(re.findall(r"<img alt=", html))
    assert html.count("<div") == html.count("</div>")
    assert html.count("<details") == html.count("</details>")
    value = rows[0]["output"]                           # the 50,000-character field, shortened
    assert value[:2000] in text and value[:2001] not in text
    assert f"{len(value) - 2000:,} more characters not shown" in text
    assert "A" * 2001 not in html                       # not hidden in the page either


def test_pngs_are_valid_and_are_the_embedded_figures(en_run, en_page, tmp_path):
    from PIL import Image
    out, html = en_page
    pngs = sorted((out).glob("report_*.png"))
    assert {p.name for p in pngs} == {"report_funnel.png", "report_lengths.png", "report_languages.png",
                                      "report_rouge.png", "report_verbnoun_en.png", "report_verbnoun_zh.png",
                                      "report_judge.png", "report_tokens.png"}
    embedded = {base64.b64decode(s) for s in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)}
    for p in pngs:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and data in embedded
        with Image.open(p) as im:
            im.verify()
    assert len(embedded) == len(pngs)


def test_chinese_labels_resolve_to_the_cjk_font(en_run):
    import matplotlib

    from selfinstruct.report import figures as fg
    path = fg.cjk_font()
    assert path is not None and path.endswith(".ttc"), "install the report extra (noto-cjk-sans-otc)"
    assert fg.font_file_for("诗", fg._rc()["font.family"]) == path
    assert fg.font_file_for("a", fg._rc()["font.family"]) != path          # Latin stays DejaVu
    pairs = [("写", 3, [("诗", 2), ("文章", 1)]), ("翻译", 2, [("句子", 2)])]

    def missing_glyph_warnings(families):
        plt = fg._pyplot()
        with matplotlib.rc_context({**fg._rc(), "font.family": families}), warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            fig = plt.figure(figsize=(6, 6))
            fg.draw_verb_noun(fig, pairs, "zh")
            fig.canvas.draw()
            plt.close(fig)
        return [str(x.message) for x in w if "missing from font" in str(x.message)]
    assert missing_glyph_warnings(fg._rc()["font.family"]) == []
    assert missing_glyph_warnings(["DejaVu Sans"])                       # the check can fail


def test_several_paths_make_one_page_with_an_overview(en_run, tmp_path):
    zh_run = write_run(tmp_path / "run_zh", records_of(ZH, "zh"), reasons={"quality": {"too_long": 2}})
    out = report([en_run, zh_run], tmp_path / "both")
    html = out.read_text(encoding="utf-8")
    assert "<h2>Overview</h2>" in html and html.count("<section>") == 2
    assert (tmp_path / "both" / "report_1_funnel.png").is_file()
    assert (tmp_path / "both" / "report_2_funnel.png").is_file()
    cmp = rows_of(html, "cmp")
    assert [row[2:5] for row in cmp] == [["19", "8", "42.1%"], ["4", "2", "50.0%"]]


def test_default_folder_and_stale_figures(en_run, tmp_path):
    assert default_out_dir(str(en_run)) == en_run
    data = tmp_path / "my data.jsonl"
    data.write_text(json.dumps({"instruction": "Say hi.", "input": "", "output": "Hi"}) + "\n")
    assert default_out_dir(str(data)) == tmp_path / "my data_report"
    assert report([en_run], None) == en_run / "report.html"
    assert (en_run / "report_judge.png").is_file()
    rows = [{k: v for k, v in r.items() if k != "judge_score"} for r in records_of(EN)]
    write_run(en_run, rows)
    report([en_run], None)
    assert not (en_run / "report_judge.png").exists()


# -- the command ---------------------------------------------------------------------------------


def test_cli_writes_the_report_and_prints_its_path(en_run, tmp_path, invoke_cli):
    result = invoke_cli("report", en_run, "--out", tmp_path / "cli")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"report -> {tmp_path / 'cli' / 'report.html'}"
    assert (tmp_path / "cli" / "report.html").stat().st_size > 10_000


def test_cli_on_a_dataset_file_writes_beside_it(tmp_path, invoke_cli, monkeypatch):
    import selfinstruct.report.nearest as nearest
    monkeypatch.setattr(nearest, "nearest_scores", NearestSpy())
    data = tmp_path / "alpaca.json"
    data.write_text(json.dumps([{"instruction": "Name a red fruit.", "input": "", "output": "Apple"},
                                {"instruction": "请写一首短诗。", "input": "", "output": "月光。"}], ensure_ascii=False))
    result = invoke_cli("report", data)
    assert result.exit_code == 0, result.output
    html = (tmp_path / "alpaca_report" / "report.html").read_text(encoding="utf-8")
    assert "请写一首短诗。" in html and "(dataset)" in html


def test_cli_missing_path_is_one_error_line(tmp_path, invoke_cli, error_line):
    missing = tmp_path / "nope.json"
    line = error_line(invoke_cli("report", missing, "--out", tmp_path / "r"))
    assert line == f"Error: {missing}: no such file"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("content", ["", "[]", "\n\n"])
def test_an_empty_dataset_gets_a_page_that_says_no_records(tmp_path, invoke_cli, content):
    data = tmp_path / "empty.json"
    data.write_text(content)
    result = invoke_cli("report", data, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert '<p class="empty">no records</p>' in html


def test_an_empty_run_shows_its_funnel_and_no_records(tmp_path):
    run = write_run(tmp_path / "run", [], reasons={"generate": {"unparseable": 4}})
    html = report([run], tmp_path / "r").read_text(encoding="utf-8")
    assert ["kept", "", "0", "0.0%"] in rows_of(html, "funnel") and "no records" in html


def test_cli_starts_without_matplotlib():
    code = "import sys, selfinstruct.cli; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_help_has_examples(invoke_cli):
    result = invoke_cli("report", "--help")
    assert result.exit_code == 0 and "selfinstruct report out/en" in result.stdout


def test_a_chinese_page_embeds_the_han_glyphs_it_shows(en_run, en_page, tmp_path):
    import io

    from fontTools.ttLib import TTFont

    from selfinstruct.report.fonts import wide_chars
    out, html = en_page
    m = re.search(r"@font-face\{font-family:selfinstruct-cjk;unicode-range:U\+2E80-10FFFF;"
                  r"src:url\(data:font/woff;base64,([A-Za-z0-9+/=]+)\)", html)
    assert m, "no embedded CJK font"
    cmap = TTFont(io.BytesIO(base64.b64decode(m.group(1)))).getBestCmap()
    shown = wide_chars(html.replace(m.group(1), ""))
    assert "诗" in shown and "翻" in shown
    assert [c for c in shown if ord(c) not in cmap] == []
    assert "font-src data:" in html
    english = write_run(tmp_path / "en_only", records_of(EN))
    assert "@font-face" not in report([english], tmp_path / "out2").read_text(encoding="utf-8")


def test_the_real_nearest_rouge_agrees_with_the_textbook_lcs(tmp_path):
    """No stand-in: selfinstruct.report.nearest on a small mixed set, each instruction against the
    others, against the brute-force LCS above."""
    rows = [{"instruction": t, "input": "", "output": "ok"} for t in (
        "Write a short poem about the sea.", "Write a long poem about the sea and the sky.",
        "List three fruits that are red.", "Name three red fruits.", "写一首关于大海的诗。", "写一首关于春天的诗。")]
    data = tmp_path / "mixed.json"
    data.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    stats = compute(load(data), top_pairs_fn=first_word_pairs)
    texts = [r["instruction"] for r in rows]
    expected = [max(rouge_l(a, b) for j, b in enumerate(texts) if j != i) for i, a in enumerate(texts)]
    assert stats.rouge.scores == pytest.approx(expected)
    assert stats.rouge.origin == "computed" and not stats.rouge.sampled


def test_missing_matplotlib_is_one_error_line(tmp_path, invoke_cli, error_line, monkeypatch):
    import selfinstruct.report as rep

    def no_matplotlib(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'matplotlib'")
    monkeypatch.setattr(rep, "write_report", no_matplotlib)
    line = error_line(invoke_cli("report", tmp_path))
    assert line.startswith("Error: the report needs matplotlib") and "selfinstruct[report]" in line


def test_without_the_cjk_font_a_chinese_report_still_draws_and_says_why_labels_are_boxes(tmp_path, monkeypatch):
    from selfinstruct.report import figures, fonts
    monkeypatch.setattr(fonts, "cjk_font_file", lambda: None)
    figures.cjk_font.cache_clear()
    try:
        run = write_run(tmp_path / "zh", records_of(ZH, "zh"))
        html = report([run], tmp_path / "out").read_text(encoding="utf-8")
    finally:
        figures.cjk_font.cache_clear()
    assert "No CJK font is installed" in html and "@font-face" not in html
    assert (tmp_path / "out" / "report_verbnoun_zh.png").read_bytes().startswith(PNG_MAGIC)
    english = write_run(tmp_path / "en", records_of(EN))
    assert "No CJK font" not in report([english], tmp_path / "out_en").read_text(encoding="utf-8")


def test_a_run_of_conversations_shows_its_turns_and_every_turn_of_a_sample(tmp_path):
    def conversation(first: str, turns: int) -> dict:
        messages = []
        for k in range(turns):
            messages += [{"role": "user", "content": first if k == 0 else f"追问 {k}：再具体一点？"},
                         {"role": "assistant", "content": f"reply {k + 1} to {first}"}]
        return Record.from_messages(messages, lang="en", origin="machine", teacher="t", request_id=f"u{turns}",
                                    nearest_seed="Name a fruit.", nearest_seed_rouge=0.2).to_dict()

    rows = [conversation("Plan a picnic.", 3), conversation("Name a bird.", 3), conversation("Sort 3, 1, 2.", 2)]
    html = report([write_run(tmp_path / "run", rows, reasons={})], tmp_path / "r").read_text(encoding="utf-8")
    assert "assistant turns per record: 2: 1, 3: 2" in page_text(html)[0]
    assert "reply 3 to Plan a picnic." in html and "追问 2：再具体一点？" in html


def test_single_turn_data_says_nothing_about_turns(en_run, en_page):
    assert "assistant turns per record" not in en_page[1] and "classification" in en_page[1]
