"""The pages of `numpy-lstm inspect`, drawn from `numpy_lstm.inspection`'s arrays.

report.html: one review, its figures drawn in the browser by numpy_lstm/static/inspect.js from
the numbers the page carries (every unit of every layer and direction, hover for the values);
errors.html: the test reviews the model gets most confidently wrong, as written. Each is one
self-contained file (numpy_lstm/page.py): nothing fetched, nothing needed beyond the package.
"""
import os

import numpy as np

from .attribution import MAX_STEPS, TOLERANCE
from .inspection import STATES
from .page import colour_scale, escape, float32_base64, numbers, review_html, write_page


def write_report(ins, out_dir, run_dir):
    """Write out_dir/report.html for one Inspection; returns the page's path."""
    n = len(ins.attributions)
    cfg = ins.model_config
    padding = len(ins.ids) - n
    member = " Member 1 of the ensemble." if ins.members > 1 else ""
    of_member = " for member 1 of the ensemble" if ins.members > 1 else ""
    parts = [f"<h1>Inside the model of {escape(run_dir)}</h1>", _verdict(ins), f"<p>{escape(_describe(ins))}</p>",
             "<p>Every figure can be hovered: the tooltip gives the word, its step and the value under the "
             "pointer. Long reviews scroll sideways.</p>"]

    parts.append("<h2>1. The review as the model read it</h2>")
    parts.append("<p>The review as written. Each word the model read is coloured by its integrated-gradients "
                 "attribution (section 4): green pushed the verdict towards positive, red towards negative, the "
                 "stronger the colour the larger the push. Grey words never reached the model, and the marks "
                 "between words are not read at all; hover over a word for what the run's cleaning made of it. "
                 "Dotted words were read as the unknown-word id.</p>")
    parts += [colour_scale(ins.attributions), review_html(ins.reading, ins.text, ins.attributions, ins.occlusion)]
    if padding:
        parts.append(f"<p>Without masking the model also read {padding} padding steps before the first word "
                     f"(the review is pre-padded to {len(ins.ids)} steps, as in the tutorial).</p>")
    parts.append(_top_words_table(ins))

    parts.append("<h2>2. The running verdict</h2>")
    if ins.running_probability is None:
        parts.append(f"<p class='note'>Not shown for this model. {escape(ins.running_note)}</p>")
    else:
        parts.append("<p>The Dense layer read after every word: sigmoid(dense(h<sub>t</sub>)), how the opinion "
                     "moves as the network reads. Look for the words where the line jumps, and at where it "
                     "ends: the last point is the model's probability"
                     + (" (for the ensemble, the mean of the members' logits after each word)" if ins.members > 1
                        else "")
                     + (" (with two views, the mixed logit of the LSTM after each word and the n-gram view of the "
                        "words so far)" if ins.two_views is not None else "") + ".</p>")
        parts.append("<div id='running'></div><div class='figure-key' id='running-key'></div>")

    parts.append("<h2>3. Gates, candidate, cell state and output of every unit</h2>")
    parts.append(f"<p>Words x units heatmaps of one step's quantities (reference.py's names): the input gate "
                 f"i, the forget gate f, the candidate g, the output gate o, the cell state c and the output "
                 f"h = o tanh(c), for all {cfg['units']} units{_each_view(cfg)}; the buttons choose the quantity. "
                 f"Rows are ranked by importance to this verdict, gradient times activation: the sum over the "
                 f"words of |d logit / d h<sub>t</sub> &middot; h<sub>t</sub>|, where the gradient is what reaches "
                 f"h<sub>t</sub> from the layer that reads it (for the layer the Dense layer reads, |dense weight| "
                 f"x activation, the unit's share of the logit). Look at the top rows' h and c: a unit that tracks "
                 f"the sentiment changes sign at the words that carry it; its forget gate f is the share of its "
                 f"memory kept at each word (near 1, a word's trace lasts many words; at 0.7, a few). Click a row "
                 f"to follow one unit: the line chart under the heatmap gives all six of its quantities. Computed "
                 f"by the plain reference LSTM (numpy_lstm/reference.py) on the model's weights{of_member}.</p>")
    for j, view in enumerate(ins.views):
        parts.append(f"<h3>{escape(_view_name(view, cfg))}</h3><div class='states' id='states-{j}'></div>")

    parts.append("<h2>4. Word attributions</h2>")
    parts.append("<p>Integrated gradients on the embedded vectors: each word's share of logit(review) - "
                 "logit(baseline), the baseline being the review with every word's vector set to zero"
                 + (" (the padding left as it is)" if padding else "") + ", integrated over the straight path "
                 f"between them by the trapezoidal rule ({ins.ig_steps} steps). Occlusion, a second view: the "
                 "logit minus the logit of the review without that word. Where the two disagree, the word's "
                 "effect depends on its neighbours."
                 + (" For the ensemble, the mean of the members' attributions: the attributions of the mean "
                    "logit." if ins.members > 1 else "")
                 + (" With two views, a word's attribution is a times its integrated gradients in the LSTM plus "
                    "its exact share of the n-gram view (linear: each gram's c r w split equally among the words "
                    "of its occurrences; the baseline, a review without words, has no grams); the table in "
                    "section 1 gives both parts." if ins.two_views is not None else "") + "</p>")
    parts.append(_completeness(ins))
    parts.append("<h3>Integrated gradients</h3><div id='attributions'></div>"
                 "<h3>Occlusion</h3><div id='occlusion'></div>")

    parts.append("<h2>5. Gradient through time</h2>")
    parts.append("<p>The norms of d logit / d c<sub>t</sub> (each layer and direction) and of d logit / d "
                 "x<sub>t</sub> (the word vectors) at every step, on a log scale: how much of the gradient that "
                 "trains the network reaches each step. Look at how fast it falls from the last word back to the "
                 "first. " + (
                     f"The grey steps are the {padding} padding steps the unmasked model reads before the first "
                     "word, drawn narrow: they cost time forwards and backwards and carry no word. " if padding
                     else "")
                 + member + " A norm of exactly 0 leaves a gap in its line: no gradient reaches that step (with "
                   "max pooling a unit passes none to the steps it reads after its maximum; the model's float32 "
                   "loops also flush values below the smallest normal number to zero).</p>")
    parts.append("<div id='gradients'></div><div class='figure-key' id='gradients-key'></div>")
    return write_page(os.path.join(out_dir, "report.html"), "numpy-lstm inspect", parts, _figure_data(ins))


