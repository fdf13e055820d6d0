"""The report's figures: matplotlib (Agg, no display) → PNG bytes, drawn from ``ReportStats``.

Chinese labels need a font with Han glyphs, and matplotlib's bundled DejaVu has none (they would
draw as boxes). The ``report`` extra installs ``noto-cjk-sans-otc`` (Noto Sans CJK, OFL; see
``fonts``); its collection is registered by file path and its Simplified Chinese face is the fallback family after
DejaVu Sans, so Latin text keeps DejaVu and Han characters come from Noto. Without it the figures
still draw, and ``cjk_font()`` returns None so the page can say why Chinese labels are boxes.

matplotlib is imported here only, and this module only when a report is written, so the CLI starts
fast.
"""
from __future__ import annotations

import functools
import io
import math
import warnings
from typing import Callable

from selfinstruct.report.stats import FIELDS, Funnel, Histogram, ReportStats, RougeStats, Usage

CJK_FAMILY = "Noto Sans CJK SC"
LATIN_FAMILY = "DejaVu Sans"
COLORS = {"en": "#4C72B0", "zh": "#DD8452"}
OTHER_COLORS = ["#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]
DPI = 120


@functools.lru_cache(maxsize=None)
def cjk_font() -> str | None:
    """The CJK font file, registered with matplotlib; None when the package is not installed."""
    from selfinstruct.report.fonts import cjk_font_file
    path = cjk_font_file()
    if path is None:
        return None
    _pyplot()
    from matplotlib import font_manager
    font_manager.fontManager.addfont(path)
    return path


def font_file_for(char: str, families: list[str]) -> str | None:
    """The font file matplotlib draws ``char`` from with these families: the first family whose
    font has a glyph for it, as its font fallback does; None when none has."""
    _pyplot()
    from matplotlib import font_manager
    for family in families:
        try:
            found = font_manager.findfont(font_manager.FontProperties(family=family),
                                          fallback_to_default=False)
        except ValueError:
            continue
        if font_manager.get_font(found).get_char_index(ord(char)):
            return str(getattr(found, "path", found))
    return None


@functools.lru_cache(maxsize=None)
def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _rc() -> dict:
    families = [LATIN_FAMILY] + ([CJK_FAMILY] if cjk_font() else [])
    return {"font.family": families, "font.size": 10, "axes.spines.top": False,
            "axes.spines.right": False, "figure.dpi": DPI, "savefig.dpi": DPI}


def _png(draw: Callable, size: tuple[float, float]) -> bytes:
    """Draw on a new figure of ``size`` inches and return it as PNG bytes."""
    plt = _pyplot()
    import matplotlib
    with matplotlib.rc_context(_rc()), warnings.catch_warnings():
        # a missing glyph (Han text without the CJK font) is shown on the page as a note instead
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from")
        fig = plt.figure(figsize=size)
        try:
            draw(fig)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
        finally:
            plt.close(fig)
    return buf.getvalue()


def figures(stats: ReportStats) -> dict[str, tuple[bytes, str]]:
    """name -> (PNG bytes, alt text) for every figure ``stats`` has data for."""
    out: dict[str, tuple[bytes, str]] = {}
    if stats.funnel is not None and stats.funnel.candidates:
        out["funnel"] = (_png(lambda f: draw_funnel(f, stats.funnel), _funnel_size(stats.funnel)),
                         "Funnel: candidates, rejects per stage and reason, kept")
    if stats.n:
        rows = len(stats.lengths["instruction"])
        out["lengths"] = (_png(lambda f: draw_lengths(f, stats), (11, 0.4 + 3.0 * rows)),
                          "Length distributions of instruction, input and output")
    if len(stats.lang_mix) > 1:         # one language needs no figure: the table says 100%
        out["languages"] = (_png(lambda f: draw_bars(f, stats.lang_mix, "Language mix", "records"),
                                 (5, 0.6 + 0.35 * len(stats.lang_mix))), "Language mix")
    if stats.rouge is not None and stats.rouge.scores:
        out["rouge"] = (_png(lambda f: draw_rouge(f, stats.rouge), (7, 3.6)),
                        "ROUGE-L of each instruction to " + stats.rouge.against)
    for lang, pairs in stats.verb_noun.items():
        if pairs:
            out[f"verbnoun_{lang}"] = (_png(lambda f, p=pairs, l=lang: draw_verb_noun(f, p, l), (8, 8)),
                                       f"Top verbs and their direct objects ({lang})")
    if stats.judge is not None:
        out["judge"] = (_png(lambda f: draw_judge(f, stats.judge), (6, 3)), "Judge score distribution")
    if stats.usage is not None and stats.usage.tokens_per_stage:
        out["tokens"] = (_png(lambda f: draw_tokens(f, stats.usage), (6, 0.9 + 0.45 * len(stats.usage.tokens_per_stage))),
                         "Tokens per request stage")
    return out


def _funnel_size(funnel: Funnel) -> tuple[float, float]:
    return (9, 1.0 + 0.32 * (len(funnel.rows) + 2))


def draw_funnel(fig, funnel: Funnel) -> None:
    ax = fig.add_subplot()
    labels = ["candidates"] + [f"{r.stage} · {r.reason}" for r in funnel.rows] + ["kept"]
    counts = [funnel.candidates] + [r.count for r in funnel.rows] + [funnel.kept]
    colors = ["#8C8C8C"] + ["#C44E52"] * len(funnel.rows) + ["#55A868"]
    y = range(len(labels))
    ax.barh(y, counts, color=colors)
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    for i, c in enumerate(counts):
        ax.text(c, i, f" {c:,} ({c / funnel.candidates:.1%})", va="center", fontsize=9)
    ax.set_xlim(0, funnel.candidates * 1.3)
    ax.set_xlabel("records")
    ax.set_title("Funnel: candidates → rejected per stage and reason → kept")


def draw_lengths(fig, stats: ReportStats) -> None:
    """One row per language (its own unit and bins: words and characters do not share an axis),
    one column per field."""
    langs = list(stats.lengths[FIELDS[0]])
    axes = fig.subplots(len(langs), len(FIELDS), squeeze=False)
    for row, lang in zip(axes, langs):
        unit = "characters" if lang == "zh" else "words"
        color = COLORS.get(lang, OTHER_COLORS[0])
        for ax, name in zip(row, FIELDS):
            hist = stats.lengths[name][lang]
            ax.bar(range(len(hist.counts)), hist.counts, width=0.85, color=color)
            labels = hist.labels()
            step = max(1, math.ceil(len(labels) / 8))
            ax.set_xticks(range(0, len(labels), step), labels[::step], rotation=45, ha="right", fontsize=8)
            ax.set_title(f"{name} ({lang})" if len(langs) > 1 else name)
            ax.set_xlabel(unit)
            ax.set_ylabel("records")
            _whole_numbers(ax.yaxis)
    fig.suptitle("Length (words for English, characters for Chinese)")
    fig.tight_layout()


def _whole_numbers(axis) -> None:
    """Counts are whole: no 0.5 ticks on an axis of records."""
    from matplotlib.ticker import MaxNLocator
    axis.set_major_locator(MaxNLocator(integer=True))


def draw_bars(fig, counts: dict[str, int], title: str, xlabel: str) -> None:
    ax = fig.add_subplot()
    names = list(counts)
    values = [counts[k] for k in names]
    total = sum(values) or 1
    ax.barh(range(len(names)), values, color=[COLORS.get(k, "#8C8C8C") for k in names])
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,} ({v / total:.1%})", va="center", fontsize=9)
    ax.set_xlim(0, max(values + [1]) * 1.35)
    ax.set_xlabel(xlabel)
    ax.set_title(title)


