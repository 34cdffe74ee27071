"""Why a trained model decided, for one review: arrays that `numpy_lstm.report` draws.

- The reading: every word after the run's cleaning, and what became of it (read, read as the
  unknown-word id, dropped as a stopword or as unknown, or cut by maxlen).
- Integrated gradients (Sundararajan, Taly and Yan, 2017) on the embedded vectors x (T, E):
  word t gets (x_t - x'_t) . integral over a in [0, 1] of d logit / d x_t at x' + a (x - x'),
  from the baseline x' = the review with every word's vector zeroed (padding, which an unmasked
  model reads too, stays as it is, so it gets no attribution). The attributions add up to
  logit(x) - logit(x') (completeness) up to the quadrature's error, which is measured. The
  model's own layers compute the gradients (`SentimentLSTM.forward_vectors` and
  `backward_vectors`), every point of the path in one batch.
- Occlusion: logit(review) - logit(review without word t).
- The internals: each LSTM layer and direction runs again through `reference.lstm_forward`,
  whose step caches hold the gates i, f, o and the cell state c; the reference's step backward
  gives d logit / d c_t. The running verdict is the Dense readout of h_t after every word.

An ensemble's logit is the mean of its members' logits, so its attributions are the means of
the members' (integrated gradients and occlusion are linear in the function); its internals
are those of its first member. A model of two views (numpy_lstm/ngrams.py, logit = a z_lstm +
c z_ngrams + b) adds to a times the LSTM's attributions the n-gram view's exact ones (it is
linear: each gram's c r_g w_g shared among the steps it covers; its baseline, the empty review,
has no grams); the running verdict is the mixed logit of each prefix.
Shapes: T steps the model reads (padding included), n words read, E embedding width, H units.
"""
import dataclasses
from typing import NamedTuple, Optional

import numpy as np

from .errors import NumpyLSTMError
from .ngrams import TwoViews
from .prepare import clean, encode
from .reference import lstm_forward, lstm_step_backward, sigmoid
from .text import Vocabulary, pad_sequences, preprocess_reviews

# The units of each layer and direction that the page shows (ranked by `DirectionView.score`).
TOP_UNITS = 8
# Completeness error above which integrated gradients take twice as many steps (up to MAX_STEPS).
TOLERANCE = 0.01
MAX_STEPS = 1024
# Rows per forward / backward pass: the 65 points of 64 steps in one batch; bounds the caches'
# memory when the steps double.
_CHUNK = 65

READ, UNKNOWN, STOPWORD, SKIPPED, CUT = "read", "unknown", "stopword", "skipped", "cut"


@dataclasses.dataclass
class Reading:
    """A review as the run's preprocessing reads it.

    words: every word of the cleaned review, stopwords included (list of str).
    status: one per word: READ; UNKNOWN (read as the unknown-word id 1); STOPWORD; SKIPPED (not
    in the vocabulary, and the run skips such words); CUT (before the last maxlen words read).
    word_ids: int (len(words),): the id each read word gets, 0 for the others.
    """

    words: list
    status: list
    word_ids: np.ndarray

    @property
    def positions(self):
        """Indices into `words` of the n words the model reads, in order."""
        return np.array([k for k, s in enumerate(self.status) if s in (READ, UNKNOWN)], dtype=int)

    @property
    def tokens(self):
        return [self.words[k] for k in self.positions]

    @property
    def ids(self):
        return self.word_ids[self.positions]


def read_review(text, vocab, config):
    """The Reading of `text` under a run's config (a TrainConfig) and vocabulary.

    Its ids are those `prepare.encode` gives the review, without the padding.
    """
    cleaned = preprocess_reviews([text], keep_stopwords=True, punctuation=config.punctuation)[0]
    words = cleaned.split(" ") if cleaned else []      # as Vocabulary.encode splits
    # Cleaning a cleaned word changes nothing, so each word alone is kept or dropped as it is
    # inside the review: "" marks a stopword.
    kept = clean(words, config)
    status, word_ids = [], np.zeros(len(words), np.int32)
    for k, (word, ids) in enumerate(zip(kept, vocab.encode(kept))):
        if not word:
            status.append(STOPWORD)
        elif ids[0] == Vocabulary.OOV and config.oov == "skip":
            status.append(SKIPPED)
        else:
            status.append(UNKNOWN if ids[0] == Vocabulary.OOV else READ)
            word_ids[k] = ids[0]
    reading = Reading(words, status, word_ids)
    for k in reading.positions[:-config.maxlen]:     # pad_sequences truncates at the front
        status[k], word_ids[k] = CUT, 0
    return reading


