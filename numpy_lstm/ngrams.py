"""A second view of each review beside the LSTM: its n-grams, read by a naive-Bayes-weighted
logistic regression (the NBSVM family of Wang and Manning, 2012, the linear baseline of IMDB).

The features of a review are its distinct n-grams of ids (binarised: a gram counts once per
review, however often it occurs). With p = alpha + the sum of the positive reviews' features and
q likewise for the negative ones (sample-weighted, alpha = 1), each gram g has the log-count ratio

    r_g = log(p_g / |p|_1) - log(q_g / |q|_1)

and the view's logit is linear in the grams present:

    z(review) = b + sum over the review's distinct grams g of r_g w_g

w and b minimise the mean (sample-weighted) binary cross-entropy + l2/2 |w|^2, by full-batch
Adam from w = 0. Adam's first step moves each w_g by the learning rate in its gradient's sign,
+lr for a gram whose reviews lean the way r_g does: the view starts as naive Bayes (lr r), and
the fit then corrects it where grams overlap ("not", "good" and "not good").

`self_train` adds the unlabeled reviews, labeled by the view and the LSTM voting together
(co-training, `vote`), or by the view alone. `fit_mix` fits
the combination of the two views' logits, a z_lstm + c z_ngrams + b, on the held-out reviews;
`TwoViews` is that combination, read like a SentimentLSTM (forward, predict).
Shapes: N reviews, T steps (pre-padded, 0 = padding), M (review, gram) pairs, F grams in the table.
"""

import numpy as np

from .errors import NumpyLSTMError
from .fileio import atomic_path
from .memory import file_limit
from .optimizers import Adam
from .reference import sigmoid
from .safe_files import NpzFile

ALPHA = 1.0           # the naive Bayes smoothing count
STEPS = 60            # full-batch Adam steps
LEARNING_RATE = 0.1


def key_offsets(vocab_size, n):
    """Where each gram length's keys start: (n + 1,) with offset[k - 1] the first k-gram key and
    offset[n] one past the last key. k-grams of ids a_1..a_k have key offset[k - 1] + the base-V
    number a_1 ... a_k, so keys of different lengths never meet."""
    return np.cumsum([0] + [vocab_size ** k for k in range(1, n + 1)], dtype=np.int64)


def gram_occurrences(ids, vocab_size, n):
    """Every occurrence of an n-gram (lengths 1..n) in ids (N, T), one length at a time: yields
    (k, doc (M_k,), t (M_k,), key (M_k,) int64), the gram of length k at steps t .. t + k - 1 of
    review doc.

    A gram is k consecutive ids none of which is padding (0), so padding never forms or joins a
    gram. Unigram keys are the ids, bigram keys V + a V + b, trigram keys V + V^2 + (a V + b) V + c
    (key_offsets).
    """
    ids = np.asarray(ids)
    if ids.ndim != 2 or not 1 <= n <= 3:
        raise NumpyLSTMError(f"n-grams need ids (N, T) and n in 1..3, got {ids.shape} and {n}")
    T = ids.shape[1]
    offsets = key_offsets(vocab_size, n)
    present = ids != 0
    for k in range(1, min(n, T) + 1):
        # Windows start at t = 0 .. T - k; one whose k ids are all words is a gram.
        whole = present[:, :T - k + 1].copy()
        for j in range(1, k):
            whole &= present[:, j:T - k + 1 + j]
        doc, t = np.nonzero(whole)
        del whole
        key = np.zeros(len(doc), np.int64)
        for j in range(k):
            key = key * vocab_size + ids[doc, t + j]
        yield k, doc, t, key + offsets[k - 1]