def draw_rouge(fig, rouge: RougeStats) -> None:
    ax = fig.add_subplot()
    hist = rouge.histogram
    ax.bar(hist.edges[:-1], hist.counts, width=1 / len(hist.counts), align="edge", color="#4C72B0",
           edgecolor="white")
    ax.set_xlim(0, 1)
    ax.set_xlabel("ROUGE-L F-measure to " + rouge.against.split(" (")[0])
    ax.set_ylabel("instructions")
    _whole_numbers(ax.yaxis)
    scope = (f"a uniform sample of {len(rouge.scores):,} of {rouge.n_total:,}" if rouge.sampled
             else f"all {len(rouge.scores):,} instructions, exact")
    ax.set_title(f"ROUGE-L to the most similar instruction ({scope})", fontsize=10)
    ax.axvline(rouge.median, color="#C44E52", linestyle="--", linewidth=1)
    ax.text(rouge.median, max(hist.counts) * 0.95, f" median {rouge.median:.2f}", color="#C44E52",
            fontsize=8)


def draw_verb_noun(fig, pairs, lang: str) -> None:
    """The paper's Figure 2: an inner ring of the top verbs, an outer ring of each verb's top
    objects (the rest of the verb's count left blank)."""
    ax = fig.add_subplot()
    palette = _palette(len(pairs))
    inner = [count for _, count, _ in pairs]
    outer, outer_colors, outer_labels = [], [], []
    for (verb, count, nouns), color in zip(pairs, palette):
        shown = 0
        for noun, n in nouns:
            outer.append(n)
            outer_colors.append(_lighter(color, 0.45))
            outer_labels.append(noun)
            shown += n
        if count > shown:
            outer.append(count - shown)
            outer_colors.append("white")
            outer_labels.append("")
    total = sum(inner)
    wedges, _ = ax.pie(inner, radius=0.62, colors=palette, startangle=90, counterclock=False,
                       wedgeprops={"width": 0.38, "edgecolor": "white", "linewidth": 0.8})
    _ring_labels(ax, wedges, [v for v, _, _ in pairs], inner, total, 0.43, 9, min_share=0.012)
    wedges, _ = ax.pie(outer, radius=1.0, colors=outer_colors, startangle=90, counterclock=False,
                       wedgeprops={"width": 0.38, "edgecolor": "white", "linewidth": 0.5})
    _ring_labels(ax, wedges, outer_labels, outer, total, 0.81, 7, min_share=0.006)
    name = {"en": "English", "zh": "Chinese"}.get(lang, lang)
    ax.set_title(f"{name}: the {len(pairs)} most common leading verbs and their top direct objects",
                 fontsize=10)
    ax.set_aspect("equal")
    ax.set_xlim(-1.2, 1.2)          # the rings reach 1.0; the margin holds the outer labels' ends
    ax.set_ylim(-1.2, 1.2)


