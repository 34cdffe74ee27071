"""The tutorial's layers, by hand: Embedding -> LSTM -> Dense.

Every layer follows one pattern (after CS231n's rnn_layers): `forward` returns the output and a
cache of what backward needs; `backward` takes the upstream gradient and that cache and returns
the gradients. Each layer lists its weights in `weights`, in Keras's order, and `backward`
returns their gradients in the same order.

Shapes: B batch, T time steps, E embedding width, H LSTM units, V vocabulary size.
"""
import numpy as np

from . import engine, reference
from .checks import IMPLEMENTATIONS
from .initializers import glorot_uniform, orthogonal
from .sparse import RowSparse


def bigram_buckets(ids, buckets):
    """The hashed bucket in [0, buckets) of each (previous id, id) pair of ids (B, T), int64.

    The previous id of a row's first column is 0 (padding), so a review's first word has a bucket
    of its own kind, (0, w). A fixed multiplicative hash (splitmix64's finaliser) of the pair:
    the same pair lands in the same bucket in every run and on every machine.
    """
    ids = np.asarray(ids)
    prev = shifted(ids, 1)
    h = mix64((prev << np.uint64(32)) | ids.astype(np.uint64))
    return (h % np.uint64(buckets)).astype(np.int64)


def trigram_buckets(ids, buckets):
    """The hashed bucket in [0, buckets) of each (id two back, previous id, id) triple of ids
    (B, T), int64, the ids before a row's start taken as 0: the hash of the first two, mixed
    with the third (`--hashed-trigrams`, sharing the pair table's rows)."""
    ids = np.asarray(ids)
    h = mix64((shifted(ids, 2) << np.uint64(32)) | shifted(ids, 1))
    # The third id enters offset by splitmix64's increment: a triple's key is not formed as a pair's
    h ^= ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    return (mix64(h) % np.uint64(buckets)).astype(np.int64)


def shifted(ids, k):
    """ids (B, T) moved k steps later in each row, as uint64, the first k columns 0."""
    out = np.zeros(ids.shape, np.uint64)
    out[:, k:] = ids[:, :-k]
    return out


def mix64(h):
    """splitmix64's finaliser of the uint64 array h, in place: every bit of the key moves every
    bit of the result, so nearby keys land in unrelated buckets."""
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


class Embedding:
    """Lookup table: ids (B, T) -> vectors (B, T, E). Keras init uniform(-0.05, 0.05).

    bigrams K > 0 (fastText / region-embedding style): a second table of K rows (E wide, zeros at
    the start), and x_t = E[w_t] + G[bucket(w_{t-1}, w_t)] (`bigram_buckets`; w_{-1} is 0). A
    padding step (w_t = 0) gets no bigram term, so padded steps read E[0] exactly as without it.
    trigrams (with bigrams): each step also adds the row of its (w_{t-2}, w_{t-1}, w_t) triple,
    hashed into the same table (`trigram_buckets`).
    """

    def __init__(self, input_dim, output_dim, rng, dtype=np.float32, bigrams=0, trigrams=False):
        self.embeddings = rng.uniform(-0.05, 0.05, (input_dim, output_dim)).astype(dtype)
        self.bigrams = int(bigrams)
        self.trigrams = bool(trigrams) and self.bigrams > 0
        self.bigram_table = np.zeros((self.bigrams, output_dim), dtype) if self.bigrams else None

    @property
    def weights(self):
        return [self.embeddings] + ([self.bigram_table] if self.bigrams else [])

    def table_buckets(self, ids):
        """[each step's pair bucket (B, T)], and its triple's with trigrams."""
        return [bigram_buckets(ids, self.bigrams)] + ([trigram_buckets(ids, self.bigrams)] if self.trigrams else [])

    def forward(self, ids):
        """ids: int (B, T) -> (out (B, T, E), cache). The cache is ids (backward recomputes the buckets)."""
        out = self.embeddings[ids]
        if self.bigrams:
            ids = np.asarray(ids)
            words = ids != 0
            for buckets in self.table_buckets(ids):
                out[words] += self.bigram_table[buckets[words]]
        return out, ids

    def backward(self, dout, ids):
        """dout (B, T, E) -> [dembeddings (V, E)], and [..., dbigram_table] with bigrams.

        A token id that occurs n times receives the sum of its n upstream rows (`d[ids] += dout`
        would keep only one). The sums are np.bincount of the ids weighted by one column of dout
        at a time: several times faster than the scatter-add np.add.at, and summed in float64.
        The bigram table's gradient is the same sums over the buckets of the non-padding steps,
        row-sparse (`RowSparse`): only the buckets the batch reads, numbered by np.unique's
        inverse, so nothing K long is formed (a batch reads a few thousand of K = 2^18 buckets).
        """
        V, E = self.embeddings.shape
        ids = np.asarray(ids)
        buckets = self.table_buckets(ids) if self.bigrams else []
        if dout.ndim == 3 and dout.strides[0] < dout.strides[1]:
            ids, dout = ids.T, dout.transpose(1, 0, 2)   # time-major in memory: read it in order
            buckets = [b.T for b in buckets]
        flat_ids = ids.ravel()
        dembeddings = np.empty((V, E), self.embeddings.dtype)
        if self.bigrams:
            words = np.flatnonzero(flat_ids != 0)
            # With trigrams, each word's step feeds two buckets: its pair's, then its triple's
            rows, inverse = np.unique(np.concatenate([b.ravel()[words] for b in buckets]), return_inverse=True)
            inverse = inverse.ravel()      # NumPy 2.0 and 2.1 shape it like their input
            dbigrams = np.empty((len(rows), E), self.embeddings.dtype)
        for j in range(E):
            # One feature's column, flattened in the order of flat_ids. The LSTM's dx is a view
            # of a (T, E, B) array, where each column is a run of (T, B) blocks: no transpose.
            column = dout[..., j].ravel()
            dembeddings[:, j] = np.bincount(flat_ids, weights=column, minlength=V)
            if self.bigrams:
                step_rows = column[words]
                if self.trigrams:
                    step_rows = np.concatenate([step_rows, step_rows])
                dbigrams[:, j] = np.bincount(inverse, weights=step_rows, minlength=len(rows))
        if self.bigrams:
            return [dembeddings, RowSparse(rows, dbigrams, self.bigram_table.shape)]
        return [dembeddings]