def model_ids(reading, model, maxlen):
    """The steps (T,) one model reads of a review: with masking, its words (SentimentLSTM drops
    a masked batch's leading all-padding columns); without, the words pre-padded to maxlen."""
    ids = reading.ids
    if _members(model)[0].config["mask_zero"]:
        return ids
    return pad_sequences([ids], maxlen=maxlen)[0]


def _members(model):
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
    members = _members(model)
    while True:
        runs = [_path_gradients(m, ids, steps) for m in members]
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
    for lo in range(0, steps + 1, _CHUNK):
        a = alphas[lo:lo + _CHUNK]
        path = (baseline + a[:, None, None] * delta).astype(x.dtype)
        rows_mask = None if mask is None else np.repeat(mask, len(a), axis=0)
        chunk_logits, cache = member.forward_vectors(path, rows_mask)
        dx, _ = member.backward_vectors(np.ones_like(chunk_logits), cache)
        integral += np.tensordot(weights[lo:lo + _CHUNK], dx, axes=1)
        logits.append(chunk_logits)
        dx_end = dx[-1]
    logits = np.concatenate(logits)
    return (delta * integral).sum(axis=1), float(logits[-1]), float(logits[0]), dx_end


def occlusion(model, ids, logit):
    """logit - the logit of the review without word t, for each word of ids (T,): (n,)."""
    words = ids[ids != 0]
    rows = pad_sequences([np.delete(words, t) for t in range(len(words))], maxlen=len(ids))
    logits = np.concatenate([model.forward(rows[lo:lo + _CHUNK])[0] for lo in range(0, len(rows), _CHUNK)])
    return logit - logits


@dataclasses.dataclass
class DirectionView:
    """One LSTM layer and direction on one review, every array aligned with the steps (T, H).

    i, f, o: the gates; c: the cell state; dc: d logit / d c_t (through every later step);
    score (H,): how much each unit matters to the verdict, sum over t of
    |d logit / d h_t (from above) * h_t|, gradient times activation, where "from above" is what
    reaches h_t from the layer that reads it, not from step t + 1. For the layer the Dense reads
    this is |dense weight| x activation (the unit's term of the logit; for mean pooling, that
    of each step, summed).
    """

    layer: int
    direction: str          # "forward" or "backward"
    i: np.ndarray
    f: np.ndarray
    o: np.ndarray
    c: np.ndarray
    dc: np.ndarray
    score: np.ndarray

    def top_units(self, k=TOP_UNITS):
        """The k units of highest score, highest first."""
        return np.argsort(-self.score, kind="stable")[:k]


class Internals(NamedTuple):
    views: list                     # DirectionView per layer, then direction
    logit: float                    # the reference's logit (equals the model's)
    step_logits: Optional[np.ndarray]  # (T,) dense(h_t) for a last-state, one-direction model
    dx: np.ndarray                  # (T, E) d logit / d x_t through the reference


