"""The pages of `numpy-lstm inspect`: self-contained HTML drawn from `numpy_lstm.inspection`'s arrays.

One file per page, opened straight from disk: styles in the page, figures embedded as base64
PNGs (and written beside the page too), no JavaScript, nothing fetched from the network. The
figures need matplotlib (the `plot` extra); without it the page says so and keeps the rest.
"""
import base64
import html
import io
import math
import os

import numpy as np

from . import inspection
from .fileio import atomic_path, write_text

STYLE = """
body { font-family: Georgia, serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222;
       line-height: 1.45; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
.review { font-family: sans-serif; font-size: 1.05em; line-height: 2.1; border: 1px solid #ddd;
          padding: 0.6em 0.8em; background: #fff; }
.word { padding: 0.1em 0.15em; border-radius: 3px; }
.dropped { color: #aaa; }
.unknown { text-decoration: underline dotted; }
.verdict { font-size: 1.15em; font-weight: bold; }
.note { color: #555; font-style: italic; }
.bad { color: #b00; font-weight: bold; }
table { border-collapse: collapse; font-family: sans-serif; font-size: 0.9em; }
td, th { padding: 0.15em 0.6em; border-bottom: 1px solid #eee; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.figure { overflow-x: auto; } .figure img { max-width: none; }
"""

_STATUS_TITLE = {
    inspection.READ: "read", inspection.UNKNOWN: "read as the unknown-word id",
    inspection.STOPWORD: "dropped: a stopword", inspection.SKIPPED: "dropped: not in the vocabulary",
    inspection.CUT: "not read: before the last maxlen words",
}


def write_report(ins, out_dir, run_dir):
    """Write out_dir/report.html and its figures for one Inspection; returns the page's path."""
    figures = _Figures(out_dir)
    n = len(ins.attributions)
    words = ins.reading.tokens
    cfg = ins.model_config
    padding = len(ins.ids) - n
    parts = [f"<h1>Inside the model of {_e(run_dir)}</h1>", _verdict(ins), f"<p>{_e(_describe(ins))}</p>"]

    parts.append("<h2>1. The review as the model read it</h2>")
    parts.append("<p>Each word read is coloured by its integrated-gradients attribution (section 4): green "
                 "pushed the verdict towards positive, red towards negative, the stronger the colour the "
                 "larger the push (the strongest word has the strongest colour). Grey words never reached "
                 "the model (hover over a word for why); dotted ones were read as the unknown-word id.</p>")
    parts.append(_review_html(ins))
    if padding:
        parts.append(f"<p>Without masking the model also read {padding} padding steps before the first word "
                     f"(the review is pre-padded to {len(ins.ids)} steps, as in the tutorial).</p>")
    parts.append(_top_words_table(ins))

    parts.append("<h2>2. The running verdict</h2>")
    if ins.running_probability is None:
        parts.append(f"<p class='note'>Not shown for this model. {_e(ins.running_note)}</p>")
    else:
        parts.append("<p>The Dense layer read after every word: sigmoid(dense(h<sub>t</sub>)), how the "
                     "opinion moves as the network reads. Its last value is the model's probability"
                     + (" (for the ensemble, the mean of the members' logits after each word)" if ins.members > 1
                        else "")
                     + (" (with two views, the mixed logit of the LSTM after each word and the n-gram view of the "
                        "words so far)" if ins.two_views is not None else "") + ".</p>")
        parts.append(figures.add("running_verdict.png", _plot_running, words, ins.running_probability))

    parts.append("<h2>3. Gates and cell state</h2>")
    parts.append(f"<p>Words x units heatmaps of the input gate i, the forget gate f, the output gate o and the "
                 f"cell state c, for the {min(inspection.TOP_UNITS, cfg['units'])} units (of {cfg['units']}) that "
                 f"matter most to this verdict{_each_view(cfg)}. Units are ranked by gradient times activation, "
                 f"the sum over the words of |d logit / d h<sub>t</sub> &middot; h<sub>t</sub>|, where the "
                 f"gradient is what reaches h<sub>t</sub> from the layer that reads it: for the layer the Dense "
                 f"layer reads, |dense weight| x activation, the unit's share of the logit (each unit's score is "
                 f"beside its number). Computed by the plain "
                 f"reference LSTM (numpy_lstm/reference.py) on the model's weights"
                 + (", for member 1 of the ensemble" if ins.members > 1 else "") + ".</p>")
    for view in ins.views:
        name = f"gates_layer{view.layer + 1}_{view.direction}.png"
        parts.append(f"<h3>{_e(_view_name(view, cfg))}</h3>")
        parts.append(figures.add(name, _plot_gates, words, view))

    parts.append("<h2>4. Word attributions</h2>")
    parts.append("<p>Integrated gradients on the embedded vectors: each word's share of logit(review) - "
                 "logit(baseline), the baseline being the review with every word's vector set to zero"
                 + (" (the padding left as it is)" if padding else "") + ", integrated over the straight path "
                 f"between them by the trapezoidal rule ({ins.ig_steps} steps). Occlusion, a second view: the "
                 "logit minus the logit of the review without that word."
                 + (" For the ensemble, the mean of the members' attributions: the attributions of the mean "
                    "logit." if ins.members > 1 else "")
                 + (" With two views, a word's attribution is a times its integrated gradients in the LSTM plus "
                    "its exact share of the n-gram view (linear: each gram's c r w split equally among the words "
                    "of its occurrences; the baseline, a review without words, has no grams); the table in "
                    "section 1 gives both parts." if ins.two_views is not None else "") + "</p>")
    parts.append(_completeness(ins))
    parts.append(figures.add("attributions.png", _plot_attributions, words, ins.attributions, ins.occlusion))

    parts.append("<h2>5. Gradient through time</h2>")
    parts.append("<p>The norms of d logit / d c<sub>t</sub> (each layer and direction) and of d logit / d "
                 "x<sub>t</sub> (the word vectors) at every step, on a log scale: where the gradient that "
                 "trains the network fades. " + (
                     f"The shaded steps are the {padding} padding steps the unmasked model reads before the "
                     "first word: they cost time forwards and backwards and carry no word, and the curves show how "
                     "much gradient still reaches them. " if padding else "")
                 + ("Member 1 of the ensemble. " if ins.members > 1 else "")
                 + "Values below float32's smallest normal number show as gaps (the model's loops flush "
                   "them to zero).</p>")
    parts.append(figures.add("gradient_through_time.png", _plot_gradients, ins))
    return _write_page(out_dir, "report.html", "numpy-lstm inspect", parts, figures)