class Dense:
    """Affine layer: x (B, D) -> x @ kernel + bias (B, U). Keras init: glorot_uniform, zeros."""

    def __init__(self, input_dim, units, rng, dtype=np.float32):
        self.kernel = glorot_uniform(rng, (input_dim, units)).astype(dtype)
        self.bias = np.zeros(units, dtype)

    @property
    def weights(self):
        return [self.kernel, self.bias]

    def forward(self, x):
        """x (B, D) -> (out (B, U), cache)."""
        return x @ self.kernel + self.bias, x

    def backward(self, dout, x):
        """dout (B, U) -> (dx (B, D), [dkernel (D, U), dbias (U,)])."""
        return dout @ self.kernel.T, [x.T @ dout, dout.sum(axis=0)]


class LSTM:
    """Long short-term memory over a batch of sequences, in Keras's layout.

    Weights: kernel (E, 4H), recurrent_kernel (H, 4H), bias (4H,), the four gate blocks side by
    side in the order i, f, c, o (input, forget, cell candidate, output). Per step t:

        z   = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias        (B, 4H)
        i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o)
        g   = tanh(z_c)                                                (the candidate cell)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)

    With a mask (B, T), a row whose step is masked keeps (h_{t-1}, c_{t-1}) unchanged, as Keras
    does with mask_zero: pre-padded sequences then end exactly where the unpadded ones would.
    Keras init: glorot_uniform kernel, orthogonal recurrent kernel, zero bias with the forget
    block set to 1 (unit_forget_bias).

    recurrent_dropout: in training (forward gets an rng), the recurrent matmul reads
    h_{t-1} * keep instead of h_{t-1}, with one inverted-dropout mask keep (B, H) for all steps,
    as Keras's LSTM(recurrent_dropout=...) does; the states themselves are not dropped.

    implementation: "fast" (default), the engine (`numpy_lstm.engine`: batch rows split over
    worker processes, loops laid out for speed), or "reference", the plain functions of
    `numpy_lstm.reference`, one line per equation. Both compute the same numbers (tested to
    1e-10 in float64); the reference is several times slower.
    """

    def __init__(self, input_dim, units, rng, return_sequences=False, dtype=np.float32,
                 recurrent_dropout=0.0, implementation="fast"):
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be 'fast' or 'reference', got {implementation!r}")
        H = units
        self.units = units
        self.return_sequences = return_sequences
        self.implementation = implementation
        self.recurrent_dropout = Dropout(recurrent_dropout)
        self.kernel = glorot_uniform(rng, (input_dim, 4 * H)).astype(dtype)
        self.recurrent_kernel = orthogonal(rng, (H, 4 * H)).astype(dtype)
        self.bias = np.zeros(4 * H, dtype)
        self.bias[H:2 * H] = 1.0
        self.workspace = engine.Workspace()     # the fast engine's buffers for this layer

    @property
    def weights(self):
        return [self.kernel, self.recurrent_kernel, self.bias]

    def forward(self, x, mask=None, initial_state=None, rng=None):
        """Run the sequence.

        x: (B, T, E); mask: bool (B, T) or None; initial_state: (h0 (B, H), c0 (B, H)) or None
        for zeros; rng: a Generator in training (recurrent dropout), else None. Returns
        (out, cache) with out the last state h_T (B, H) (h0 when T = 0), or every state
        (B, T, H) when return_sequences.
        """
        x = np.asarray(x)
        keep = self.recurrent_dropout.mask((x.shape[0], self.units), self.kernel.dtype, rng)
        if self.implementation == "fast":
            return engine.lstm_forward(self.weights, x, mask, initial_state, keep,
                                       self.return_sequences, self.workspace)
        return self._reference_forward(x, mask, initial_state, keep)

    def backward(self, dout, cache):
        """Backprop through time.

        dout: (B, H) for the last state, or (B, T, H) with return_sequences.
        Returns (dx (B, T, E), (dh0 (B, H), dc0 (B, H)), [dkernel, drecurrent_kernel, dbias]).
        The fast engine's cache is released: a second backward on it is an error.
        """
        if self.implementation == "fast":
            return engine.lstm_backward(dout, cache)
        return self._reference_backward(np.asarray(dout, self.kernel.dtype), cache)

    def _reference_forward(self, x, mask, initial_state, keep):
        """forward() by `reference.lstm_forward`, which returns every state; cache None when T = 0."""
        dtype = self.kernel.dtype
        x = np.asarray(x, dtype)
        B, T, _ = x.shape
        h0, c0 = (None, None) if initial_state is None else (np.asarray(s, dtype) for s in initial_state)
        if T == 0:          # no step: the state passes through
            h0 = np.zeros((B, self.units), dtype) if h0 is None else h0
            return (np.zeros((B, 0, self.units), dtype) if self.return_sequences else h0), None
        mask = None if mask is None else np.asarray(mask, bool)
        hs, cache = reference.lstm_forward(x, *self.weights, h0, c0, mask, keep)
        return (hs if self.return_sequences else hs[:, -1]), cache

    def _reference_backward(self, dout, cache):
        """backward() by `reference.lstm_backward`, which takes the gradient of every state."""
        if cache is None:   # T = 0: out was h0 (or no state at all)
            dh0 = np.zeros((len(dout), self.units), dout.dtype) if self.return_sequences else dout
            dx = np.zeros((len(dout), 0, len(self.kernel)), dout.dtype)
            return dx, (dh0, np.zeros_like(dh0)), [np.zeros_like(w) for w in self.weights]
        if self.return_sequences:
            dhs = dout
        else:               # only h_T is an output: the other states' own gradients are zero
            dhs = np.zeros((len(dout), len(cache.steps), self.units), dout.dtype)
            dhs[:, -1] = dout
        dx, dh0, dc0, *grads = reference.lstm_backward(dhs, cache)
        return dx, (dh0, dc0), grads