def ngram_keys(ids, vocab_size, n, chunk=1024):
    """The distinct n-grams (lengths 1..n) of each review of ids (N, T), 0 = padding:
    (doc (M,), key (M,)), int64, sorted by doc then key (keys: gram_occurrences).

    One np.unique of doc * span + key, span being the number of possible keys, finds the
    distinct (review, gram) pairs of `chunk` reviews at a time: a sort of their grams, and memory
    for one chunk's occurrences besides the result.
    """
    N = len(ids)
    span = int(key_offsets(vocab_size, n)[-1])
    if N and span > np.iinfo(np.int64).max // min(N, chunk):
        raise NumpyLSTMError(f"{n}-grams over {vocab_size} ids overflow int64 keys")
    docs, keys = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for start in range(0, N, chunk):
        combined = [doc.astype(np.int64) * span + key
                    for _, doc, _, key in gram_occurrences(ids[start:start + chunk], vocab_size, n)]
        unique = np.unique(np.concatenate(combined)) if combined else np.zeros(0, np.int64)
        docs.append(unique // span + start)
        keys.append(unique % span)
    return np.concatenate(docs), np.concatenate(keys)


def view_loss(w, b, r, doc, feature, y, sample_weight, l2):
    """The view's training loss and its gradients: (loss, dw (F,), db).

    w, r: (F,); doc, feature: (M,) the (review, gram index) pairs; y, sample_weight: (N,).
    loss = sum_i s_i BCE(z_i, y_i) / sum_i s_i + l2/2 |w|^2, z_i = b + sum_{(i, g)} r_g w_g.
    d loss / d z_i = s_i (sigmoid(z_i) - y_i) / sum s, which each gram of review i passes to w_g
    times r_g.
    """
    N = len(y)
    z = np.bincount(doc, weights=(r * w)[feature], minlength=N) + b
    s = sample_weight / sample_weight.sum()
    # BCE from the logit: log(1 + e^z) - y z, stable for either sign of z.
    loss = float(np.sum(s * (np.logaddexp(0.0, z) - y * z)) + 0.5 * l2 * np.dot(w, w))
    dz = s * (sigmoid(z) - y)
    dw = r * np.bincount(feature, weights=dz[doc], minlength=len(w)) + l2 * w
    return loss, dw, float(dz.sum())


class NgramView:
    """NB-weighted logistic regression on the distinct n-grams (lengths 1..n) of id sequences.

    After `fit`: table (F,) int64, the sorted gram keys it knows; rw (F,) float32, the products
    r_g w_g (all prediction needs); b, the bias. Grams outside the table contribute 0.
    Deterministic: no randomness anywhere.
    """

    def __init__(self, vocab_size, n=2, l2=1e-3):
        if not 1 <= n <= 3:
            raise NumpyLSTMError(f"the n-gram view reads grams of length 1 to 3, got n={n}")
        self.vocab_size, self.n, self.l2 = int(vocab_size), int(n), float(l2)
        self.table = np.zeros(0, np.int64)
        self.rw = np.zeros(0, np.float32)
        self.b = 0.0

    def keys(self, ids):
        return ngram_keys(ids, self.vocab_size, self.n)

    def fit(self, ids, y, sample_weight=None, extra_ids=None):
        """Fit on ids (N, T) with labels y (N,) 0/1 and weights (N,) (default 1 each).

        extra_ids (K, T'): reviews without labels whose grams enter the table too (their r_g then
        comes from the smoothing alone). Returns self.
        """
        y = np.asarray(y, np.float64)
        s = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        doc, key = self.keys(ids)
        tables = [key] if extra_ids is None or len(extra_ids) == 0 else [key, self.keys(extra_ids)[1]]
        self.table = np.unique(np.concatenate(tables))
        del tables
        # int32 indices: the (review, gram) pairs are the fit's largest arrays
        doc, feature = doc.astype(np.int32), np.searchsorted(self.table, key).astype(np.int32)
        del key
        F = len(self.table)
        p = ALPHA + np.bincount(feature, weights=(s * y)[doc], minlength=F)
        q = ALPHA + np.bincount(feature, weights=(s * (1 - y))[doc], minlength=F)
        r = np.log(p / p.sum()) - np.log(q / q.sum())
        w, b = np.zeros(F), np.zeros(1)
        adam = Adam(learning_rate=LEARNING_RATE)
        for _ in range(STEPS):
            _, dw, db = view_loss(w, b[0], r, doc, feature, y, s, self.l2)
            adam.step([w, b], [dw, np.array([db])])
        self.rw, self.b = (r * w).astype(np.float32), float(b[0])
        return self

    def weights_of(self, key):
        """r_g w_g (float64) of the gram keys (M,); 0 for grams outside the table."""
        if len(self.table) == 0:
            return np.zeros(len(key))
        at = np.searchsorted(self.table, key).clip(0, len(self.table) - 1)
        return np.where(self.table[at] == key, self.rw[at], 0.0).astype(np.float64)

    def token_shares(self, ids):
        """Each step's share (T,) of one review's logit minus b, ids (T,): the view's exact
        attribution, since it is linear. A gram's r_g w_g is split equally over the steps of all
        its occurrences: a bigram occurring twice gives a quarter to each of its four steps."""
        ids = np.asarray(ids)
        shares = np.zeros(len(ids))
        for k, _, t, key in gram_occurrences(ids[None], self.vocab_size, self.n):
            _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
            each = self.weights_of(key) / (k * counts[inverse])
            for j in range(k):
                np.add.at(shares, t + j, each)
        return shares

    def logits(self, ids, chunk=1024):
        """ids (N, T) -> the view's logits (N,) float64, `chunk` reviews at a time (the grams of
        25,000 reviews at once took 0.3 GB)."""
        z = np.empty(len(ids))
        for start in range(0, len(ids), chunk):
            rows = ids[start:start + chunk]
            doc, key = self.keys(rows)
            z[start:start + len(rows)] = np.bincount(doc, weights=self.weights_of(key), minlength=len(rows))
        return z + self.b

    def state(self):
        """The arrays that rebuild the view for prediction (`from_state`)."""
        return {"table": self.table, "rw": self.rw, "b": np.array(self.b),
                "n": np.array(self.n), "vocab_size": np.array(self.vocab_size), "l2": np.array(self.l2)}

    @classmethod
    def from_state(cls, state):
        view = cls(int(state["vocab_size"]), int(state["n"]), float(state["l2"]))
        view.table = np.asarray(state["table"], np.int64)
        view.rw = np.asarray(state["rw"], np.float32)
        view.b = float(state["b"])
        return view


def self_train(view, ids, y, unlabeled_ids, rounds, other_logits=None, share=None):
    """`rounds` times: label the unlabeled reviews (K, T), then refit the view on the labeled and
    the pseudo-labeled reviews (weight 1 each). Returns the view.

    Alone, the view labels them by its own sign. With `other_logits` (K,), another model's logits
    of the unlabeled reviews (the LSTM's), the label is the two views' `vote`: co-training. The two
    views err on different reviews (one reads word order, the other counts grams), so their joint
    verdict is right more often than either's, and the view learns from the other model's share
    of it. share: `vote`'s.
    """
    for _ in range(rounds):
        z = view.logits(unlabeled_ids)
        pseudo = vote(z, share=share) if other_logits is None else vote(other_logits, z, share=share)
        view.fit(np.concatenate([ids, unlabeled_ids]), np.concatenate([np.asarray(y, np.float64), pseudo]))
    return view


def vote(*logits, share=None):
    """Labels (K,) 0/1 float64 from the logits (K,) of each model, each first divided by its
    standard deviation (`unit_scale`), so that each model has an equal vote whatever its scale,
    then added: 1 where the sum is above 0, or, given `share`, on the round(share K) reviews of
    the largest sums (ties broken by position), whatever the voters' lean toward one class."""
    total = sum(unit_scale(z) for z in logits)
    if share is None:
        return (total > 0).astype(np.float64)
    labels = np.zeros(len(total))
    labels[np.argsort(-total, kind="stable")[:round(share * len(total))]] = 1.0
    return labels


def unit_scale(z):
    """z (K,) divided by its `spread`."""
    z = np.asarray(z, np.float64)
    return z / spread(z)


def spread(z):
    """The standard deviation of logits z (K,), or 1.0 when it is 0."""
    return float(np.std(np.asarray(z, np.float64))) or 1.0


def fit_logistic(X, y, penalty, iterations=50):
    """Weights w (D,) float64 of the logistic regression z = X w on features X (N, D) and labels y (N,).

    Minimises mean BCE + 1/2 sum(penalty w^2), penalty (D,), by Newton's method (D is 1 to 3 here:
    the Hessian is D x D), halving a step until the loss goes down; a small penalty keeps the
    weights finite when the reviews are separable.
    """
    X, y, penalty = np.asarray(X, np.float64), np.asarray(y, np.float64), np.asarray(penalty, np.float64)

    def loss(w):
        z = X @ w
        return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(penalty * w ** 2))

    w = np.zeros(X.shape[1])
    for _ in range(iterations):
        p = sigmoid(X @ w)
        grad = X.T @ (p - y) / len(y) + penalty * w
        hessian = (X * (p * (1 - p))[:, None]).T @ X / len(y) + np.diag(penalty) + 1e-12 * np.eye(len(w))
        step = np.linalg.solve(hessian, grad)
        scale, before = 1.0, loss(w)
        while loss(w - scale * step) > before and scale > 1e-6:
            scale /= 2
        w = w - scale * step
        if np.max(np.abs(scale * step)) < 1e-10:
            break
    return w


