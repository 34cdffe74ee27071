"""A self-contained HTML page: one file, opened straight from disk, nothing fetched.

Its style and scripts are the package's files in numpy_lstm/static/, copied into the page. The
numbers its scripts draw travel in the page as JSON, in a <script type="application/json">
element, with "<", ">" and "&" written as \\u escapes: no text of the user's (a review, a word,
a path) can end the element, and the scripts put text on screen with fillText and textContent
only, never as markup. Text in the HTML itself goes through `escape`.
"""
import base64
import html
import importlib.resources
import json
import math
import os
import re
import stat

import numpy as np

from .errors import NumpyLSTMError
from .fileio import write_text
from .reading import CUT, READ, SKIPPED, STOPWORD, UNKNOWN

_STATUS_TITLE = {
    READ: "read", UNKNOWN: "read as the unknown-word id", STOPWORD: "not read: a stopword",
    SKIPPED: "not read: not in the vocabulary", CUT: "not read: before the last maxlen words",
}
GREEN, RED = "26,152,80", "215,48,39"
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def static(name):
    """The text of numpy_lstm/static/<name>."""
    return importlib.resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def escape(text):
    return html.escape(str(text), quote=True)


def numbers(values):
    """Floats for JSON, None where a value is not finite (JSON has no NaN or infinity)."""
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=np.float64).ravel()]


def float32_base64(array):
    """An array as base64 of its float32 values, little-endian, in C order: a quarter of JSON's
    size for the states, which the page decodes into a Float32Array."""
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def json_script(element_id, data):
    """data as a JSON element of the page, safe whatever its strings hold."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f"<script type='application/json' id='{element_id}'>{text}</script>"


def write_page(path, title, parts, data=None):
    """Write the page: parts, a list of HTML strings; data, the numbers of the figures drawn by
    numpy_lstm/static/inspect.js (None: a page without scripts)."""
    scripts = ""
    if data is not None:
        code = static("figures.js") + "\n" + static("inspect.js")
        scripts = (json_script("inspect-data", data) + "\n<script>\n" + code + "</script>\n"
                   "<noscript><p class='bad'>The figures of this page are drawn by its JavaScript: allow scripts "
                   "for this file to see them.</p></noscript>\n")
    page = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>{GENERATOR}<title>{escape(title)}</title>"
            f"<style>\n{static('inspect.css')}</style></head><body>\n" + "\n".join(parts) + "\n" + scripts
            + "</body></html>\n")
    refuse_unless_ours(path)
    write_text(path, page)
    return path


# The mark of a page numpy-lstm wrote, in its first bytes: a page is replaced only if it has it
# (or the title every earlier page had), so that `--out` on a folder of the user's can never
# overwrite a file of theirs that happens to be called report.html.
GENERATOR = "<meta name='generator' content='numpy-lstm'>"
EARLIER_MARK = "<title>numpy-lstm inspect"


def refuse_unless_ours(path):
    """Raise NumpyLSTMError if `path` exists and is not a page numpy-lstm wrote: a link, a folder,
    a FIFO, or a file without the page's mark in its first 1 KB."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    ours = False
    if stat.S_ISREG(info.st_mode):
        with open(path, "rb") as f:
            head = f.read(1024).decode("utf-8", "replace")
        ours = GENERATOR in head or EARLIER_MARK in head
    if not ours:
        raise NumpyLSTMError(f"{path} exists and is not a page numpy-lstm wrote; it is left as it is: "
                             "choose another --out")


def _colour(a, scale):
    strength = min(1.0, abs(a) / scale) if scale > 0 else 0.0
    return f"rgba({GREEN if a > 0 else RED},{0.85 * strength:.3f})"


def review_html(reading, text, attributions, occlusion):
    """The review as written, each word the model read coloured by its attribution (n,), the
    other words greyed, the rest of the text (punctuation, line breaks) as it is; the cleaned
    words when the reading cannot trace its words in the text. Hovering a word says what
    became of it."""
    scale = float(np.max(np.abs(attributions), initial=0.0))
    read_at = {int(k): j for j, k in enumerate(reading.positions)}
    words = []
    for k, (word, status) in enumerate(zip(reading.words, reading.status)):
        if k in read_at:
            j = read_at[k]
            a = attributions[j]
            title = (f"“{word}”: {_STATUS_TITLE[status]} (id {reading.word_ids[k]}), word {j + 1} of "
                     f"{len(read_at)}: attribution {a:+.4f}, occlusion {occlusion[j]:+.4f}")
            css = "word unknown" if status == UNKNOWN else "word"
            style = f" style='background:{_colour(a, scale)}'"
        else:
            title, css, style = f"“{word}”: {_STATUS_TITLE[status]}", "word dropped", ""
        words.append((f"<span class='{css}'{style} title='{escape(title)}'>", word))
    if reading.spans is None:
        body = " ".join(opening + escape(word) + "</span>" for opening, word in words)
    else:
        pieces, end = [], 0
        for (opening, _), (start, stop) in zip(words, reading.spans):
            pieces += [_between(text[end:start]), opening, escape(text[start:stop]), "</span>"]
            end = stop
        pieces.append(_between(text[end:]))
        body = "".join(pieces)
    return "<div class='review'>" + body + "</div>"


def _between(text):
    """Text between words, escaped; the reviews' "<br />" tags as line breaks."""
    return "<br>".join(escape(part) for part in _BREAK.split(text))


def colour_scale(attributions):
    """The legend of review_html's colours."""
    scale = float(np.max(np.abs(attributions), initial=0.0))
    bar = f"linear-gradient(to right, rgba({RED},0.85), rgba({RED},0), rgba({GREEN},0), rgba({GREEN},0.85))"
    return (f"<div class='scale'><span>attribution:</span><span>{-scale:+.3f} (towards negative)</span>"
            f"<span class='bar' style='background:{bar}'></span><span>{scale:+.3f} (towards positive)</span>"
            "<span>&nbsp;&nbsp;<span class='word dropped'>grey</span>: not read</span></div>")