class Dropout:
    """Inverted dropout: zero each unit with probability `rate`, scale the rest by 1 / (1 - rate).

    `shared_axis` repeats one mask along that axis; on (B, T, E) inputs with shared_axis=1 every
    time step of a sequence loses the same features, as Keras's LSTM(dropout=...) does. Active
    only when forward gets an rng (training); otherwise the identity.
    """

    def __init__(self, rate, shared_axis=None):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.shared_axis = shared_axis

    def mask(self, shape, dtype, rng=None):
        """The scaled keep mask for inputs of this shape (shared_axis of size 1), or None when
        inactive (no rng, or rate 0)."""
        if rng is None or self.rate == 0.0:
            return None
        shape = list(shape)
        if self.shared_axis is not None:
            shape[self.shared_axis] = 1
        dtype = np.dtype(dtype)
        return (rng.random(shape) >= self.rate).astype(dtype) / dtype.type(1.0 - self.rate)

    def forward(self, x, rng=None):
        """x (any shape) -> (out, cache); cache is the scaled mask, or None when inactive."""
        keep = self.mask(x.shape, x.dtype, rng)
        return (x, None) if keep is None else (x * keep, keep)

    def backward(self, dout, keep):
        """dout like x -> dx."""
        return dout if keep is None else dout * keep