def write_errors_report(items, out_dir, run_dir, total):
    """Write out_dir/errors.html: items, a list of (Inspection, label, test index), most confident
    error first, out of `total` test reviews. Returns the page's path."""
    parts = [f"<h1>The test reviews {_e(run_dir)} gets most confidently wrong</h1>",
             (f"<p>{len(items)} of the {total} official test reviews, the most confident error first. Words "
              "are coloured by their integrated-gradients attribution (green: towards positive, red: towards "
              "negative; grey: never read; each review's strongest word has the strongest colour); hover "
              "over a word for its numbers.</p>")]
    if not items:
        parts.append("<p>The model gets every test review right.</p>")
    for rank, (ins, label, index) in enumerate(items, start=1):
        truth = "positive" if label == 1 else "negative"
        parts.append(f"<h2>{rank}. Test review {index}: {truth}, P(positive) = {ins.probability:.4f}</h2>")
        parts.append(_review_html(ins))
        parts.append(_completeness(ins))
        parts.append(_top_words_table(ins, k=5))
    return _write_page(out_dir, "errors.html", "numpy-lstm inspect --errors", parts, _Figures(out_dir))


def _write_page(out_dir, name, title, parts, figures):
    if figures.missing:
        parts.insert(1, "<p class='note'>The figures need matplotlib: pip install 'numpy-lstm[plot]'.</p>")
    page = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    path = os.path.join(out_dir, name)
    write_text(path, page)
    return path


def _e(text):
    return html.escape(str(text), quote=True)


def _verdict(ins):
    label = "positive" if ins.probability > 0.5 else "negative"
    return f"<p class='verdict'>P(positive) = {ins.probability:.4f}: {label} (logit {ins.logit:+.3f})</p>"