def fit_mix(z_lstm, z_view, y, l2=1e-4):
    """The mix [a, c, b] (3,) float64 of z = a z_lstm + c z_view + b: a logistic regression on
    held-out logits (N,) and labels (N,), with l2 on a and c."""
    X = np.stack([np.asarray(z_lstm, np.float64), np.asarray(z_view, np.float64), np.ones(len(y))], axis=1)
    return fit_logistic(X, y, [l2, l2, 0.0])


def fit_vote_mix(z_lstm, z_view, y, spreads, l2=1e-4):
    """The mix [s/spread_lstm, s/spread_view, 0] (3,) float64: `vote`'s sum of the two unit-scaled
    logits, times one scale s fitted on held-out logits (N,) and labels (N,). spreads: each
    view's `spread` on the unlabeled reviews, the ones its vote divided by.

    s only calibrates: the verdict is the vote's, whatever the held-out reviews say. Two weights
    and an intercept fitted on a hundred reviews of ten films follow those films (README, semi).
    """
    spread_lstm, spread_view = spreads
    u = np.asarray(z_lstm, np.float64) / spread_lstm + np.asarray(z_view, np.float64) / spread_view
    (s,) = fit_logistic(u[:, None], y, [l2])
    return np.array([s / spread_lstm, s / spread_view, 0.0])