def lstm_internals(member, ids):
    """One SentimentLSTM on the steps ids (T,), layer by layer through the reference, in float64.

    Forward: each layer's directions run `lstm_forward` (the backward direction on the reversed
    sequence); the next layer reads their states side by side, aligned with the steps (inference:
    no dropout). Backward from the logit, top layer down: each direction's steps give d logit /
    d c_t and d logit / d (its input), which the layer below receives.
    """
    H = member.config["units"]
    directions = ("forward", "backward") if member.config["bidirectional"] else ("forward",)
    seq = member.embedding.embeddings[ids].astype(np.float64)[None]        # (1, T, E)
    runs = []
    for rnn in member.rnns:
        layer = []
        for d in range(len(directions)):
            kernel, recurrent_kernel, bias = (w.astype(np.float64) for w in rnn.weights[3 * d:3 * d + 3])
            hs, cache = lstm_forward(_flip(seq, d), kernel, recurrent_kernel, bias)
            layer.append((hs, cache.steps))
        runs.append(layer)
        seq = np.concatenate([_flip(hs, d) for d, (hs, _) in enumerate(layer)], axis=-1)
    readout, dseq = _readout(member, seq)
    logit = float(member.dense.forward(readout[None])[0][0, 0])
    step_logits = None
    if member.pooling is None and len(directions) == 1:
        step_logits = member.dense.forward(seq[0])[0][:, 0]
    views = []
    for k in reversed(range(len(runs))):
        dinput = 0.0
        for d, (hs, steps) in enumerate(runs[k]):
            dhs = _flip(dseq[..., d * H:(d + 1) * H], d)        # in the direction's own order
            dc, dx = _state_gradients(dhs, steps)
            gates = {name: _flip(np.stack([getattr(s, name)[0] for s in steps]), d, axis=0)
                     for name in ("i", "f", "o", "c")}
            views.insert(d, DirectionView(k, directions[d], dc=_flip(dc, d, axis=0),
                                          score=np.abs(dhs * hs)[0].sum(axis=0), **gates))
            dinput = dinput + _flip(dx[None], d)
        dseq = dinput
    return Internals(views, logit, step_logits, dseq[0])


def _flip(a, d, axis=1):
    """a reversed along the time axis for the backward direction (d = 1): its own reading order
    <-> the steps' order."""
    return np.flip(a, axis) if d else a


def _readout(member, seq):
    """What the Dense layer reads of the top layer's states seq (1, T, width), (width,), and
    d logit / d seq (1, T, width)."""
    w = member.dense.kernel[:, 0].astype(np.float64)
    if member.pooling is not None:
        readout, cache = member.pooling.forward(seq, None)
        return readout[0], member.pooling.backward(w[None], cache)
    # The last state of each direction in its own order: the forward's at step T, the backward's
    # at step 1 (what LSTM and Bidirectional return without return_sequences).
    H = member.config["units"]
    last = np.zeros(seq.shape[2], dtype=bool)
    last[:H] = True
    at = np.where(last, seq.shape[1] - 1, 0)
    dseq = np.zeros_like(seq)
    dseq[0, at, np.arange(len(w))] = w
    return seq[0, at, np.arange(len(w))], dseq


def _state_gradients(dhs, steps):
    """d logit / d c_t (T, H) and d logit / d x_t (T, E) of one direction, in its own order,
    from dhs (1, T, H): the gradients that reach its outputs h_t from above.

    reference.lstm_backward returns the inputs' and the weights' gradients, not the cell state's
    step by step, which is what this view is about: so the steps are walked here with the
    reference's step backward. One review (B = 1), no mask (SentimentLSTM drops a masked
    review's padding) and no dropout (inference): a plain loop over the steps.
    """
    T, H, E = len(steps), dhs.shape[2], steps[0].x.shape[1]
    dc, dx = np.empty((T, H)), np.empty((T, E))
    dh_next, dc_next = np.zeros((1, H)), np.zeros((1, H))
    for t in reversed(range(T)):
        step = steps[t]
        dh = dh_next + dhs[:, t]
        # The whole of d logit / d c_t: through c_{t+1} (dc_next) and through h_t = o tanh(c_t),
        # the sum that the step backward forms first.
        dc[t] = (dc_next + dh * step.o * (1 - step.tanh_c ** 2))[0]
        dx_t, dh_next, dc_next = lstm_step_backward(dh, dc_next, step)[:3]
        dx[t] = dx_t[0]
    return dc, dx