def _ring_labels(ax, wedges, labels, values, total, radius, size, min_share) -> None:
    """Each label inside its wedge, turned along the radius; wedges too thin for text stay bare."""
    for wedge, label, value in zip(wedges, labels, values):
        if not label or value / max(total, 1) < min_share:
            continue
        angle = (wedge.theta1 + wedge.theta2) / 2
        x, y = radius * math.cos(math.radians(angle)), radius * math.sin(math.radians(angle))
        rotation = (angle + 180) % 360 - 180           # in [-180, 180); keep text upright
        if rotation > 90:
            rotation -= 180
        elif rotation < -90:
            rotation += 180
        ax.text(x, y, label, ha="center", va="center", rotation=rotation, rotation_mode="anchor",
                fontsize=size)


def _palette(n: int) -> list:
    import matplotlib
    cmap = matplotlib.colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]


def _lighter(color, amount: float):
    r, g, b = color[:3]
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def draw_judge(fig, hist: Histogram) -> None:
    ax = fig.add_subplot()
    ax.bar([int(e) for e in hist.edges[:-1]], hist.counts, color="#8172B3")
    ax.set_xticks([int(e) for e in hist.edges[:-1]])
    ax.set_xlabel("judge score")
    ax.set_ylabel("records")
    _whole_numbers(ax.yaxis)
    ax.set_title("Judge scores of the kept records")


def draw_tokens(fig, usage: Usage) -> None:
    ax = fig.add_subplot()
    stages = list(usage.tokens_per_stage)
    prompt = [usage.tokens_per_stage[s].get("prompt", 0) for s in stages]
    completion = [usage.tokens_per_stage[s].get("completion", 0) for s in stages]
    ax.barh(range(len(stages)), prompt, color="#4C72B0", label="prompt")
    ax.barh(range(len(stages)), completion, left=prompt, color="#DD8452", label="completion")
    ax.set_yticks(range(len(stages)), stages)
    ax.invert_yaxis()
    ax.set_xlabel("tokens (paid requests)")
    ax.legend(fontsize=8)
    ax.set_title("Tokens per request stage")
