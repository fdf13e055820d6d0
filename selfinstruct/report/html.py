"""The report page: one self-contained HTML file, no script at all, figures as data: URIs.

Records are untrusted text (a teacher or a dataset wrote them). Every piece of text that comes from
the data, from a file name or from summary.json goes through ``esc`` (``html.escape`` with quotes),
so ``<script>``, ``</div>`` or ``"onload=`` in a record are shown as text; the page itself holds no
``<script`` element, and its Content-Security-Policy forbids scripts, fetches and every image that
is not a data: URI anyway, so nothing the data smuggled in could run or call out. Long lines wrap
(``overflow-wrap: anywhere``) and a very long field is shortened with a visible marker.

Han characters on the page are drawn from a font subset embedded in the page (``fonts``), so a
Chinese report reads right in a browser on a machine that has no CJK font.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
from typing import Iterable, Sequence

from selfinstruct.record import Record
from selfinstruct.report.stats import FIELDS, Histogram, ReportStats

# fonts from data: only: the page's own CJK subset (see fonts.py)
CSP = "default-src 'none'; img-src data:; font-src data:; style-src 'unsafe-inline'"
MAX_FIELD_CHARS = 2000
LANG_NAMES = {"en": "English", "zh": "Chinese"}

CSS = """
body{font-family:selfinstruct-cjk,system-ui,-apple-system,"Segoe UI","Noto Sans","Noto Sans CJK SC",
"PingFang SC","Microsoft YaHei",sans-serif;margin:0 auto;max-width:1180px;padding:1rem 1.5rem;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem;
overflow-wrap:anywhere}h3{margin-top:1.6rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.92rem}
th,td{border:1px solid #ddd;padding:.25rem .55rem;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f4f4f4}
img{max-width:100%;height:auto;display:block;margin:.5rem 0}
.note{background:#fff6dd;border-left:4px solid #e0b000;padding:.4rem .7rem;margin:.6rem 0}
.empty{font-size:1.2rem;color:#a33;font-weight:600}
.muted{color:#666;font-size:.9rem}
.rec{border:1px solid #ddd;border-radius:6px;margin:.6rem 0;padding:.4rem .7rem;background:#fcfcfc}
.rec dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .6rem;margin:.2rem 0}
.rec dt{font-weight:600;color:#555}.rec dd{margin:0;min-width:0}
.text{white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;font-family:inherit;margin:0}
.cut{color:#a33;font-style:italic}
details{margin:.4rem 0}summary{cursor:pointer;color:#245}
.cmp td,.cmp th{white-space:nowrap}
"""


def esc(value: object) -> str:
    """Text from the data or the files, as HTML text (quotes escaped too: safe in attributes)."""
    return html.escape(str(value), quote=True)


def text_block(value: str, limit: int = MAX_FIELD_CHARS) -> str:
    """A record field as wrapped, escaped text, shortened past ``limit`` characters."""
    value = "" if value is None else str(value)
    if not value:
        return '<div class="text muted">(empty)</div>'
    cut = ""
    if len(value) > limit:
        cut = f'<span class="cut"> … [{len(value) - limit:,} more characters not shown]</span>'
        value = value[:limit]
    lang = ' lang="zh"' if any("\u4e00" <= c <= "\u9fff" for c in value[:200]) else ""
    return f'<div class="text"{lang}>{esc(value)}{cut}</div>'


def pct(x: float) -> str:
    return f"{x:.1%}"


def num(x: float | int | None, digits: int = 1) -> str:
    if x is None:
        return "–"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[bool] = (),
          cls: str = "") -> str:
    """A table of escaped cells; ``numeric[i]`` right-aligns column i."""
    right = list(numeric) + [False] * (len(header) - len(numeric))
    head = "".join(f'<th{" class=n" if r else ""}>{esc(h)}</th>' for h, r in zip(header, right))
    body = "".join("<tr>" + "".join(f'<td{" class=n" if r else ""}>{esc(c)}</td>' for c, r in zip(row, right))
                   + "</tr>" for row in rows)
    return f'<table{f" class={cls}" if cls else ""}><tr>{head}</tr>{body}</table>'


def image(png: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def page(sections: list[tuple[ReportStats, dict[str, tuple[bytes, str]]]], notes: Sequence[str] = ()) -> str:
    """The whole page: an overview when there are several inputs, then one section per input."""
    title = "selfinstruct report: " + ", ".join(s.source.path for s, _ in sections)
    parts = ["<h1>selfinstruct report</h1>",
             f'<p class="muted">written {esc(_dt.datetime.now().strftime("%Y-%m-%d %H:%M"))}; '
             f"{len(sections)} input{'s' if len(sections) != 1 else ''}</p>"]
    parts += [f'<p class="note">{esc(n)}</p>' for n in notes]
    if len(sections) > 1:
        parts.append(overview([s for s, _ in sections]))
    for i, (stats, figs) in enumerate(sections, 1):
        parts.append(section(stats, figs, i if len(sections) > 1 else None))
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}{font_face(title + body)}</style></head><body>\n"
            f"{body}\n</body></html>\n")


def font_face(text: str) -> str:
    """An @font-face with the CJK glyphs ``text`` uses, embedded; "" when it uses none or the font
    package is missing (the browser's own fonts then show them, if it has any)."""
    from selfinstruct.report.fonts import PAGE_FAMILY, subset_woff, wide_chars
    woff = subset_woff(wide_chars(text))
    if woff is None:
        return ""
    # First in the font list, but only for the CJK blocks (unicode-range): Latin text keeps the
    # system font, and Han text never goes through the browser's fallback guesses (Chromium picked
    # a glyph-less system font for whole Chinese lines when this font came later in the list).
    return (f"@font-face{{font-family:{PAGE_FAMILY};unicode-range:U+2E80-10FFFF;"
            f"src:url(data:font/woff;base64,{base64.b64encode(woff).decode('ascii')}) format('woff')}}")


def overview(all_stats: list[ReportStats]) -> str:
    rows = []
    for s in all_stats:
        f = s.funnel
        rows.append([s.source.path, s.source.kind, num(f.candidates) if f else "–", num(s.n),
                     pct(f.kept_share) if f and f.candidates else "–",
                     ", ".join(f"{k} {v:,}" for k, v in s.lang_mix.items()) or "–",
                     num(s.rouge.median, 2) if s.rouge and s.rouge.scores else "–"])
    return "<h2>Overview</h2>" + table(
        ["input", "kind", "candidates", "kept", "kept share", "languages", "median ROUGE-L"], rows,
        [False, False, True, True, True, False, True], cls="cmp")


def section(stats: ReportStats, figs: dict[str, tuple[bytes, str]], index: int | None) -> str:
    src = stats.source
    label = {"generate": "generate run", "filter": "filter run", "dataset": "dataset", "run": "output folder"}
    head = f"{index}. " if index else ""
    parts = [f"<section><h2>{esc(head)}{esc(src.path)} <span class=muted>({esc(label.get(src.kind, src.kind))}"
             f"{', records from ' + esc(src.records_file) if src.records_file and src.records_file != src.path else ''})"
             f"</span></h2>"]
    parts += [f'<p class="note">{esc(n)}</p>' for n in stats.notes]
    if stats.funnel is not None:
        parts.append(funnel_html(stats, figs))
    if stats.n == 0:
        parts.append('<p class="empty">no records</p>')
    else:
        parts += [lengths_html(stats, figs), rouge_html(stats, figs), verb_noun_html(stats, figs),
                  langs_html(stats, figs)]
        if stats.judge is not None:
            parts.append(judge_html(stats, figs))
    if stats.usage is not None:
        parts.append(usage_html(stats, figs))
    if stats.n:
        parts.append(samples_html(stats))
    if stats.reject_samples:
        parts.append(rejects_html(stats))
    parts.append("</section>")
    return "\n".join(parts)


def _fig(figs, name: str) -> str:
    return image(*figs[name]) if name in figs else ""


def funnel_html(stats: ReportStats, figs) -> str:
    f = stats.funnel
    rows = [["candidates", "", num(f.candidates), pct(1.0) if f.candidates else "–"]]
    rows += [[r.stage, r.reason, num(r.count), pct(r.share)] for r in f.rows]
    rows.append(["kept", "", num(f.kept), pct(f.kept_share) if f.candidates else "–"])
    return ("<h3>Funnel</h3>" + _fig(figs, "funnel")
            + table(["stage", "reason", "records", "share of candidates"], rows, [False, False, True, True],
                    cls="funnel"))


def _hist_table(hist: Histogram, integer: bool = True, cls: str = "") -> str:
    return table(["bin", "records"], [[lab, num(c)] for lab, c in zip(hist.labels(integer), hist.counts)],
                 [False, True], cls=cls)


def lengths_html(stats: ReportStats, figs) -> str:
    rows = []
    for name in FIELDS:
        for lang in stats.lengths[name]:
            rows.append([name, lang, "characters" if lang == "zh" else "words",
                         num(stats.length_means[name][lang]), num(float(stats.length_medians[name][lang]))])
    facts = [f"with an input: {stats.with_input:,} of {stats.n:,} ({pct(stats.input_share)})"]
    if stats.classification is not None:
        yes, said = stats.classification
        facts.append(f"classification tasks: {yes:,} of {said:,} that say ({pct(yes / said)})")
    else:
        facts.append("classification: not recorded")
    if stats.turns is not None:
        spread = ", ".join(f"{turns}: {count:,}" for turns, count in stats.turns.items())
        facts.append(f"assistant turns per record: {spread}")
    bins = "".join(f"<details><summary>{esc(name)} ({esc(lang)}) histogram bins</summary>"
                   f"{_hist_table(hist, cls=f'hist-{name}-{lang}')}</details>"
                   for name in FIELDS for lang, hist in stats.lengths[name].items())
    return ("<h3>Lengths</h3>" + _fig(figs, "lengths")
            + table(["field", "language", "unit", "mean", "median"], rows, [False, False, False, True, True])
            + "".join(f"<p class=facts>{esc(x)}</p>" for x in facts) + bins)


def rouge_html(stats: ReportStats, figs) -> str:
    r = stats.rouge
    if r is None or not r.scores:
        return "<h3>ROUGE-L to the most similar instruction</h3><p class=muted>not available</p>"
    scope = (f"a uniform sample of {len(r.scores):,} of {r.n_total:,} instructions" if r.sampled
             else f"all {len(r.scores):,} instructions, exact")
    origin = ("taken from the run's own nearest_seed_rouge field (records.jsonl)" if r.origin == "records.jsonl"
              else "computed now with the project's ROUGE-L index")
    return ("<h3>ROUGE-L to the most similar instruction</h3>"
            f"<p>As the Self-Instruct paper's Figure 3: each kept instruction against {esc(r.against)}; "
            f"{esc(scope)}; {esc(origin)}. Mean {r.mean:.3f}, median {r.median:.3f}.</p>"
            + _fig(figs, "rouge")
            + f"<details><summary>histogram bins</summary>{_hist_table(r.histogram, integer=False, cls='hist-rouge')}</details>")


def verb_noun_html(stats: ReportStats, figs) -> str:
    parts = ["<h3>Verbs and their direct objects</h3>",
             "<p class=muted>As the Self-Instruct paper's Figure 2: the 20 most common leading verbs of "
             "the instructions (inner ring) and each one's 4 most common direct objects (outer ring).</p>"]
    if not stats.verb_noun:
        parts.append("<p class=muted>no instructions in English or Chinese</p>")
    for lang, pairs in stats.verb_noun.items():
        parts.append(f"<h4>{esc(LANG_NAMES.get(lang, lang))}</h4>")
        if not pairs:
            parts.append("<p class=muted>no leading verb found</p>")
            continue
        parts.append(_fig(figs, f"verbnoun_{lang}"))
        rows = [[verb, num(count), ", ".join(f"{noun} {n:,}" for noun, n in nouns)] for verb, count, nouns in pairs]
        parts.append(f"<details><summary>the numbers</summary>"
                     f"{table(['verb', 'instructions', 'top objects'], rows, [False, True, False], cls=f'vn-{lang}')}"
                     "</details>")
    return "\n".join(parts)


def langs_html(stats: ReportStats, figs) -> str:
    rows = [[LANG_NAMES.get(k, k or "unknown"), k, num(v), pct(v / stats.n)] for k, v in stats.lang_mix.items()]
    return ("<h3>Language mix</h3>" + _fig(figs, "languages")
            + table(["language", "code", "records", "share"], rows, [False, False, True, True], cls="langs"))


def judge_html(stats: ReportStats, figs) -> str:
    judged = stats.judge.total
    return (f"<h3>Judge scores</h3><p>{judged:,} of {stats.n:,} kept records carry a judge score.</p>"
            + _fig(figs, "judge") + _hist_table(stats.judge, cls="judge"))


def usage_html(stats: ReportStats, figs) -> str:
    u = stats.usage
    facts = [["teacher", u.teacher or "–"], ["stopped", u.stopped or "–"],
             ["elapsed", f"{u.elapsed_seconds:,.1f} s" if u.elapsed_seconds is not None else "–"],
             ["cost", f"${u.cost_usd:,.4f}" if u.cost_usd is not None else "–"]]
    req_rows = [[k, num(v)] for k, v in u.requests.items()]
    tok_rows = [[stage, num(c.get("prompt", 0)), num(c.get("completion", 0)),
                 f"${u.cost_per_stage[stage]:,.4f}" if stage in u.cost_per_stage else "–"]
                for stage, c in u.tokens_per_stage.items()]
    sec_rows = [[stage, f"{s:,.3f}"] for stage, s in u.seconds_per_stage.items()]
    kinds = ("paid", "cached", "replayed", "retried", "failed")
    stage_rows = [[stage, *(num(c.get(k, 0)) for k in kinds)] for stage, c in u.requests_per_stage.items()]
    return ("<h3>Tokens, cost, time and requests</h3>" + table(["", ""], facts, cls="facts")
            + "<h4>Requests</h4>" + (table(["requests", "count"], req_rows, [False, True], cls="requests")
                                     if req_rows else "<p class=muted>none</p>")
            + (table(["request stage", *kinds], stage_rows, [False] + [True] * len(kinds), cls="requests-per-stage")
               if stage_rows else "")
            + "<h4>Tokens per request stage (paid requests)</h4>" + _fig(figs, "tokens")
            + (table(["stage", "prompt tokens", "completion tokens", "cost"], tok_rows, [False, True, True, True],
                     cls="tokens") if tok_rows else "<p class=muted>no paid tokens</p>")
            + (endpoints_html(u.endpoints) if u.endpoints else "")
            + "<h4>Filter time per stage</h4>"
            + (table(["stage", "seconds"], sec_rows, [False, True]) if sec_rows else "<p class=muted>–</p>"))


ENDPOINT_COUNTS = ("requests", "answered", "failures", "pauses")


def endpoints_html(endpoints: dict[str, dict]) -> str:
    """One row per endpoint of a teacher with several: where the requests went and how each did."""
    def count(f: dict, k: str) -> str:
        return num(f[k]) if isinstance(f.get(k), int) else "–"

    def seconds(x: object) -> str:
        return num(float(x), 3) if isinstance(x, (int, float)) else "–"

    rows = []
    for url, f in endpoints.items():
        latency = f.get("latency_s") if isinstance(f.get("latency_s"), dict) else {}
        rows.append([url, f.get("model", "–"), *(count(f, k) for k in ENDPOINT_COUNTS),
                     seconds(f.get("paused_s")), count(f, "in_flight_peak"),
                     *(seconds(latency.get(k)) for k in ("mean", "p50", "p90"))])
    header = ["endpoint", "model", *ENDPOINT_COUNTS, "paused s", "peak in flight",
              "latency mean s", "p50 s", "p90 s"]
    return ("<h4>Endpoints</h4><p>Requests are attempts sent, retries included; an endpoint that "
            "failed repeatedly was paused, its requests going to the others.</p>"
            + table(header, rows, [False, False] + [True] * (len(header) - 2), cls="endpoints"))


def record_html(r: Record | dict, extra: Sequence[tuple[str, object]] = ()) -> str:
    d = r.to_dict() if isinstance(r, Record) else (r if isinstance(r, dict) else {"instruction": repr(r)})
    rows = [(k, v) for k, v in extra if v not in (None, "")]
    messages = d.get("messages")
    if isinstance(messages, list) and len(messages) > 2:      # a conversation: every turn, in order
        rows += [(turn.get("role", "?"), turn.get("content", "")) for turn in messages if isinstance(turn, dict)]
    else:
        rows += [(f, d.get(f, "")) for f in FIELDS]
    for key in ("lang", "id", "source", "nearest_seed", "nearest_seed_rouge", "judge_score", "judge_reason"):
        if d.get(key) not in (None, ""):
            rows.append((key, d[key]))
    body = "".join(f"<dt>{esc(k)}</dt><dd>{text_block(v if isinstance(v, str) else str(v))}</dd>" for k, v in rows)
    return f'<div class="rec"><dl>{body}</dl></div>'


def samples_html(stats: ReportStats) -> str:
    shown = "".join(record_html(r) for r in stats.samples)
    return (f"<h3>Sample of kept examples</h3><details open><summary>{len(stats.samples):,} of {stats.n:,}, "
            f"a seeded random sample</summary>{shown}</details>")


def rejects_html(stats: ReportStats) -> str:
    parts = ["<h3>Rejects, a few per reason</h3>"]
    order = {r.reason: i for i, r in enumerate(stats.funnel.rows)} if stats.funnel else {}
    for reason, rows in sorted(stats.reject_samples.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])):
        recs = "".join(record_html(row.get("record") or {}, [("reason", row.get("reason")),
                                                            ("detail", row.get("detail")),
                                                            ("from", row.get("source"))]) for row in rows)
        parts.append(f"<details><summary>{esc(reason)} ({len(rows)} shown)</summary>{recs}</details>")
    return "\n".join(parts)