@dataclasses.dataclass
class Inspection:
    """Everything `numpy-lstm inspect` shows of one review (see the module docstring).

    ids (T,): the steps the model read (padding 0 included, before the words); the n words read
    are its last n steps. attributions, occlusion, running_probability: (n,), one per word read.
    """

    text: str
    reading: Reading
    ids: np.ndarray
    logit: float
    baseline_logit: float
    attributions: np.ndarray
    completeness_error: float
    ig_steps: int
    occlusion: np.ndarray
    running_probability: Optional[np.ndarray]
    running_note: str           # why there is no running verdict ("" when there is one)
    views: list                 # DirectionView of the first member, per layer and direction
    dx_norm: np.ndarray         # (T,) |d logit / d x_t| (the first member's, float32 backward)
    model_config: dict          # the first member's SentimentLSTM config
    members: int
    two_views: Optional["TwoViewShares"] = None     # with an n-gram view beside the LSTM

    @property
    def probability(self):
        return float(sigmoid(np.array([self.logit]))[0])

    def to_json(self):
        """The JSON object of `numpy-lstm inspect --json` (names are a contract)."""
        running = self.running_probability
        return {
            "text": self.text, "tokens": self.reading.tokens, "ids": [int(i) for i in self.reading.ids],
            "probability": self.probability, "logit": self.logit, "baseline_logit": self.baseline_logit,
            "attributions": [float(a) for a in self.attributions],
            "running_probability": None if running is None else [float(p) for p in running],
            "completeness_error": self.completeness_error,
        }


def inspect_review(model, vocab, config, text, steps=64):
    """Inspect one review: a SentimentLSTM, an Ensemble or a TwoViews; the run's Vocabulary
    and TrainConfig.

    NumpyLSTMError when no word of the review reaches the model.
    """
    reading = read_review(text, vocab, config)
    n = len(reading.positions)
    if n == 0:
        what = "the review is empty" if not text.strip() else "no word of the review reaches the model"
        raise NumpyLSTMError(f"nothing to inspect: {what} (after the run's preprocessing: "
                             f"stopwords and unknown words dropped)")
    two = model if isinstance(model, TwoViews) else None
    lstm = two.model if two else model
    members = _members(lstm)
    ids = model_ids(reading, lstm, config.maxlen)
    ig = integrated_gradients(lstm, ids, steps)
    shares = None
    if two:
        ig, shares = _two_view_attributions(two, ids, ig)
    internals = [lstm_internals(m, ids) for m in members]
    first = members[0].config
    running, note = None, ""
    if first["bidirectional"]:
        note = ("The running verdict needs a state that has read the words so far and no further: "
                "this model's backward direction reads the review from its end.")
    elif first["pooling"] != "last":
        note = (f"The running verdict reads the state after each word, but this model's Dense layer "
                f"reads the {first['pooling']} of the states over the whole review (pooling).")
    else:
        running = np.mean([r.step_logits for r in internals], axis=0)[-n:]
        if two:
            running = two.mix[0] * running + two.mix[1] * two.view.logits(_prefixes(ids[-n:])) + two.mix[2]
        running = sigmoid(running)
    return Inspection(
        text=text, reading=reading, ids=ids, logit=ig.logit, baseline_logit=ig.baseline_logit,
        attributions=ig.attributions[-n:], completeness_error=ig.completeness_error, ig_steps=ig.steps,
        occlusion=occlusion(model, ids, ig.logit), running_probability=running, running_note=note,
        views=internals[0].views, dx_norm=np.linalg.norm(ig.dx, axis=1), model_config=dict(first),
        members=len(members), two_views=shares)


class TwoViewShares(NamedTuple):
    """What each view of a TwoViews model gives one review (its logit is lstm + ngrams + mix[2])."""

    n: int                      # the view's longest gram
    mix: np.ndarray             # (3,) a, c, b
    lstm: float                 # a z_lstm
    ngrams: float               # c z_ngrams
    attributions: np.ndarray    # (n words,) the n-gram view's share of each word's attribution


def _two_view_attributions(two, ids, ig):
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


def _prefixes(words):
    """The first 1, 2, ..., n words of words (n,), pre-padded to n: (n, n)."""
    return pad_sequences([words[:j] for j in range(1, len(words) + 1)], maxlen=len(words))


def confident_errors(model, texts, labels, vocab, config, n):
    """The n reviews the model gets wrong most confidently: (indices, probabilities of all texts).

    Rows run in length order (with masking, a batch of similar lengths runs fewer steps).
    """
    x = encode(texts, vocab, config)
    order = np.argsort((x != 0).sum(axis=1), kind="stable")
    p = np.empty(len(x))
    p[order] = model.predict(x[order])
    labels = np.asarray(labels)
    wrong = np.flatnonzero((p > 0.5) != (labels == 1))
    ranked = wrong[np.argsort(-np.abs(p[wrong] - 0.5), kind="stable")]
    return ranked[:n], p