def _describe(ins):
    cfg = ins.model_config
    rnn = f"{'Bidirectional ' if cfg['bidirectional'] else ''}LSTM({cfg['units']})"
    stack = f"{cfg['num_layers']} x {rnn}" if cfg["num_layers"] > 1 else rnn
    readout = "the last state" if cfg["pooling"] == "last" else f"{cfg['pooling']} pooling over time"
    text = (f"The model: Embedding({cfg['vocab_size']}, {cfg['embed_dim']}) -> {stack} -> {readout} -> "
            f"Dense(1, sigmoid), {'with' if cfg['mask_zero'] else 'without'} masking.")
    if ins.members > 1:
        text += (f" An ensemble of {ins.members} such models whose logits are averaged: the probability, the "
                 "running verdict and the attributions are the ensemble's; the gates, cell states and "
                 "gradients are those of member 1.")
    two = ins.two_views
    if two is not None:
        a, c, b = two.mix
        text += (f" The model has two views of the review: this LSTM and an n-gram view (naive-Bayes-weighted "
                 f"logistic regression on the review's distinct grams of up to {two.n} words), mixed as logit = "
                 f"{a:.3f} z_lstm + {c:.3f} z_ngrams {b:+.3f}. On this review the LSTM view contributes "
                 f"{two.lstm:+.3f} and the n-gram view {two.ngrams:+.3f} to the logit. The probability, the running "
                 "verdict and the attributions are the mixed model's; the gates, cell states and gradients are "
                 "the LSTM's.")
    return text


def _each_view(cfg):
    if cfg["num_layers"] > 1 or cfg["bidirectional"]:
        return ", in each layer and direction"
    return ""


def _view_name(view, cfg):
    name = f"Layer {view.layer + 1}" if cfg["num_layers"] > 1 else "The LSTM"
    if cfg["bidirectional"]:
        name += f", {view.direction} direction"
        if view.direction == "backward":
            name += " (it reads the words from the last to the first; shown in the review's order)"
    return name


def _color(a, scale):
    strength = min(1.0, abs(a) / scale) if scale > 0 else 0.0
    rgb = "26,152,80" if a > 0 else "215,48,39"
    return f"rgba({rgb},{0.85 * strength:.3f})"


def _review_html(ins):
    """The cleaned review, each word read coloured by its attribution, the others greyed."""
    reading = ins.reading
    scale = float(np.max(np.abs(ins.attributions), initial=0.0))
    read_at = {int(k): j for j, k in enumerate(reading.positions)}
    spans = []
    for k, (word, status) in enumerate(zip(reading.words, reading.status)):
        if k in read_at:
            j = read_at[k]
            a, occ = ins.attributions[j], ins.occlusion[j]
            title = (f"{_STATUS_TITLE[status]} (id {reading.word_ids[k]}): attribution {a:+.4f}, "
                     f"occlusion {occ:+.4f}")
            css = "word unknown" if status == inspection.UNKNOWN else "word"
            spans.append(f"<span class='{css}' style='background:{_color(a, scale)}' title='{_e(title)}'>"
                         f"{_e(word)}</span>")
        else:
            spans.append(f"<span class='word dropped' title='{_e(_STATUS_TITLE[status])}'>{_e(word)}</span>")
    return "<div class='review'>" + " ".join(spans) + "</div>"


def _top_words_table(ins, k=8):
    """The words with the largest attributions either way, with both views' numbers."""
    a, words = ins.attributions, ins.reading.tokens
    order = np.argsort(-np.abs(a), kind="stable")[:k]
    shares = None if ins.two_views is None else ins.two_views.attributions
    rows = "".join(f"<tr><td>{_e(words[j])}</td><td>{j + 1}</td><td>{a[j]:+.4f}</td>"
                   + ("" if shares is None else f"<td>{a[j] - shares[j]:+.4f}</td><td>{shares[j]:+.4f}</td>")
                   + f"<td>{ins.occlusion[j]:+.4f}</td></tr>" for j in order)
    views = "" if shares is None else "<th>of which the LSTM view</th><th>of which the n-gram view</th>"
    return (f"<table><tr><th>word</th><th>position</th><th>attribution</th>{views}<th>occlusion</th></tr>"
            + rows + "</table>")


def _completeness(ins):
    change = ins.logit - ins.baseline_logit
    ok = ins.completeness_error < inspection.TOLERANCE
    verdict = ("under 1%" if ok else "<span class='bad'>above 1%: the path needs more steps than "
               f"{inspection.MAX_STEPS}</span>")
    return (f"<p>Completeness: the attributions add up to {ins.attributions.sum():+.5f}; logit(review) - "
            f"logit(baseline) = {ins.logit:+.5f} - ({ins.baseline_logit:+.5f}) = {change:+.5f}; relative error "
            f"{ins.completeness_error:.2e}, {verdict} ({ins.ig_steps} steps).</p>")


