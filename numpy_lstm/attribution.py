"""Which words made a model's verdict on one review: integrated gradients and occlusion.

- Integrated gradients (Sundararajan, Taly and Yan, 2017) on the embedded vectors x (T, E):
  word t gets (x_t - x'_t) . integral over a in [0, 1] of d logit / d x_t at x' + a (x - x'),
  from the baseline x' = the review with every word's vector zeroed (padding, which an unmasked
  model reads too, stays as it is, so it gets no attribution). The attributions add up to
  logit(x) - logit(x') (completeness) up to the quadrature's error, which is measured. The
  model's own layers compute the gradients (`SentimentLSTM.forward_vectors` and
  `backward_vectors`), every point of the path in one batch. x_t is what the embedding gives
  (`Embedding.forward`): with a pair table, E[w_t] + G[bucket(w_{t-1}, w_t)] (+ its triple's
  row with trigrams), so a word's attribution covers its pair's vector as well as its own.
- Occlusion: logit(review) - logit(review without word t).

An ensemble's logit is the mean of its members' logits, so its attributions are the means of
the members' (both methods are linear in the function). A model of two views
(numpy_lstm/ngrams.py, logit = a z_lstm + c z_ngrams + b) adds to a times the LSTM's
attributions the n-gram view's exact ones (it is linear: each gram's c r_g w_g shared among the
steps it covers; its baseline, the empty review, has no grams).
Shapes: T steps the model reads (padding included), n words read, E embedding width.
"""
from typing import NamedTuple

import numpy as np

from .text import pad_sequences

# Completeness error above which integrated gradients take twice as many steps (up to MAX_STEPS).
TOLERANCE = 0.01
MAX_STEPS = 1024
# Rows per forward / backward pass: the 65 points of 64 steps in one batch; bounds the caches'
# memory when the steps double.
_CHUNK = 65
# ... and fewer when a pass of that many rows would hold more than this in its caches (a model
# of long reviews: at 100,000 steps one row's caches take hundreds of MB)
PASS_BYTES = 256 << 20


