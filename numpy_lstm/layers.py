"""The tutorial's layers, by hand: Embedding -> LSTM -> Dense.

Every layer follows one pattern (after CS231n's rnn_layers): `forward` returns the output and a
cache of what backward needs; `backward` takes the upstream gradient and that cache and returns
the gradients. Each layer lists its weights in `weights`, in Keras's order, and `backward`
returns their gradients in the same order.

Shapes: B batch, T time steps, E embedding width, H LSTM units, V vocabulary size.
"""
import threading

import numpy as np

from . import _threads
from .initializers import glorot_uniform, orthogonal

# Elements of the block of gate-derivative factors that LSTM.backward fills before running the
# block's steps: small enough to stay in cache, large enough to amortise NumPy's per-call cost.
_BACKWARD_BLOCK = 1 << 17


def sigmoid(z, out=None):
    """Logistic function, computed as 0.5 * (1 + tanh(z / 2)).

    The identity needs no exp, so it cannot overflow at any |z| (1 / (1 + exp(-z)) does for
    z << 0), and it runs in place when `out` is `z`.
    """
    out = np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


class Embedding:
    """Lookup table: ids (B, T) -> vectors (B, T, E). Keras init uniform(-0.05, 0.05)."""

    def __init__(self, input_dim, output_dim, rng, dtype=np.float32):
        self.embeddings = rng.uniform(-0.05, 0.05, (input_dim, output_dim)).astype(dtype)

    @property
    def weights(self):
        return [self.embeddings]

    def forward(self, ids):
        """ids: int (B, T) -> (out (B, T, E), cache)."""
        return self.embeddings[ids], ids

    def backward(self, dout, ids):
        """dout (B, T, E) -> [dembeddings (V, E)].

        A token id that occurs n times receives the sum of its n upstream rows (`d[ids] += dout`
        would keep only one). The sums are np.bincount of the ids weighted by one column of dout
        at a time: several times faster than the scatter-add np.add.at, and summed in float64.
        """
        V, E = self.embeddings.shape
        ids = np.asarray(ids)
        if dout.ndim == 3 and dout.strides[0] < dout.strides[1]:
            ids, dout = ids.T, dout.transpose(1, 0, 2)   # time-major in memory: read it in order
        flat_ids = ids.ravel()
        flat_dout = dout.reshape(-1, E)
        dembeddings = np.empty((V, E), self.embeddings.dtype)
        for j in range(E):
            dembeddings[:, j] = np.bincount(flat_ids, weights=flat_dout[:, j], minlength=V)
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
    """

    def __init__(self, input_dim, units, rng, return_sequences=False, dtype=np.float32):
        H = units
        self.units = units
        self.return_sequences = return_sequences
        self.kernel = glorot_uniform(rng, (input_dim, 4 * H)).astype(dtype)
        self.recurrent_kernel = orthogonal(rng, (H, 4 * H)).astype(dtype)
        self.bias = np.zeros(4 * H, dtype)
        self.bias[H:2 * H] = 1.0
        self._spare = _SpareArrays()

    @property
    def weights(self):
        return [self.kernel, self.recurrent_kernel, self.bias]

    def _loop_weights(self):
        """The stacked weights [[kernel], [recurrent_kernel], [bias]] (E + H + 1, 4H), loop layout.

        One matmul of [x_t, h_{t-1}, 1] with this matrix gives all of step t's pre-activations,
        bias included. Two rearrangements, both exact in floating point: the gate blocks go from
        Keras's order (i, f, c, o) to (i, f, o, c), so that the three sigmoid gates form one
        block; and the sigmoid blocks are negated, so the loop gets -z for them and computes
        sigmoid(z) = 1 / (1 + exp(-z)) without a separate negation.
        """
        stacked = np.concatenate([self.kernel, self.recurrent_kernel, self.bias[None, :]])
        i, f, c, o = np.split(stacked, 4, axis=1)
        return np.concatenate([-i, -f, -o, c], axis=1)

    def forward(self, x, mask=None, initial_state=None):
        """Run the sequence.

        x: (B, T, E); mask: bool (B, T) or None; initial_state: (h0 (B, H), c0 (B, H)) or None
        for zeros. Returns (out, cache) with out the last state h_T (B, H), or every state
        (B, T, H) when return_sequences.

        How it runs: arrays are time-major (T, B, ...). The batch rows are cut into slices, one
        per worker thread (`numpy_lstm._threads`), and each thread runs the time loop on its own
        rows; a slice's rows at one step are one contiguous block. Rows never interact, so the
        split changes no result. With a pre-padding mask (each row: padding, then tokens) the
        rows are first reordered by where their tokens start (see `_RowPlan`), so that at each
        step the rows already started are a leading block of their slice: the step runs on those
        rows only, and a row that has not started simply keeps (h0, c0), exactly as masking says.
        """
        B, T, E = x.shape
        H = self.units
        dtype = self.kernel.dtype
        plan = _RowPlan(mask, B, T)
        order = plan.order                     # row j of the loop's arrays is row order[j] of x
        # xh[t] = [x_t, h_{t-1}, 1] for t < T: the loop's matmul input, and backward's input for
        # the weight gradients. The loop writes h_t straight into xh[t + 1]; xh[T] holds h_T.
        xh = np.empty((T + 1, B, E + H + 1), dtype)
        xh[:T, :, :E] = (x if order is None else x[order]).transpose(1, 0, 2)
        xh[T, :, :E] = 0.0
        xh[:, :, E + H] = 1.0
        c = self._spare.take((T + 1, B, H), dtype)      # c[t + 1] is c_t; c[0] is c0
        if initial_state is None:
            xh[0, :, E:E + H] = 0.0
            c[0] = 0.0
        else:
            h0, c0 = initial_state
            xh[0, :, E:E + H] = h0 if order is None else np.asarray(h0)[order]
            c[0] = c0 if order is None else np.asarray(c0)[order]
        gates = self._spare.take((T, B, 4 * H), dtype)  # gate values i, f, o, c~ of each step
        tanh_c = self._spare.take((T, B, H), dtype)     # tanh(c_t)
        weights = self._loop_weights()

        def run_slice(b0, b1):
            xhs, gs, cs, tcs = xh[:, b0:b1], gates[:, b0:b1], c[:, b0:b1], tanh_c[:, b0:b1]
            hs = xhs[..., E:E + H]                        # hs[t] is h_{t-1}
            t0, active, partial, unmasked = plan.slice_steps(b0, b1)
            hs[1:t0 + 1] = hs[0]                          # steps masked in every row
            cs[1:t0 + 1] = cs[0]
            for r, start in plan.late_rows(b0, b1):       # before its first token a row keeps
                hs[1:start + 1, r] = hs[0, r]             # (h0, c0); zero gates there give
                cs[1:start + 1, r] = cs[0, r]             # backward finite, unused factors
                gs[:start, r] = 0.0
                tcs[:start, r] = 0.0
            ig = np.empty((b1 - b0, H), dtype)
            with np.errstate(over="ignore"):  # exp(-z) = inf for z << 0 gives sigmoid 0, rightly
                for t in range(t0, T):
                    k = active[t]                             # rows :k have started
                    z = gs[t, :k]
                    np.matmul(xhs[t, :k], weights, out=z)     # pre-activations, loop layout
                    sig = z[:, :3 * H]                        # -z of i, f, o
                    np.exp(sig, out=sig)
                    sig += 1.0
                    np.divide(1.0, sig, out=sig)              # i, f, o = 1 / (1 + exp(-z))
                    g = z[:, 3 * H:]
                    np.tanh(g, out=g)                         # c~ = tanh(z_c)
                    i, f, o = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H]
                    c_t = cs[t + 1, :k]
                    np.multiply(f, cs[t, :k], out=c_t)
                    np.multiply(i, g, out=ig[:k])
                    c_t += ig[:k]                             # c_t = f * c_{t-1} + i * c~
                    np.tanh(c_t, out=tcs[t, :k])
                    np.multiply(o, tcs[t, :k], out=hs[t + 1, :k])  # h_t = o * tanh(c_t)
                    if partial[t]:
                        # A mask with holes: masked rows carry the previous state.
                        masked = ~unmasked[t]
                        np.copyto(c_t, cs[t], where=masked)
                        np.copyto(hs[t + 1], hs[t], where=masked)

        _threads.run_split(run_slice, plan.slices)
        if self.return_sequences:
            out = plan.restore(xh[1:, :, E:E + H].transpose(1, 0, 2))   # h_1 .. h_T
        else:
            out = plan.restore(xh[T, :, E:E + H].copy())                # h_T (h0 if T = 0)
        # A list, not a tuple: backward empties it, since it overwrites the gates with dz.
        cache = [xh, plan, gates, c, tanh_c]
        return out, cache

    def backward(self, dout, cache):
        """Backprop through time.

        dout: (B, H) for the last state, or (B, T, H) with return_sequences.
        Returns (dx (B, T, E), (dh0 (B, H), dc0 (B, H)), [dkernel, drecurrent_kernel, dbias]).

        The loop runs on the forward's slices and row order, one thread per slice. Per step only
        dh_t and dc_t carry the recurrence; the gate derivatives that multiply them do not, so
        they are computed for a block of steps at a time, in a few large element-wise ops, before
        the block's steps run. One matmul per step, dz_t @ [kernel; recurrent_kernel].T, gives
        both dx_t and dh_{t-1}. The cache is spent: dz overwrites the gates.
        """
        if cache[2] is None:
            raise ValueError("this LSTM cache was used by an earlier backward: run forward again")
        xh, plan, gates, c, tanh_c = cache
        T, B, _ = gates.shape
        H = self.units
        E = xh.shape[2] - H - 1
        dtype = gates.dtype
        dz = gates  # dL/dz_t (Keras gate order i, f, c, o) overwrites the gates, block by block
        dxh = np.empty((T, B, E + H), dtype)    # dxh[t] = [dx_t, dh_{t-1} through step t]
        dh0 = np.empty((B, H), dtype)
        dc0 = np.empty((B, H), dtype)
        dout = plan.reorder(np.asarray(dout, dtype))
        if self.return_sequences:
            dh_seq = dout.transpose(1, 0, 2)                        # (T, B, H)
            dh_last = np.zeros((B, H), dtype)
        else:
            dh_seq = None
            dh_last = dout
        weights_t = np.ascontiguousarray(np.concatenate([self.kernel, self.recurrent_kernel]).T)

        def run_slice(b0, b1):
            n = b1 - b0
            t0, active, partial, unmasked = plan.slice_steps(b0, b1)
            gs, cs, tcs = gates[:, b0:b1], c[:, b0:b1], tanh_c[:, b0:b1]
            dzs, dxhs = gs, dxh[:, b0:b1]
            dhs = None if dh_seq is None else dh_seq[:, b0:b1]
            dzs[:t0] = 0.0                    # steps masked in every row: no gradient through them
            dxhs[:t0, :, :E] = 0.0
            dh = dh_last[b0:b1].copy()        # dL/dh_t, from the step after t and from dout
            dc_next = np.zeros((n, H), dtype)
            dc = np.empty((n, H), dtype)
            carried = np.empty((n, H), dtype)
            steps = max(1, min(T, _BACKWARD_BLOCK // (n * 6 * H)))
            # factor[j, :, k] turns dc_t (gates i, f, c~) or dh_t (gate o) into dz of gate k at
            # step lo + j; dc_factor[j] = o (1 - tanh(c_t)^2) turns dh_t into its share of dc_t.
            factor = np.empty((steps, n, 4, H), dtype)
            dc_factor = np.empty((steps, n, H), dtype)
            forget = np.empty((steps, n, H), dtype)   # f, kept: dz_t will overwrite gates[t]
            for hi in range(T, t0, -steps):
                lo = max(t0, hi - steps)
                blk = gs[lo:hi]
                i, o, g = blk[..., :H], blk[..., 2 * H:3 * H], blk[..., 3 * H:]
                tc, c_prev = tcs[lo:hi], cs[lo:hi]
                fi, ff, fg, fo = (factor[:hi - lo, :, j] for j in range(4))
                fc = dc_factor[:hi - lo]
                f = forget[:hi - lo]
                np.copyto(f, blk[..., H:2 * H])   # the forget gate
                np.subtract(1.0, i, out=fi)
                fi *= i
                fi *= g                       # dz_i = dc * c~ i (1 - i)
                np.subtract(1.0, f, out=ff)
                ff *= f
                ff *= c_prev                  # dz_f = dc * c_{t-1} f (1 - f)
                np.multiply(g, g, out=fg)
                np.subtract(1.0, fg, out=fg)
                fg *= i                       # dz_c = dc * i (1 - c~^2)
                np.subtract(1.0, o, out=fo)
                fo *= o
                fo *= tc                      # dz_o = dh * tanh(c_t) o (1 - o)
                np.multiply(tc, tc, out=fc)
                np.subtract(1.0, fc, out=fc)
                fc *= o                       # dc_t = dc_{t+1} f_{t+1} + dh * o (1 - tanh(c_t)^2)
                for t in range(hi - 1, lo - 1, -1):
                    j = t - lo
                    k = active[t]             # rows :k have started; the others pass dh, dc on
                    if dhs is not None:
                        dh += dhs[t]          # the step's own output gradient
                    np.multiply(dh[:k], fc[j, :k], out=dc[:k])
                    dc[:k] += dc_next[:k]
                    dz_t = dzs[t]
                    dz_gates = dz_t[:k].reshape(k, 4, H)
                    np.multiply(factor[j, :k, :3], dc[:k, None, :], out=dz_gates[:, :3])
                    np.multiply(factor[j, :k, 3], dh[:k], out=dz_gates[:, 3])
                    if k < n:
                        dz_t[k:] = 0.0
                        dxhs[t, k:, :E] = 0.0
                    if not partial[t]:
                        np.multiply(dc[:k], f[j, :k], out=dc_next[:k])      # dc_{t-1}
                        np.matmul(dz_t[:k], weights_t, out=dxhs[t, :k])     # dx_t, dh_{t-1}
                        np.copyto(dh[:k], dxhs[t, :k, E:])
                    else:
                        # A mask with holes: a masked step is the identity on (h, c), so
                        # gradients pass straight through it.
                        m = unmasked[t]
                        dz_t *= m
                        np.multiply(dc, f[j], out=carried)
                        np.copyto(dc_next, carried, where=m)
                        np.matmul(dz_t, weights_t, out=dxhs[t])             # zero on masked rows
                        np.copyto(dh, dxhs[t, :, E:], where=m)
            if dhs is not None:
                for t in range(t0 - 1, -1, -1):   # skipped, masked steps: their output is h0
                    dh += dhs[t]
            dh0[b0:b1] = dh
            dc0[b0:b1] = dc_next

        _threads.run_split(run_slice, plan.slices)

        # The weights are shared across time, so their gradients are sums over all steps and rows:
        # [dkernel; drecurrent_kernel; dbias] = sum_t [x_t, h_{t-1}, 1].T @ dz_t, one matmul over
        # the (T * B) rows, after the threads have joined (its columns shared out among them).
        dweights = _threads.matmul_columns(xh[:T].reshape(T * B, E + H + 1).T,
                                           dz.reshape(T * B, 4 * H))
        dkernel, drecurrent, dbias = dweights[:E], dweights[E:E + H], dweights[E + H]
        cache[2:5] = [None] * 3               # the gates are spent: hand the big arrays back
        self._spare.give(gates, c, tanh_c)
        dx = plan.restore(dxh[:, :, :E].transpose(1, 0, 2))
        return dx, (plan.restore(dh0), plan.restore(dc0)), [dkernel, drecurrent, dbias]

class _SpareArrays:
    """A few large arrays that LSTM.backward hands back for the next forward to reuse.

    A new array's pages are mapped on first touch, which costs here about 10-15 ms per 50 MB:
    a sizeable share of a forward + backward at the tutorial's shapes. Arrays are kept flat and
    lent out as views of the requested shape; only arrays that never leave the layer go here.
    """

    KEEP = 3

    def __init__(self):
        self._arrays = []
        self._lock = threading.Lock()

    def take(self, shape, dtype):
        """An uninitialised array of this shape and dtype, reused when one is large enough."""
        size = int(np.prod(shape))
        with self._lock:
            fits = [k for k, a in enumerate(self._arrays) if a.dtype == dtype and a.size >= size]
            if fits:
                best = self._arrays.pop(min(fits, key=lambda k: self._arrays[k].size))
                return best[:size].reshape(shape)
        return np.empty(size, dtype).reshape(shape)

    def give(self, *arrays):
        """Return arrays obtained from `take`; only the KEEP largest are kept."""
        with self._lock:
            for a in arrays:
                flat = a if a.base is None else a.base
                if flat.ndim == 1 and all(flat is not b for b in self._arrays):
                    self._arrays.append(flat)
            self._arrays.sort(key=lambda a: a.size, reverse=True)
            del self._arrays[self.KEEP:]



class _RowPlan:
    """How LSTM.forward and backward share the batch rows among threads, and where each starts.

    Without a mask: the rows as they are, cut into `_threads.split_rows` slices; every row is
    active at every step. With a pre-padding mask (every row masked, then unmasked to the end,
    as pad_sequences(padding="pre") and mask_zero give): the rows are sorted by their first
    unmasked step and dealt out to the slices in turn (row j of the sorted order to slice
    j mod P), so the slices get similar mixes of lengths and, within a slice, the rows that have
    started at step t are its first `active[t]` rows. Any other mask (holes in the middle):
    rows as they are, and masked rows copy their previous state at each partial step.

    The loop's arrays hold the rows in `order` (None: as given); `restore` and `reorder` map
    arrays with a batch axis first between the two orders.
    """

    def __init__(self, mask, B, T):
        self.T = T
        self.slices = _threads.split_rows(B)
        self.order = self._inverse = None
        self.unmasked = None                     # (T, B, 1) in loop order, for masks with holes
        if mask is None or T == 0:
            self.start = np.zeros(B, int)
            return
        mask = np.asarray(mask, bool)
        started = np.logical_or.accumulate(mask, axis=1)
        self.start = np.where(started.any(axis=1), started.argmax(axis=1), T)
        if not np.array_equal(started, mask):    # a hole after the first token
            self.unmasked = np.ascontiguousarray(mask.T)[:, :, None]
            return
        if not self.start.any():                 # nothing masked: no need to reorder
            return
        by_start = np.argsort(self.start, kind="stable")
        parts = len(self.slices)
        self.order = np.concatenate([by_start[p::parts] for p in range(parts)])
        sizes = [len(by_start[p::parts]) for p in range(parts)]
        bounds = np.cumsum([0] + sizes)
        self.slices = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
        self.start = self.start[self.order]
        self._inverse = np.argsort(self.order)

    def slice_steps(self, b0, b1):
        """For rows b0:b1 (loop order): (t0, active, partial, unmasked).

        t0: the first step at which some row has started (the loop skips the steps before);
        active[t]: how many leading rows have started at step t; partial[t]: the step needs
        the masked-copy treatment (masks with holes only); unmasked: that mask, (T, n, 1).
        """
        T = self.T
        start = self.start[b0:b1]
        t0 = int(start.min()) if len(start) else T
        active = np.searchsorted(start, np.arange(T), side="right").tolist() \
            if self.order is not None else [b1 - b0] * T
        if self.unmasked is None:
            return t0, active, [False] * T, None
        unmasked = self.unmasked[:, b0:b1]
        return t0, active, (~unmasked.all(axis=(1, 2))).tolist(), unmasked

    def late_rows(self, b0, b1):
        """(row within the slice, first step) of the rows of b0:b1 that start after step 0."""
        if self.order is None:
            return []
        return [(r, int(s)) for r, s in enumerate(self.start[b0:b1]) if s > 0]

    def restore(self, a):
        """An array in loop row order (batch axis first) back in the caller's order."""
        return a if self._inverse is None else a[self._inverse]

    def reorder(self, a):
        """An array in the caller's row order (batch axis first) in loop order."""
        return a if self.order is None else a[self.order]


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

    def forward(self, x, rng=None):
        """x (any shape) -> (out, cache); cache is the scaled mask, or None when inactive."""
        if rng is None or self.rate == 0.0:
            return x, None
        shape = list(x.shape)
        if self.shared_axis is not None:
            shape[self.shared_axis] = 1
        keep = (rng.random(shape) >= self.rate).astype(x.dtype) / x.dtype.type(1.0 - self.rate)
        return x * keep, keep

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
    """

    def __init__(self, input_dim, units, rng, return_sequences=False, dtype=np.float32):
        self.units = units
        self.return_sequences = return_sequences
        self.forward_layer = LSTM(input_dim, units, rng, return_sequences, dtype)
        self.backward_layer = LSTM(input_dim, units, rng, return_sequences, dtype)

    @property
    def weights(self):
        return self.forward_layer.weights + self.backward_layer.weights

    def forward(self, x, mask=None):
        """x (B, T, E), mask (B, T) or None -> (out (B, 2H) or (B, T, 2H), cache)."""
        out_f, cache_f = self.forward_layer.forward(x, mask)
        out_b, cache_b = self.backward_layer.forward(x[:, ::-1], None if mask is None else mask[:, ::-1])
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