class _Figures:
    """PNG figures written into out_dir and embedded in the page."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.missing = False

    def add(self, name, draw, *args):
        """draw(plt, *args) -> a matplotlib Figure; returns the <img> tag ("" without matplotlib)."""
        plt = _pyplot()
        if plt is None:
            self.missing = True
            return ""
        fig = draw(plt, *args)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90)
        plt.close(fig)
        png = buffer.getvalue()
        with atomic_path(os.path.join(self.out_dir, name)) as tmp:
            with open(tmp, "wb") as f:
                f.write(png)
        data = base64.b64encode(png).decode("ascii")
        return f"<div class='figure'><img alt='{_e(name)}' src='data:image/png;base64,{data}'></div>"


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _width(n):
    """Figure width (inches) for n words along the x axis."""
    return min(max(7.0, 0.16 * n + 2.0), 30.0)


def _word_axis(ax, words):
    """Words as the x tick labels (every k-th one when there are many)."""
    every = max(1, math.ceil(len(words) / 150))
    ticks = np.arange(0, len(words), every)
    ax.set_xticks(ticks)
    ax.set_xticklabels([words[j] for j in ticks], rotation=90, fontsize=8)
    ax.set_xlim(-0.5, len(words) - 0.5)


def _plot_running(plt, words, probability):
    fig, ax = plt.subplots(figsize=(_width(len(words)), 3.2))
    ax.plot(np.arange(len(words)), probability, "-", color="#333", lw=1.2)
    ax.scatter(np.arange(len(words)), probability, c=probability, cmap="RdYlGn", vmin=0, vmax=1, s=14, zorder=3)
    ax.axhline(0.5, color="#999", lw=0.8, ls="--")
    ax.set_ylim(0, 1)
    ax.set_ylabel("P(positive)\nafter the word")
    _word_axis(ax, words)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _plot_gates(plt, words, view):
    n = len(words)
    units = view.top_units()
    panels = (("input gate i", view.i, "viridis", 0, 1), ("forget gate f", view.f, "viridis", 0, 1),
              ("output gate o", view.o, "viridis", 0, 1))
    limit = float(np.max(np.abs(view.c[-n:, units]), initial=1e-12))
    panels += (("cell state c", view.c, "RdBu_r", -limit, limit),)
    fig, axes = plt.subplots(4, 1, figsize=(_width(n) + 1.0, 1.2 + 4 * (0.22 * len(units) + 0.5)), sharex=True)
    for ax, (title, values, cmap, lo, hi) in zip(axes, panels):
        image = ax.imshow(values[-n:, units].T, aspect="auto", cmap=cmap, vmin=lo, vmax=hi,
                          interpolation="nearest")
        ax.set_yticks(np.arange(len(units)))
        ax.set_yticklabels([f"unit {u} ({view.score[u]:.2f})" for u in units], fontsize=7)
        ax.set_title(title, fontsize=9, loc="left")
        fig.colorbar(image, ax=ax, pad=0.01, fraction=0.03)
    _word_axis(axes[-1], words)
    fig.tight_layout()
    return fig


def _plot_attributions(plt, words, attributions, occlusion):
    fig, axes = plt.subplots(2, 1, figsize=(_width(len(words)), 5.2), sharex=True)
    x = np.arange(len(words))
    for ax, values, title in ((axes[0], attributions, "integrated gradients"),
                              (axes[1], occlusion, "occlusion: logit minus logit without the word")):
        ax.bar(x, values, color=np.where(values > 0, "#1a9850", "#d73027"), width=0.8)
        ax.axhline(0, color="#666", lw=0.6)
        ax.set_title(title, fontsize=9, loc="left")
        ax.grid(axis="y", alpha=0.3)
    _word_axis(axes[1], words)
    fig.tight_layout()
    return fig


def _plot_gradients(plt, ins):
    T, n = len(ins.ids), len(ins.attributions)
    cfg = ins.model_config
    steps = np.arange(1, T + 1)
    fig, ax = plt.subplots(figsize=(10, 4))
    for view in ins.views:
        label = "d logit / d c_t"
        if cfg["num_layers"] > 1:
            label += f", layer {view.layer + 1}"
        if cfg["bidirectional"]:
            label += f", {view.direction}"
        ax.plot(steps, _positive(np.linalg.norm(view.dc, axis=1)), lw=1.2, label=label)
    ax.plot(steps, _positive(ins.dx_norm), lw=1.2, color="k", ls="--", label="d logit / d x_t (word vectors)")
    if T > n:
        ax.axvspan(0.5, T - n + 0.5, color="#ddd", zorder=0, label="padding")
    ax.set_yscale("log")
    ax.set_xlabel("step t" + (f" (the words are steps {T - n + 1}-{T})" if T > n else ""))
    ax.set_ylabel("norm")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _positive(values):
    """Zeros as NaN: gaps on a log scale rather than a warning."""
    return np.where(values > 0, values, np.nan)
