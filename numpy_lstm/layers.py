"""The tutorial's layers, by hand: Embedding -> LSTM -> Dense.

Every layer follows one pattern (after CS231n's rnn_layers): `forward` returns the output and a
cache of what backward needs; `backward` takes the upstream gradient and that cache and returns
the gradients. Each layer lists its weights in `weights`, in Keras's order, and `backward`
returns their gradients in the same order.

Shapes: B batch, T time steps, E embedding width, H LSTM units, V vocabulary size.
"""
import numpy as np

from . import _parallel
from .initializers import glorot_uniform, orthogonal

# Elements of the block of gate-derivative factors that LSTM.backward fills before running the
# block's steps: small enough to stay in cache, large enough to amortise NumPy's per-call cost.
_BACKWARD_BLOCK = 1 << 17


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
        dembeddings = np.empty((V, E), self.embeddings.dtype)
        for j in range(E):
            # One feature's column, flattened in the order of flat_ids. The LSTM's dx is a view
            # of a (T, E, B) array, where each column is a run of (T, B) blocks: no transpose.
            column = dout[..., j].ravel()
            dembeddings[:, j] = np.bincount(flat_ids, weights=column, minlength=V)
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
    """

    def __init__(self, input_dim, units, rng, return_sequences=False, dtype=np.float32,
                 recurrent_dropout=0.0):
        H = units
        self.units = units
        self.return_sequences = return_sequences
        self.recurrent_dropout = Dropout(recurrent_dropout)
        self.kernel = glorot_uniform(rng, (input_dim, 4 * H)).astype(dtype)
        self.recurrent_kernel = orthogonal(rng, (H, 4 * H)).astype(dtype)
        self.bias = np.zeros(4 * H, dtype)
        self.bias[H:2 * H] = 1.0
        self.key = _parallel.new_layer_key(self)   # names this layer to the worker processes
        self._spare = _SpareArrays()

    @property
    def weights(self):
        return [self.kernel, self.recurrent_kernel, self.bias]

    def _loop_weights(self):
        """[kernel; recurrent_kernel; bias].T (4H, E + H + 1), in the loop's gate layout.

        This matrix times [x_t; h_{t-1}; 1] (E + H + 1, B) gives all of step t's pre-activations,
        bias included. Two rearrangements, both exact in floating point: the gate blocks go from
        Keras's order (i, f, c, o) to (i, f, o, c), so that the three sigmoid gates form one
        block; and the sigmoid blocks are halved, so the loop gets z / 2 for them and one tanh
        call over all four blocks serves every gate: sigmoid(z) = (1 + tanh(z / 2)) / 2, as in
        `sigmoid`. (On the Intel Xeon here, faster than 1 / (1 + exp(-z)): the forward of a
        tutorial-shaped batch 60 -> 55 ms.)
        """
        stacked = np.concatenate([self.kernel, self.recurrent_kernel, self.bias[None, :]]).T
        i, f, c, o = np.split(stacked, 4)
        return np.concatenate([0.5 * i, 0.5 * f, 0.5 * o, c])

    def forward(self, x, mask=None, initial_state=None, rng=None):
        """Run the sequence.

        x: (B, T, E); mask: bool (B, T) or None; initial_state: (h0 (B, H), c0 (B, H)) or None
        for zeros; rng: a Generator in training (recurrent dropout), else None. Returns
        (out, cache) with out the last state h_T (B, H), or every state (B, T, H) when
        return_sequences.

        The batch rows are cut into parts, one per core (`numpy_lstm._parallel`): this process
        runs the first part and worker processes the others, each the whole time loop on its own
        rows (`_forward_rows`). Rows never interact, so the split changes no output. With a
        pre-padding mask the rows are dealt out to the parts in order of length, so that every
        part gets a similar mix of short and long sequences.
        """
        x = np.asarray(x)
        keep = self.recurrent_dropout.mask((x.shape[0], self.units), self.kernel.dtype, rng)
        parts = _batch_parts(x.shape[0], mask)
        rows = _take_rows
        inputs = [(rows(x, p), rows(mask, p), None if initial_state is None else
                   (rows(initial_state[0], p), rows(initial_state[1], p)), rows(keep, p)) for p in parts]
        results = _parallel.forward_parts(self, inputs)
        out = _gather_rows(parts, [out for out, _ in results])
        return out, (parts, [cache for _, cache in results])

    def backward(self, dout, cache):
        """Backprop through time.

        dout: (B, H) for the last state, or (B, T, H) with return_sequences.
        Returns (dx (B, T, E), (dh0 (B, H), dc0 (B, H)), [dkernel, drecurrent_kernel, dbias]).
        Each part runs where its forward ran; the weight gradients are the sums of the parts'.
        The cache is spent: a second backward on it is an error.
        """
        parts, caches = cache
        dout = np.asarray(dout)
        results = _parallel.backward_parts(self, [_take_rows(dout, p) for p in parts], caches)
        dx = _gather_rows(parts, [r[0] for r in results])
        dh0 = _gather_rows(parts, [r[1][0] for r in results])
        dc0 = _gather_rows(parts, [r[1][1] for r in results])
        grads = [sum(part_grads) for part_grads in zip(*(r[2] for r in results))]
        return dx, (dh0, dc0), grads

    def _forward_rows(self, x, mask, initial_state, keep):
        """forward() on one part of the batch, in this process: (out, cache).

        The loop's arrays are time-major and batch-last: step t's values are a (features, B)
        block, so each gate's values over the part's rows are one contiguous (H, B) block and
        every element-wise op runs as one long loop (on the tutorial's (B, 4H) rows it ran as
        one short loop per row, 2-5x slower). The step's matmul is then
        loop_weights (4H, E + H + 1) @ [x_t; h_{t-1}; 1] (E + H + 1, B). With a mask, the loop
        starts at the first step where some row is unmasked (before it, every row keeps
        (h0, c0)); a step where some rows are masked runs on every row, then puts the previous
        state back in the masked ones (see `_MaskPlan`).
        """
        B, T, E = x.shape
        H = self.units
        dtype = self.kernel.dtype
        plan = _MaskPlan(mask, T)
        # xh[t] = [x_t; h_{t-1}; 1] for t < T: the loop's matmul input, and backward's input for
        # the weight gradients. The loop writes h_t straight into xh[t + 1] (h_t * keep with
        # recurrent dropout, below); xh[T] holds the final state.
        xh = np.empty((T + 1, E + H + 1, B), dtype)
        xh[:T, :E] = x.transpose(1, 2, 0)
        xh[T, :E] = 0.0
        xh[:, E + H] = 1.0
        c = self._spare.take((T + 1, H, B), dtype)      # c[t + 1] is c_t; c[0] is c0
        if initial_state is None:
            xh[0, E:E + H] = 0.0
            c[0] = 0.0
        else:
            xh[0, E:E + H] = np.asarray(initial_state[0]).T
            c[0] = np.asarray(initial_state[1]).T
        gates = self._spare.take((T, 4 * H, B), dtype)  # gate values i, f, o, c~ of each step
        tanh_c = self._spare.take((T, H, B), dtype)     # tanh(c_t)
        weights = self._loop_weights()

        # hs[t] is h_{t-1}. The matmul reads h_{t-1} in xh; with recurrent dropout it reads
        # h_{t-1} * keep there, so the states themselves live in an array of their own.
        h_in = xh[:, E:E + H]
        if keep is None:
            hs = h_in
        else:
            keep = np.ascontiguousarray(keep.T)    # (H, B)
            hs = np.empty((T + 1, H, B), dtype)
            hs[0] = h_in[0]
        t0, partial, unmasked = plan.t0, plan.partial, plan.unmasked
        hs[1:t0 + 1] = hs[0]                          # steps masked in every row
        c[1:t0 + 1] = c[0]
        if keep is not None:                          # the loop writes h_in from t0 + 1 on
            np.multiply(hs[:t0 + 1], keep, out=h_in[:t0 + 1])
        ig = np.empty((H, B), dtype)
        for t in range(t0, T):
            z = gates[t]
            np.matmul(weights, xh[t], out=z)          # pre-activations, loop layout
            np.tanh(z, out=z)                         # tanh(z / 2) of i, f, o; c~ = tanh(z_c)
            sig = z[:3 * H]
            sig *= 0.5
            sig += 0.5                                # i, f, o = (1 + tanh(z / 2)) / 2
            i, f, o, g = z[:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:]
            c_t = c[t + 1]
            np.multiply(f, c[t], out=c_t)
            np.multiply(i, g, out=ig)
            c_t += ig                                 # c_t = f * c_{t-1} + i * c~
            np.tanh(c_t, out=tanh_c[t])
            np.multiply(o, tanh_c[t], out=hs[t + 1])  # h_t = o * tanh(c_t)
            if partial[t]:
                # Masked rows carry the previous state. The step ran on them anyway: NumPy's
                # loops run faster on whole blocks than on a selection of columns, and backward
                # zeroes whatever it derives from a masked column's gate values.
                masked = ~unmasked[t]
                np.copyto(c_t, c[t], where=masked)
                np.copyto(hs[t + 1], hs[t], where=masked)
            if keep is not None:
                np.multiply(hs[t + 1], keep, out=h_in[t + 1])

        if self.return_sequences:
            out = hs[1:].transpose(2, 0, 1)                 # h_1 .. h_T
        else:
            out = hs[T].T.copy()                            # h_T (h0 if T = 0)
        return out, _LoopCache([xh, plan, gates, c, tanh_c, keep], self._spare)

    def _backward_rows(self, dout, cache):
        """backward() on one part of the batch, in this process, with its `_forward_rows` cache.

        Per step only dh_t and dc_t carry the recurrence; the gate derivatives that multiply
        them do not, so they are computed for a block of steps at a time, in a few large
        element-wise ops, before the block's steps run. One matmul per step,
        [kernel; recurrent_kernel] (E + H, 4H) @ dz_t (4H, B), gives both dx_t and dh_{t-1}.
        Arrays are batch-last, as in the forward loop. dz overwrites the gates.
        """
        if cache[2] is None:
            raise ValueError("this LSTM cache was used by an earlier backward: run forward again")
        xh, plan, gates, c, tanh_c, keep = cache
        T, _, B = gates.shape
        H = self.units
        E = xh.shape[1] - H - 1
        dtype = gates.dtype
        dz = gates  # dL/dz_t (Keras gate order i, f, c, o) overwrites the gates, block by block
        dxh = np.empty((T, E + H, B), dtype)    # dxh[t] = [dx_t; dh_{t-1} through step t]
        dout = np.asarray(dout, dtype)
        if self.return_sequences:
            dh_seq = np.ascontiguousarray(dout.transpose(1, 2, 0))   # (T, H, B)
            dh = np.zeros((H, B), dtype)
        else:
            dh_seq = None
            dh = np.ascontiguousarray(dout.T)  # dL/dh_t, from the step after t and from dout
        weights = np.concatenate([self.kernel, self.recurrent_kernel])

        t0, partial, unmasked = plan.t0, plan.partial, plan.unmasked
        dxh[:t0, :E] = 0.0                    # steps masked in every row: no gradient through them
        dc_next = np.zeros((H, B), dtype)
        dc = np.empty((H, B), dtype)
        carried = np.empty((H, B), dtype)
        steps = max(1, min(T, _BACKWARD_BLOCK // (max(B, 1) * 6 * H)))
        # factor[j, k] turns dc_t (gates i, f, c~) or dh_t (gate o) into dz of gate k at step
        # lo + j; dc_factor[j] = o (1 - tanh(c_t)^2) turns dh_t into its share of dc_t.
        factor = np.empty((steps, 4, H, B), dtype)
        dc_factor = np.empty((steps, H, B), dtype)
        forget = np.empty((steps, H, B), dtype)   # f, kept: dz_t will overwrite gates[t]
        # The weights are shared across time, so their gradients are sums over all steps and
        # rows: [dkernel; drecurrent_kernel; dbias] = sum_t [x_t; h_{t-1}; 1] @ dz_t.T. dweights_t
        # (4H, E + H + 1), its transpose, adds up sum_t dz_t @ [x_t; h_{t-1}; 1].T a block of
        # steps at a time, while xh and dz are in cache, as one matmul over the block's
        # steps * B columns: both are first copied to (features, steps, B), so that those
        # columns sit side by side. (A matmul per step sums over B columns only, and one over
        # all T * B columns at the end needs both arrays copied whole: slower, both measured.)
        dweights_t = np.zeros((4 * H, E + H + 1), dtype)
        xh_cols = np.empty((E + H + 1, steps, B), dtype)
        dz_cols = np.empty((4 * H, steps, B), dtype)
        for hi in range(T, t0, -steps):
            lo = max(t0, hi - steps)
            blk = gates[lo:hi]
            i, o, g = blk[:, :H], blk[:, 2 * H:3 * H], blk[:, 3 * H:]
            tc, c_prev = tanh_c[lo:hi], c[lo:hi]
            fi, ff, fg, fo = (factor[:hi - lo, j] for j in range(4))
            fc = dc_factor[:hi - lo]
            f = forget[:hi - lo]
            np.copyto(f, blk[:, H:2 * H])     # the forget gate
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
                if dh_seq is not None:
                    dh += dh_seq[t]       # the step's own output gradient
                np.multiply(dh, fc[j], out=dc)
                dc += dc_next
                dz_t = dz[t]
                dz_gates = dz_t.reshape(4, H, B)
                np.multiply(factor[j, :3], dc, out=dz_gates[:3])
                np.multiply(factor[j, 3], dh, out=dz_gates[3])
                if not partial[t]:
                    np.multiply(dc, f[j], out=dc_next)           # dc_{t-1}
                    np.matmul(weights, dz_t, out=dxh[t])         # dx_t, dh_{t-1}
                    if keep is not None:
                        dxh[t, E:] *= keep        # the matmul read h_{t-1} * keep
                    dh = dxh[t, E:]       # dh_{t-1}, read in place (backward reads only dx of dxh)
                else:
                    # Some rows masked: the step is the identity on their (h, c), so their
                    # gradients pass straight through it and none goes into the step.
                    m = unmasked[t]
                    dz_t *= m
                    np.multiply(dc, f[j], out=carried)
                    np.copyto(dc_next, carried, where=m)
                    np.matmul(weights, dz_t, out=dxh[t])         # dx_t = 0 in masked columns
                    if keep is not None:
                        dxh[t, E:] *= keep
                    np.copyto(dh, dxh[t, E:], where=m)
            x_blk, dz_blk = xh_cols[:, :hi - lo], dz_cols[:, :hi - lo]
            np.copyto(x_blk, xh[lo:hi].transpose(1, 0, 2))
            np.copyto(dz_blk, dz[lo:hi].transpose(1, 0, 2))
            dweights_t += np.matmul(dz_blk.reshape(4 * H, -1), x_blk.reshape(E + H + 1, -1).T)
        if dh_seq is not None:
            for t in range(t0 - 1, -1, -1):   # skipped, masked steps: their output is h0
                dh += dh_seq[t]

        dweights = dweights_t.T.copy()
        dkernel, drecurrent, dbias = dweights[:E], dweights[E:E + H], dweights[E + H]
        cache[2:5] = [None] * 3               # the gates are spent: hand the big arrays back
        self._spare.give(gates, c, tanh_c)
        return dxh[:, :E].transpose(2, 0, 1), (dh.T, dc_next.T), [dkernel, drecurrent, dbias]


class _LoopCache(list):
    """What `_forward_rows` keeps for backward: [xh, plan, gates, c, tanh_c, keep].

    A list, so that backward can empty it: it overwrites the gates with dz, then hands gates, c
    and tanh_c back to the layer's spare arrays. A cache dropped without a backward (evaluation,
    prediction) hands them back as it goes, so that a run of forwards reuses one set of buffers.
    """

    def __init__(self, items, spare):
        super().__init__(items)
        self._spare = spare

    def __del__(self):
        if self[2] is not None:
            self._spare.give(*self[2:5])


class _SpareArrays:
    """A few large arrays that LSTM.backward hands back for the next forward to reuse.

    A new array's pages are mapped on first touch, which costs here about 10-15 ms per 50 MB:
    a sizeable share of a forward + backward at the tutorial's shapes. Arrays are kept flat and
    lent out as views of the requested shape; only arrays that never leave the layer go here.
    A copy of the layer (as sent to a worker process) starts with none.
    """

    KEEP = 3

    def __init__(self):
        self._arrays = []

    def __reduce__(self):
        return _SpareArrays, ()

    def take(self, shape, dtype):
        """An uninitialised array of this shape and dtype, reused when one is large enough."""
        size = int(np.prod(shape))
        fits = [k for k, a in enumerate(self._arrays) if a.dtype == dtype and a.size >= size]
        if fits:
            best = self._arrays.pop(min(fits, key=lambda k: self._arrays[k].size))
            return best[:size].reshape(shape)
        return np.empty(size, dtype).reshape(shape)

    def give(self, *arrays):
        """Return arrays obtained from `take`; only the KEEP largest are kept."""
        for a in arrays:
            flat = a if a.base is None else a.base
            if flat.ndim == 1 and all(flat is not b for b in self._arrays):
                self._arrays.append(flat)
        self._arrays.sort(key=lambda a: a.size, reverse=True)
        del self._arrays[self.KEEP:]


def _token_starts(mask):
    """Each row's first unmasked step (T when it has none), and whether the mask is pre-padding:
    in every row, masked steps only before the first unmasked one."""
    B, T = mask.shape
    started = np.logical_or.accumulate(mask, axis=1)
    start = np.where(started.any(axis=1), started.argmax(axis=1), T)
    return start, np.array_equal(started, mask)


def _batch_parts(B, mask):
    """The rows of each core's part of the batch: slices, or index arrays dealt out by length."""
    slices = _parallel.split_rows(B)
    if len(slices) == 1:
        return [slice(None)]
    if mask is not None and np.shape(mask)[1] > 0:
        start, prepadded = _token_starts(np.asarray(mask, bool))
        if prepadded and start.any():
            by_start = np.argsort(start, kind="stable")
            return [by_start[p::len(slices)] for p in range(len(slices))]
    return [slice(b0, b1) for b0, b1 in slices]