def _figure_data(ins):
    """The numbers numpy_lstm/static/inspect.js draws (see write_report)."""
    n = len(ins.attributions)
    series = [{"label": "d logit / d c_t" + _view_suffix(view, ins.model_config),
               "values": numbers(np.linalg.norm(view.dc, axis=1))} for view in ins.views]
    series.append({"label": "d logit / d x_t (word vectors)", "values": numbers(ins.dx_norm), "dashed": True})
    return {"words": ins.reading.tokens, "steps": len(ins.ids),
            "running": None if ins.running_probability is None else numbers(ins.running_probability),
            "attributions": numbers(ins.attributions), "occlusion": numbers(ins.occlusion), "gradients": series,
            "views": [{"units": len(view.score), "score": numbers(view.score),
                       "states": {name: float32_base64(getattr(view, name)[-n:]) for name in STATES}}
                      for view in ins.views]}


def write_errors_report(items, out_dir, run_dir, total):
    """Write out_dir/errors.html: items, a list of (Inspection, label, test index), most confident
    error first, out of `total` test reviews. Returns the page's path."""
    parts = [f"<h1>The test reviews {escape(run_dir)} gets most confidently wrong</h1>",
             f"<p>{len(items)} of the {total} official test reviews, the most confident error first, each as its "
             "author wrote it. The words the model read are coloured by their integrated-gradients attribution "
             "(green: towards positive, red: towards negative; each review's strongest word has the strongest "
             "colour); grey words never reached the model (stopwords, unknown words, words cut by maxlen). "
             "Hover over a word for its numbers.</p>"]
    if not items:
        parts.append("<p>The model gets every test review right.</p>")
    for rank, (ins, label, index) in enumerate(items, start=1):
        truth = "positive" if label == 1 else "negative"
        parts.append(f"<h2>{rank}. Test review {index}: true label: {truth}; the model: P(positive) = "
                     f"{_probability(ins.probability)}</h2>")
        parts += [colour_scale(ins.attributions), review_html(ins.reading, ins.text, ins.attributions, ins.occlusion)]
        parts.append(_completeness(ins))
        parts.append(_top_words_table(ins, k=5))
    return write_page(os.path.join(out_dir, "errors.html"), "numpy-lstm inspect --errors", parts)


def _probability(p):
    """Two decimals, four near 0 and 1 (where two would say 0.00 or 1.00)."""
    return f"{p:.2f}" if 0.01 <= p <= 0.99 else f"{p:.4f}"


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


def _view_suffix(view, cfg):
    suffix = f", layer {view.layer + 1}" if cfg["num_layers"] > 1 else ""
    return suffix + (f", {view.direction}" if cfg["bidirectional"] else "")


def _view_name(view, cfg):
    name = f"Layer {view.layer + 1}" if cfg["num_layers"] > 1 else "The LSTM"
    if cfg["bidirectional"]:
        name += f", {view.direction} direction"
        if view.direction == "backward":
            name += " (it reads the words from the last to the first; shown in the review's order)"
    return name


def _top_words_table(ins, k=8):
    """The words with the largest attributions either way, with both views' numbers."""
    a, words = ins.attributions, ins.reading.tokens
    order = np.argsort(-np.abs(a), kind="stable")[:k]
    shares = None if ins.two_views is None else ins.two_views.attributions
    rows = "".join(f"<tr><td>{escape(words[j])}</td><td>{j + 1}</td><td>{a[j]:+.4f}</td>"
                   + ("" if shares is None else f"<td>{a[j] - shares[j]:+.4f}</td><td>{shares[j]:+.4f}</td>")
                   + f"<td>{ins.occlusion[j]:+.4f}</td></tr>" for j in order)
    views = "" if shares is None else "<th>of which the LSTM view</th><th>of which the n-gram view</th>"
    return (f"<table><tr><th>word</th><th>position</th><th>attribution</th>{views}<th>occlusion</th></tr>"
            + rows + "</table>")


def _completeness(ins):
    change = ins.logit - ins.baseline_logit
    ok = ins.completeness_error < TOLERANCE
    verdict = ("under 1%" if ok else "<span class='bad'>above 1%: the path needs more steps than "
               f"{MAX_STEPS}</span>")
    return (f"<p>Completeness: the attributions add up to {ins.attributions.sum():+.5f}; logit(review) - "
            f"logit(baseline) = {ins.logit:+.5f} - ({ins.baseline_logit:+.5f}) = {change:+.5f}; relative error "
            f"{ins.completeness_error:.2e}, {verdict} ({ins.ig_steps} steps).</p>")