class TimePooling:
    """Summarise a sequence of states (B, T, H) as one vector (B, H), over unmasked steps only.

    mode "mean": the average of the states; "max": the largest value of each unit. A row with
    no unmasked step gives zeros. ("last" needs no layer: it is LSTM(return_sequences=False).)
    """

    def __init__(self, mode):
        if mode not in ("mean", "max"):
            raise ValueError(f"pooling mode must be 'mean' or 'max', got {mode!r}")
        self.mode = mode

    def forward(self, h, mask=None):
        """h (B, T, H), mask bool (B, T) or None -> (out (B, H), cache)."""
        B, T, H = h.shape
        m = np.ones((B, T, 1), bool) if mask is None else mask[:, :, None]
        if self.mode == "mean":
            count = np.maximum(m.sum(axis=1), 1).astype(h.dtype)           # (B, 1)
            return np.where(m, h, 0).sum(axis=1) / count, (m, count)
        masked = np.where(m, h, -np.inf)
        arg = masked.argmax(axis=1)                                         # (B, H)
        out = np.take_along_axis(h, arg[:, None, :], axis=1)[:, 0]
        out = np.where(m.any(axis=1), out, 0)
        return out, (m, arg, T)

    def backward(self, dout, cache):
        """dout (B, H) -> dh (B, T, H): spread evenly (mean) or routed to each maximum (max)."""
        if self.mode == "mean":
            m, count = cache
            return np.where(m, (dout / count)[:, None, :], 0)
        m, arg, T = cache
        dh = np.zeros((dout.shape[0], T, dout.shape[1]), dout.dtype)
        np.put_along_axis(dh, arg[:, None, :], np.where(m.any(axis=1), dout, 0)[:, None, :], axis=1)
        return dh


class Bidirectional:
    """Two LSTMs over one sequence, one reading it forward and one backward, outputs side by side.

    out (B, 2H) holds [h_T of the forward pass, h of the backward pass after reading x_1];
    with return_sequences, (B, T, 2H) with both halves aligned to the input's time steps.
    Weights, in Keras's order: the forward LSTM's three, then the backward LSTM's three.
    A mask works as for LSTM: reversed, pre-padding becomes trailing padding that the backward
    pass carries its state through. No initial state: both passes start from zeros.
    implementation: both LSTMs' (see LSTM).
    """

    def __init__(self, input_dim, units, rng, return_sequences=False, dtype=np.float32,
                 recurrent_dropout=0.0, implementation="fast"):
        self.units = units
        self.return_sequences = return_sequences
        self.forward_layer = LSTM(input_dim, units, rng, return_sequences, dtype, recurrent_dropout,
                                  implementation)
        self.backward_layer = LSTM(input_dim, units, rng, return_sequences, dtype, recurrent_dropout,
                                   implementation)

    @property
    def weights(self):
        return self.forward_layer.weights + self.backward_layer.weights

    def forward(self, x, mask=None, rng=None):
        """x (B, T, E), mask (B, T) or None, rng (training) or None -> (out (B, 2H) or (B, T, 2H), cache)."""
        out_f, cache_f = self.forward_layer.forward(x, mask, rng=rng)
        out_b, cache_b = self.backward_layer.forward(x[:, ::-1], None if mask is None else mask[:, ::-1], rng=rng)
        if self.return_sequences:
            out_b = out_b[:, ::-1]
        return np.concatenate([out_f, out_b], axis=-1), (cache_f, cache_b)

    def backward(self, dout, cache):
        """dout like out -> (dx (B, T, E), None, [forward's three gradients, backward's three])."""
        cache_f, cache_b = cache
        H = self.units
        dout_f, dout_b = dout[..., :H], dout[..., H:]
        if self.return_sequences:
            dout_b = dout_b[:, ::-1]
        dx_f, _, grads_f = self.forward_layer.backward(dout_f, cache_f)
        dx_b, _, grads_b = self.backward_layer.backward(dout_b, cache_b)
        return dx_f + dx_b[:, ::-1], None, grads_f + grads_b