def _take_rows(a, rows):
    """a[rows] along the batch axis (first), None for None."""
    return None if a is None else np.asarray(a)[rows]


def _gather_rows(parts, arrays):
    """The inverse of _take_rows over all parts: one array with every part's rows in place.

    The result has the memory layout of the first part (batch-last for the LSTM's dx), and the
    copies run along memory: parts cut as slices are copied in as blocks; parts dealt out by
    index are stacked as blocks, then put in place by one take along the batch axis. (Assigning
    out[rows] = part directly, with the batch axis innermost in memory, copies element by
    element, several times slower.)
    """
    if len(parts) == 1:
        return arrays[0]
    out = np.empty_like(arrays[0], shape=(sum(len(a) for a in arrays),) + arrays[0].shape[1:])
    if all(isinstance(rows, slice) for rows in parts):
        for rows, a in zip(parts, arrays):
            out[rows] = a
        return out
    stacked = np.empty_like(out)
    bounds = np.cumsum([0] + [len(a) for a in arrays])
    for a, lo, hi in zip(arrays, bounds[:-1], bounds[1:]):
        stacked[lo:hi] = a
    source = np.argsort(np.concatenate(parts))      # out[r] is stacked[source[r]]
    in_memory_order = _parallel.axes_in_memory_order(out)
    batch_axis = int(np.flatnonzero(in_memory_order == 0)[0])
    np.take(stacked.transpose(in_memory_order), source, axis=batch_axis,
            out=out.transpose(in_memory_order), mode="clip")
    return out