def rows_per_pass(member, T):
    """How many rows of T steps a forward + backward pass of the SentimentLSTM `member` runs at
    once: _CHUNK, or fewer, at least one, to keep its caches within PASS_BYTES. Per step and row
    it counts the input, and per layer and direction [x_t; 1; h_{t-1}], the gates and cells and
    their gradients (11 H), an overestimate."""
    cfg = member.config
    E, H = cfg["embed_dim"], cfg["units"]
    directions = 2 if cfg["bidirectional"] else 1
    per_step = E + cfg["num_layers"] * directions * (max(E, directions * H) + 1 + 11 * H)
    per_row = max(T, 1) * per_step * np.dtype(cfg["dtype"]).itemsize
    return int(max(1, min(_CHUNK, PASS_BYTES // per_row)))


def members(model):
    """The SentimentLSTMs of a model: an Ensemble's members, or the model itself."""
    return getattr(model, "members", [model])


class IntegratedGradients(NamedTuple):
    attributions: np.ndarray    # (T,), 0 at padding
    logit: float                # logit(x)
    baseline_logit: float       # logit(x'), every word's vector zeroed
    completeness_error: float   # |sum(attributions) - (logit - baseline_logit)| / |logit - baseline_logit|
    steps: int                  # intervals of the trapezoidal rule
    dx: np.ndarray              # (T, E) d logit / d x_t at the review itself (the first member's)


def integrated_gradients(model, ids, steps=64, tolerance=TOLERANCE, max_steps=MAX_STEPS):
    """Integrated gradients of the logit over the steps ids (T,) of one review (see the module).

    The integral runs by the trapezoidal rule over steps + 1 points of the path; the steps double
    until the completeness error is below `tolerance` (or reaches max_steps: the error says so).
    """
    while True:
        runs = [_path_gradients(m, ids, steps) for m in members(model)]
        attributions = np.mean([r[0] for r in runs], axis=0)
        logit, baseline_logit = (float(np.mean([r[i] for r in runs])) for i in (1, 2))
        change = logit - baseline_logit
        error = abs(attributions.sum() - change) / max(abs(change), 1e-12)
        if error < tolerance or steps >= max_steps:
            return IntegratedGradients(attributions, logit, baseline_logit, float(error), steps, runs[0][3])
        steps *= 2


def _path_gradients(member, ids, steps):
    """One SentimentLSTM's integrated gradients on ids (T,):
    (attributions (T,), logit, baseline logit, dx (T, E) at the review)."""
    x, _ = member.embedding.forward(ids[None])
    x = x[0]
    word = (ids != 0)[:, None]
    baseline = np.where(word, 0.0, x)
    delta = x - baseline
    alphas = np.linspace(0.0, 1.0, steps + 1)
    weights = np.full(steps + 1, 1.0 / steps)
    weights[[0, -1]] /= 2                      # the trapezoidal rule
    mask = ids[None] != 0 if member.config["mask_zero"] else None
    logits, integral, dx_end = [], np.zeros(x.shape), None
    chunk = rows_per_pass(member, len(ids))
    for lo in range(0, steps + 1, chunk):
        a = alphas[lo:lo + chunk]
        path = (baseline + a[:, None, None] * delta).astype(x.dtype)
        rows_mask = None if mask is None else np.repeat(mask, len(a), axis=0)
        chunk_logits, cache = member.forward_vectors(path, rows_mask)
        dx, _ = member.backward_vectors(np.ones_like(chunk_logits), cache)
        integral += np.tensordot(weights[lo:lo + chunk], dx, axes=1)
        logits.append(chunk_logits)
        dx_end = dx[-1]
    logits = np.concatenate(logits)
    return (delta * integral).sum(axis=1), float(logits[-1]), float(logits[0]), dx_end


def occlusion(model, ids, logit):
    """logit - the logit of the review without word t, for each word of ids (T,): (n,)."""
    words = ids[ids != 0]
    chunk = min(rows_per_pass(m, len(ids)) for m in members(getattr(model, "model", model)))
    logits = [np.zeros(0)]
    for lo in range(0, len(words), chunk):     # the rows a pass at a time: n x T ids can be large
        rows = pad_sequences([np.delete(words, t) for t in range(lo, min(lo + chunk, len(words)))], maxlen=len(ids))
        logits.append(model.forward(rows)[0])
    return logit - np.concatenate(logits)


class TwoViewShares(NamedTuple):
    """What each view of a TwoViews model gives one review (its logit is lstm + ngrams + mix[2])."""

    n: int                      # the view's longest gram
    mix: np.ndarray             # (3,) a, c, b
    lstm: float                 # a z_lstm
    ngrams: float               # c z_ngrams
    attributions: np.ndarray    # (n words,) the n-gram view's share of each word's attribution


def two_view_attributions(two, ids, ig):
    """The IntegratedGradients of a TwoViews' mixed logit on the steps ids (T,), given the LSTM's
    `ig`, and the TwoViewShares.

    The LSTM's are scaled by a and the n-gram view's exact shares (times c) added; the baseline
    logit is a times the LSTM's + c times the empty review's (the view's bias) + b. When the
    mixed change is smaller than the LSTM's, its completeness error is larger: the LSTM's
    integral then takes the steps that bring it under the tolerance.
    """
    a, c, b = two.mix
    z_view = float(two.view.logits(ids[None])[0])
    view_shares = c * two.view.token_shares(ids)
    while True:
        logit = a * ig.logit + c * z_view + b
        baseline = a * ig.baseline_logit + c * two.view.b + b
        attributions = a * ig.attributions + view_shares
        change = logit - baseline
        error = abs(attributions.sum() - change) / max(abs(change), 1e-12)
        if error < TOLERANCE or ig.steps >= MAX_STEPS:
            break
        ig = integrated_gradients(two.model, ids, 2 * ig.steps, tolerance=0.0, max_steps=2 * ig.steps)
    n = int(np.count_nonzero(ids))
    mixed = IntegratedGradients(attributions, float(logit), float(baseline), float(error), ig.steps, a * ig.dx)
    return mixed, TwoViewShares(two.view.n, two.mix, float(a * ig.logit), c * z_view, view_shares[-n:])