class TwoViews:
    """A trained LSTM (SentimentLSTM or Ensemble) and an NgramView, read as one model.

    logit = a z_lstm + c z_ngrams + b, mix = [a, c, b] from `fit_mix` or `fit_vote_mix`.
    forward and predict are those of a SentimentLSTM (inference only, no backward).
    """

    def __init__(self, model, view, mix):
        self.model, self.view = model, view
        self.mix = np.asarray(mix, np.float64)

    @property
    def weights(self):
        return self.model.weights

    def forward(self, ids, rng=None):
        """ids (B, T) -> (mixed logits (B,) float64, None)."""
        return self.mixed(self.model.forward(ids)[0], self.view.logits(ids)), None

    def mixed(self, z_lstm, z_view):
        """The mixed logits a z_lstm + c z_view + b (N,) float64 of the views' logits (N,)."""
        a, c, b = self.mix
        return a * np.asarray(z_lstm, np.float64) + c * z_view + b

    def predict(self, ids, batch_size=64):
        ids = np.asarray(ids)
        if len(ids) == 0:
            return np.zeros(0)
        return np.concatenate([sigmoid(self.forward(ids[i:i + batch_size])[0])
                               for i in range(0, len(ids), batch_size)])


def save_ngrams(path, view, mix):
    """Write the view and the mix to an .npz file atomically (no pickle)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, mix=np.asarray(mix, np.float64), **view.state())


def load_ngrams(path):
    """(NgramView, mix (3,)) from a file `save_ngrams` wrote; a bad file is a NumpyLSTMError
    (each array's header is checked before any array is read: numpy_lstm/safe_files.py)."""
    ints, floats = (np.int32, np.int64), (np.float32, np.float64)
    with NpzFile(path, "n-gram view file", file_limit()) as npz:
        table = npz.shapes.get("table", ((-1, -1), None))[0]
        grams = (table[0] if len(table) == 1 else -1,)
        for name, shape, dtypes in (("table", grams, ints), ("rw", grams, floats), ("b", (), floats), ("n", (), ints),
                                    ("vocab_size", (), ints), ("l2", (), floats), ("mix", (3,), floats)):
            npz.expect(name, shape, dtypes)
        state = {name: npz.array(name) for name in npz.shapes}
    if not (1 <= state["n"] <= 3 and 3 <= state["vocab_size"] <= 10_000_000):
        raise NumpyLSTMError(f"{path} is not an n-gram view file: n {state['n']}, vocabulary {state['vocab_size']}")
    return NgramView.from_state(state), state["mix"]


def accuracy(logits, y):
    return float(np.mean((np.asarray(logits) > 0) == (np.asarray(y) == 1))) if len(y) else float("nan")