class _MaskPlan:
    """What a mask (B, T) asks of the loop.

    t0: the first step at which some row is unmasked. Before it every row keeps (h0, c0), so
    the loop starts there, and backward passes the gradients of the earlier steps straight to
    (h0, c0); pre-padding, as pad_sequences(padding="pre") and mask_zero give, makes t0 the start
    of the longest sequence. partial[t]: some rows are masked at step t; unmasked (T, 1, B), the
    mask, batch-last. Without a mask: t0 0, no partial step.
    """

    def __init__(self, mask, T):
        self.t0, self.partial, self.unmasked = 0, [False] * T, None
        if mask is None or T == 0:
            return
        mask = np.asarray(mask, bool)
        some_row = mask.any(axis=0)
        self.t0 = int(some_row.argmax()) if some_row.any() else T
        self.partial = (~mask.all(axis=0)).tolist()
        self.unmasked = np.ascontiguousarray(mask.T)[:, None, :]


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
    """

    def __init__(self, input_dim, units, rng, return_sequences=False, dtype=np.float32,
                 recurrent_dropout=0.0):
        self.units = units
        self.return_sequences = return_sequences
        self.forward_layer = LSTM(input_dim, units, rng, return_sequences, dtype, recurrent_dropout)
        self.backward_layer = LSTM(input_dim, units, rng, return_sequences, dtype, recurrent_dropout)

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
