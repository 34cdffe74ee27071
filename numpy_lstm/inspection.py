"""Why a trained model decided, for one review: the arrays that `numpy_lstm.report` draws.

- The reading (`numpy_lstm.reading`): every word after the run's cleaning, and what became of it.
- The attributions (`numpy_lstm.attribution`): integrated gradients and occlusion.
- The internals: each LSTM layer and direction runs again through `reference.lstm_forward`,
  whose step caches hold the gates i, f, o, the candidate g and the cell state c (and so
  h = o tanh(c)); the reference's step backward gives d logit / d c_t. The running verdict is
  the Dense readout of h_t after every word.

An ensemble's attributions are the means of its members' (its logit is the mean of theirs); its
internals are those of its first member. A model of two views (numpy_lstm/ngrams.py) mixes the
LSTM's and the n-gram view's attributions; its running verdict is the mixed logit of each
prefix, and its internals are the LSTM's.
Shapes: T steps the model reads (padding included), n words read, E embedding width, H units.
"""
import dataclasses
from typing import NamedTuple, Optional

import numpy as np

from .attribution import TwoViewShares, integrated_gradients, members, occlusion, two_view_attributions
from .errors import NumpyLSTMError
from .ngrams import TwoViews
from .prepare import encode
from .reading import Reading, read_review
from .reference import lstm_forward, lstm_step_backward, sigmoid
from .text import pad_sequences

# The quantities of a step that the page and `inspect --json` show, unit by unit.
STATES = ("i", "f", "g", "o", "c", "h")


def model_ids(reading, model, maxlen):
    """The steps (T,) one model reads of a review: with masking, its words (SentimentLSTM drops
    a masked batch's leading all-padding columns); without, the words pre-padded to maxlen."""
    ids = reading.ids
    if members(model)[0].config["mask_zero"]:
        return ids
    return pad_sequences([ids], maxlen=maxlen)[0]


@dataclasses.dataclass
class DirectionView:
    """One LSTM layer and direction on one review, every array aligned with the steps (T, H).

    i, f, o: the gates; g: the candidate; c: the cell state; h = o tanh(c): the output;
    dc: d logit / d c_t (through every later step);
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
    g: np.ndarray
    o: np.ndarray
    c: np.ndarray
    h: np.ndarray
    dc: np.ndarray
    score: np.ndarray

    def ranked_units(self):
        """The units (H,), highest score first."""
        return np.argsort(-self.score, kind="stable")

    def states(self, n):
        """The `inspect --json` object of its last n steps (names are a contract): layer,
        direction and each of STATES as n rows of H floats."""
        return {"layer": self.layer, "direction": self.direction,
                **{name: getattr(self, name)[len(self.i) - n:].tolist() for name in STATES}}


class Internals(NamedTuple):
    views: list                     # DirectionView per layer, then direction
    logit: float                    # the reference's logit (equals the model's)
    step_logits: Optional[np.ndarray]  # (T,) dense(h_t) for a last-state, one-direction model
    dx: np.ndarray                  # (T, E) d logit / d x_t through the reference


def lstm_internals(member, ids):
    """One SentimentLSTM on the steps ids (T,), layer by layer through the reference, in float64.

    Forward: the embedding's vectors x_t (each word's own plus, with a pair table, its pair's:
    `Embedding.forward`); each layer's directions run `lstm_forward` (the backward direction on
    the reversed sequence); the next layer reads their states side by side, aligned with the steps
    (inference: no dropout). Backward from the logit, top layer down: each direction's steps give
    d logit / d c_t and d logit / d (its input), which the layer below receives.
    """
    H = member.config["units"]
    directions = ("forward", "backward") if member.config["bidirectional"] else ("forward",)
    seq = member.embedding.forward(ids[None])[0].astype(np.float64)        # (1, T, E)
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
                     for name in ("i", "f", "g", "o", "c")}
            views.insert(d, DirectionView(k, directions[d], h=_flip(hs[0], d, axis=0), dc=_flip(dc, d, axis=0),
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
    two_views: Optional[TwoViewShares] = None     # with an n-gram view beside the LSTM

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
            "states": [view.states(len(self.attributions)) for view in self.views],
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
    models = members(lstm)
    ids = model_ids(reading, lstm, config.maxlen)
    ig = integrated_gradients(lstm, ids, steps)
    shares = None
    if two:
        ig, shares = two_view_attributions(two, ids, ig)
    internals = [lstm_internals(m, ids) for m in models]
    first = models[0].config
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
        members=len(models), two_views=shares)


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
