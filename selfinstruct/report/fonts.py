"""The CJK font of the report: Han glyphs for the PNG figures and for the page itself.

The ``report`` extra installs ``noto-cjk-sans-otc`` (Noto Sans CJK Regular, one OpenType collection,
SIL Open Font License; about 19 MB installed). matplotlib reads it by file path (``figures``). The
page gets a subset of its Simplified Chinese face holding only the characters the page shows,
embedded as a data: URI (WOFF, ~100 KB for a few hundred characters), so Chinese records read
right even in a browser on a machine without a CJK font, with nothing fetched. Without the package
both fall back: matplotlib draws boxes and the page relies on the browser's fonts; the report says so.
"""
from __future__ import annotations

import functools
import io

SC_FACE = 2            # the collection's faces: JP, KR, SC, TC, HK, then the Mono ones
PAGE_FAMILY = "selfinstruct-cjk"


@functools.lru_cache(maxsize=None)
def cjk_font_file() -> str | None:
    """The Noto Sans CJK collection's path; None when the package is not installed."""
    try:
        import noto_cjk_sans_otc
    except ImportError:
        return None
    return str(noto_cjk_sans_otc.FONT_PATH)


def wide_chars(text: str) -> str:
    """The distinct characters of ``text`` from the CJK blocks on (U+2E80 and above: Han, kana,
    CJK punctuation, full-width forms), sorted: what a Latin font lacks."""
    return "".join(sorted({c for c in text if ord(c) >= 0x2E80}))


def subset_woff(chars: str) -> bytes | None:
    """A WOFF font of the Simplified Chinese face holding just ``chars``; None without the font
    package or without characters."""
    path = cjk_font_file()
    if not path or not chars:
        return None
    from fontTools import subset
    from fontTools.ttLib import TTFont
    font = TTFont(path, fontNumber=SC_FACE, lazy=True)
    options = subset.Options()
    options.layout_features = []      # plain glyphs: no vertical forms or locale variants needed
    options.hinting = False
    options.flavor = "woff"           # zlib-compressed; woff2 would need brotli
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=chars)
    subsetter.subset(font)
    buf = io.BytesIO()
    font.flavor = "woff"
    font.save(buf)
    return buf.getvalue()
