"""The LSTM's forward time loop on one part of a batch, in the calling process or in a worker.

The same equations as `numpy_lstm.reference`, laid out for speed (docs/engine.md says what each
layout bought): arrays time-major and batch-last; the input part of the pre-activations (bias
folded in) computed a block of steps at a time in one large matmul (`InputPart`), so that a step
runs only the recurrent matmul (`RecurrentPart`) and the cell's element-wise ops (`cell_step`);
gate blocks reordered so that one tanh serves all four (`loop_weights`); each step's gates, cell
state and tanh(c_t) side by side in one array, `cells`, so that pairs of products are one call
(slots `TANH_C` .. `C_PREV`). Every function takes the
weights explicitly (Keras's kernel (E, 4H), recurrent_kernel (H, 4H), bias (4H,)), so that a
worker process runs them on the weights it was sent. numpy_lstm/engine/backward.py runs the loop
back with the `LoopCache` that `forward_rows` returns.

Shapes: B rows of this part, T time steps, E input features, H units.
"""
import sys

import numpy as np

from . import cores, sidethread

# Columns (steps * B) of a block of steps whose input part of z_t the forward computes in one
# matmul: enough for the matmul to run near its peak, few enough to stay in cache.
BLOCK_COLUMNS = 512
# BLAS kernels on which the batch-last step matmuls measured faster at every size, against
# batch-first from 1,024 units on the others (docs/engine.md, "Batch-first step matmuls")
BATCH_LAST_BLAS = frozenset({"SkylakeX"})
# Recurrent weights of at least this many bytes (H >= 1024 in float32) run the steps' matmuls
# batch-first (batch_first_step), except on BATCH_LAST_BLAS
BATCH_FIRST_MIN_BYTES = sys.maxsize if cores.blas_architecture() in BATCH_LAST_BLAS else 16 << 20
# From this many units on, the batch-last step matmuls read C-ordered weights (recurrent_order,
# backward.RecurrentGradient)
ROW_MAJOR_MIN_UNITS = 256
# Rows and columns of a tile of `scaled_copy` where it reads across the layout it writes, from
# this many elements on (below, the tiles' calls cost more than they save)
CROSS_TILE = 64
CROSS_TILED_MIN_ELEMENTS = 1 << 18
# The slots of a step's (6, H, B) block of the `cells` array (T + 1, 6, H, B): in the forward,
# tanh(c_t), the gates i, f, o, the candidate g = c~, and c_{t-1}; so that [i, f] * [g, c_{t-1}]
# is one multiply, the sigmoid gates i, f, o are one block, and c_t goes to the next step's
# block. Backward writes its own values over them (numpy_lstm/engine/backward.py, DC_PREV ...).
TANH_C, GATE_I, GATE_F, GATE_O, GATE_G, C_PREV = range(6)


def forward_rows(weights, x, mask, initial_state, keep, return_sequences, spare, side_thread=False):
    """The LSTM over one part of the batch, in this process: (out, cache).

    weights: [kernel, recurrent_kernel, bias]; x (B, T, E); mask bool (B, T) or None;
    initial_state (h0 (B, H), c0 (B, H)) or None for zeros; keep (B, H): recurrent dropout's
    scaled mask, or None; spare: the `SpareArrays` that lend the large buffers; side_thread:
    whether the input part's blocks are computed ahead on a `SideThread`. out is h_T (B, H), or
    every state (B, T, H) with return_sequences; cache is a `LoopCache`.

    The loop's arrays are time-major and batch-last: step t's values are a (features, B)
    block, so each gate's values over the part's rows are one contiguous (H, B) block and
    every element-wise op runs as one long loop rather than one short loop per row. The
    pre-activations are z_t = [input weights] @ [x_t; 1] + [recurrent weights] @ h_{t-1}
    (`loop_weights`): the input part does not depend on the recurrence, so it is one large
    matmul for a block of steps (`InputPart`), as cuDNN does, and the step's own matmul is only
    the recurrent part (`RecurrentPart`). The variants, one helper each: with a mask, the loop
    starts at the first step where some row is unmasked (`MaskPlan`) and a partly masked step
    puts the previous state back in its masked rows (`carry_masked_rows`); with recurrent
    dropout the matmul reads h_{t-1} * keep (`dropout_states`).
    """
    kernel, recurrent_kernel, bias = weights
    B, T, E = x.shape
    H = recurrent_kernel.shape[0]
    dtype = kernel.dtype
    plan = MaskPlan(mask, T)
    # xh[t] = [x_t; 1; h_{t-1}] for t < T: backward's input for the weight gradients, and the
    # source of the input part's blocks. The loop writes h_t straight into xh[t + 1] (h_t * keep
    # with recurrent dropout); xh[T] holds the final state.
    xh = np.empty((T + 1, E + 1 + H, B), dtype)
    xh[:T, :E] = x.transpose(1, 2, 0)
    xh[T, :E] = 0.0
    xh[:, E] = 1.0
    # cells[t]: step t's tanh(c_t), gates and c_{t-1} (slots TANH_C .. C_PREV); cells[T] holds c_T only
    cells = spare.borrow("cells", (T + 1, 6, H, B), dtype)
    gates = cells.reshape(T + 1, 6 * H, B)[:, GATE_I * H:C_PREV * H]   # gates[t]: i, f, o, g of step t
    c = cells[:, C_PREV]                        # c[t + 1] is c_t; c[0] is c0
    if initial_state is None:
        xh[0, E + 1:] = 0.0
        c[0] = 0.0
    else:
        xh[0, E + 1:] = np.asarray(initial_state[0]).T
        c[0] = np.asarray(initial_state[1]).T
    input_weights, recurrent_weights = loop_weights(kernel, recurrent_kernel, bias, recurrent_order(H, B, dtype))

    h_in = xh[:, E + 1:]                        # h_in[t]: what the recurrent matmul reads at step t
    hs, keep = dropout_states(h_in, keep)       # hs[t] is h_{t-1}
    t0 = plan.t0
    hs[1:t0 + 1] = hs[0]                        # steps masked in every row
    c[1:t0 + 1] = c[0]
    if keep is not None:                        # the loop writes h_in from t0 + 1 on
        np.multiply(hs[:t0 + 1], keep, out=h_in[:t0 + 1])
    steps = block_steps(T, B)
    blocks = [(lo, min(T, lo + steps)) for lo in range(t0, T, steps)]
    products = np.empty((2, H, B), dtype)       # i * c~ and f * c_{t-1}, for cell_step
    pair = (products, products[0], products[1])
    add_recurrent = RecurrentPart(recurrent_weights, B).add_to
    partial = plan.partial
    # A step's views come as items of one iteration over arrays sliced once for the pass
    # (`step_views`): cheaper than indexing each array at each step, a cost that counts at few rows
    per_step = (gates, gates[:, :3 * H], cells[:, GATE_I:GATE_O], cells[:, GATE_G:], cells[:, TANH_C],
                cells[:, GATE_O])
    with sidethread.running(side_thread and len(blocks) > 1) as side:
        inputs = InputPart(input_weights, xh, gates, blocks, side)
        for k, (lo, hi) in enumerate(blocks):
            inputs.ready(k)                     # the block's input parts, in its gates
            for t, h_prev, h_t, c_t, z, *views in step_views(lo, hi, h_in, hs[1:], c[1:], *per_step):
                add_recurrent(z, h_prev)
                cell_step(z, *views, c_t, h_t, pair)
                if partial[t]:
                    carry_masked_rows(plan.unmasked[t], c[t], c_t, hs[t], h_t)
                if keep is not None:
                    np.multiply(h_t, keep, out=h_in[t + 1])

    if return_sequences:
        out = hs[1:].transpose(2, 0, 1)         # h_1 .. h_T
    else:
        out = hs[T].T.copy()                    # h_T (h0 if T = 0)
    return out, LoopCache(xh, plan, cells, keep, kernel, recurrent_kernel, spare)


def cell_step(z, sig, i_f, g_c, tanh_c, o, c_t, h_t, pair):
    """One step of the cell, from its pre-activations z (4H, B), in the loop's gate layout (z / 2
    for i, f, o; `loop_weights`); every argument is a view of one step of the loop's arrays.

    Writes the gate values i, f, o, c~ over z, the four slots of the step's block of `cells`
    that i_f (2, H, B), the i and f slots, g_c (2, H, B), the c~ and c_{t-1} slots, and o
    (H, B) view, and sig (3H, B), z's first three blocks; then tanh(c_t) into tanh_c (H, B),
    its slot, c_t (H, B) into the next step's block, and h_t (H, B). pair: a (2, H, B) buffer
    and its two halves.
    """
    np.tanh(z, out=z)                           # tanh(z / 2) of i, f, o; c~ = tanh(z_c)
    sig *= 0.5
    sig += 0.5                                  # i, f, o = (1 + tanh(z / 2)) / 2
    products, ig, fc = pair
    np.multiply(i_f, g_c, out=products)         # i * c~, f * c_{t-1}
    np.add(ig, fc, out=c_t)                     # c_t = f * c_{t-1} + i * c~
    np.tanh(c_t, out=tanh_c)
    np.multiply(o, tanh_c, out=h_t)             # h_t = o * tanh(c_t)


def step_views(lo, hi, *arrays, reverse=False):
    """(t, arrays[0][t], arrays[1][t], ...) for t from lo up to hi - 1, or with reverse from
    hi - 1 down to lo: each array sliced once, its steps taken as the items of the iteration."""
    if reverse:
        return zip(range(hi - 1, lo - 1, -1), *(a[lo:hi][::-1] for a in arrays))
    return zip(range(lo, hi), *(a[lo:hi] for a in arrays))


def carry_masked_rows(unmasked, c_prev, c_t, h_prev, h_t):
    """A partly masked step: the masked rows (columns, batch-last) carry the previous state.

    The step ran on them anyway: NumPy's loops run faster on whole blocks than on a selection
    of columns, and backward zeroes whatever it derives from a masked column's gate values.
    unmasked (1, B); the states (H, B).
    """
    masked = ~unmasked
    np.copyto(c_t, c_prev, where=masked)
    np.copyto(h_t, h_prev, where=masked)


def dropout_states(h_in, keep):
    """(hs, keep): where the loop keeps the states h_{t-1}, (T + 1, H, B), and keep (H, B) or None.

    h_in: where the recurrent matmul reads h_{t-1}, h_in[0] holding h0. Without recurrent
    dropout the states are h_in itself. With it, the matmul reads h_{t-1} * keep there, so the
    states live in an array of their own; keep (B, H) comes back batch-last.
    """
    if keep is None:
        return h_in, None
    hs = np.empty(h_in.shape, h_in.dtype)
    hs[0] = h_in[0]
    return hs, np.ascontiguousarray(keep.T)


class RecurrentPart:
    """The step's matmul, z_t += recurrent weights (4H, H) @ h_{t-1} (H, B), in the orientation
    that `batch_first_step` chooses: batch-first, h_{t-1}.T (B, H) @ the weights transposed
    (H, 4H) into a (B, 4H) buffer, whose transpose the add then reads into the batch-last z_t.

    The steps call np.dot: for these 2-D operands it runs the same BLAS call as np.matmul, to
    the bit, with less of NumPy's own work around it, a cost that counts at few rows.
    """

    def __init__(self, recurrent_weights, B):
        H4, H = recurrent_weights.shape
        self.weights = recurrent_weights
        if batch_first_step(H, B, recurrent_weights.dtype):
            self.weights_t = np.ascontiguousarray(recurrent_weights.T)
            self.zh = np.empty((B, H4), recurrent_weights.dtype)
            self.add_to = self._add_batch_first
        else:
            self.zh = np.empty((H4, B), recurrent_weights.dtype)
            self.add_to = self._add_batch_last

    def _add_batch_last(self, z, h):
        """z (4H, B) += recurrent weights @ h (H, B)."""
        zh = self.zh
        np.dot(self.weights, h, out=zh)
        z += zh

    def _add_batch_first(self, z, h):
        zh = self.zh
        np.dot(h.T, self.weights_t, out=zh)
        z += zh.T


def loop_weights(kernel, recurrent_kernel, bias, recurrent_order="F"):
    """(input_weights (4H, E + 1), recurrent_weights (4H, H)): [kernel; bias].T and
    recurrent_kernel.T in the loop's gate layout (i, f, o, c).

    [input_weights, recurrent_weights] times [x_t; 1; h_{t-1}] (E + 1 + H, B) gives all of step
    t's pre-activations, bias included: the input part, which the loop applies to a block of
    steps at once, and the recurrent part, applied step by step. Two rearrangements, both exact
    in floating point: the gate blocks go from Keras's order (i, f, c, o) to (i, f, o, c), so
    that the three sigmoid gates form one block (and [i, f], `cell_step`); and the sigmoid blocks
    are halved, so the loop gets z / 2 for them and one tanh call over all four blocks serves
    every gate: sigmoid(z) = (1 + tanh(z / 2)) / 2. (The other form, 1 / (1 + exp(-z)), would
    round every trained model differently.)

    One scaled copy per gate and source, with no temporaries. input_weights is the transpose of
    a C-ordered (E + 1, 4H) array, where the gate blocks are column blocks; recurrent_weights
    is laid out in `recurrent_order` ("C" or "F"), the layout its step's matmul reads fastest
    (`recurrent_order`). Where that is not the recurrent kernel's own layout (F-ordered, as
    `orthogonal` gives it), it is read across its layout; F-ordered weights of many units are
    copied so in tiles (`scaled_copy`).
    """
    E, H4 = kernel.shape
    H = H4 // 4
    stacked = np.empty((E + 1, H4), kernel.dtype)
    recurrent = np.empty((H4, H), kernel.dtype, order=recurrent_order)
    half, one = np.array([0.5, 1], kernel.dtype)
    # Keras's gate k = 0, 1, 3, 2 (i, f, o, c) goes to the loop's block 0, 1, 2, 3
    for block, (k, scale) in enumerate(((0, half), (1, half), (3, half), (2, one))):
        gate, loop_gate = slice(k * H, (k + 1) * H), slice(block * H, (block + 1) * H)
        np.multiply(kernel[:, gate], scale, out=stacked[:E, loop_gate])
        np.multiply(bias[gate], scale, out=stacked[E, loop_gate])
        scaled_copy(recurrent[loop_gate], recurrent_kernel[:, gate].T, scale)
    return stacked.T, recurrent


def scaled_copy(out, a, scale, tile=CROSS_TILE):
    """out = a * scale, for 2-D arrays of one shape: one multiply, or, where out's columns and a's
    rows are contiguous (a transposing copy, each read across the other's layout) of
    CROSS_TILED_MIN_ELEMENTS or more, by `tiled_copy`: at a power-of-two H the rows of both
    arrays fall on the same cache sets. The same product for every element either way."""
    crossed = out.strides[0] == out.itemsize and a.strides[1] == a.itemsize
    if not crossed or out.size < CROSS_TILED_MIN_ELEMENTS:
        np.multiply(a, scale, out=out)
    else:
        tiled_copy(out, a, scale, tile)


def tiled_copy(out, a, scale=None, tile=CROSS_TILE):
    """out = a (times scale, when given), for 2-D arrays of one shape laid out across each other,
    one (tile, tile) block at a time: a block of each fits the cache, where copying whole rows
    reads one element per row of the other array in turn and misses the cache on nearly every
    read (`scaled_copy`, and backward's `transposed_copy`)."""
    rows, cols = out.shape
    for i in range(0, rows, tile):
        for j in range(0, cols, tile):
            if scale is None:
                out[i:i + tile, j:j + tile] = a[i:i + tile, j:j + tile]
            else:
                np.multiply(a[i:i + tile, j:j + tile], scale, out=out[i:i + tile, j:j + tile])


def recurrent_order(H, B, dtype):
    """The layout, "C" or "F", of the (4H, H) recurrent weights that the step's matmul
    (`RecurrentPart`) reads fastest: F (its transpose C-ordered) batch-first and below
    ROW_MAJOR_MIN_UNITS; C batch-last from there. BLAS computes the same bits either way (its
    kernels differ only in how they pack the operands); the times are in docs/engine.md."""
    if batch_first_step(H, B, dtype) or H < ROW_MAJOR_MIN_UNITS:
        return "F"
    return "C"


def block_steps(T, B):
    """Steps per block of the input part's matmuls: about BLOCK_COLUMNS columns (steps * B)."""
    return max(1, min(T, -(-BLOCK_COLUMNS // max(B, 1))))


def batch_first_step(H, B, dtype):
    """Whether the steps' matmuls run batch-first (`RecurrentPart`, and backward's
    `RecurrentGradient`): once the recurrent weights outgrow the cache (BATCH_FIRST_MIN_BYTES;
    never on the BLAS kernels of BATCH_LAST_BLAS), and at up to 64 rows. Both orientations are
    the same sums of products, up to rounding (BLAS may add in another order); which is faster
    is the BLAS's affair, measured in docs/engine.md.
    """
    return H * H * 4 * np.dtype(dtype).itemsize >= BATCH_FIRST_MIN_BYTES and B <= 64


def copy_swapped(out, a):
    """out (m, n, B) = a (n, m, B) with its first two axes swapped: the copy between the loop's
    time-major arrays and the blocks of steps side by side.

    Each row of B values is contiguous in both, so they are moved as single items of a void
    dtype (4B bytes in float32) rather than B floats at a time: NumPy then runs one inner loop
    over all the rows of a slice, not one per row. At B = 1 the plain copy is already a 2-D
    transpose, and faster; at B = 0 a void item of no bytes has no row to stand for.
    """
    B = a.shape[2]
    if B < 2:
        np.copyto(out, a.transpose(1, 0, 2))
        return
    row = np.dtype((np.void, B * a.itemsize))
    np.copyto(out.view(row)[..., 0], a.view(row)[..., 0].T)


class InputPart:
    """The input part of the pre-activations, [input weights] @ [x_t; 1] (`loop_weights`), a
    block of steps at a time, written into the blocks' gates before their steps add the
    recurrent part.

    input_weights (4H, E + 1); xh (T + 1, E + 1 + H, B) as in forward_rows, of which only the
    [x_t; 1] rows are read; gates (T + 1, 4H, B), a view of the `cells`; blocks: the (lo, hi) steps of each block, in
    order. With a `SideThread`, the first block is computed at once, here, and the others
    there, in order, ahead of the steps (the side thread starts on the second block while this
    one runs the first block's steps); without, each block when `ready` asks for it.
    """

    def __init__(self, input_weights, xh, gates, blocks, side=None):
        E1, (H4, B) = input_weights.shape[1], gates.shape[1:]
        steps = max((hi - lo for lo, hi in blocks), default=0)
        self.weights, self.xh, self.gates, self.blocks, self.side = input_weights, xh, gates, blocks, side
        self.x_cols = np.empty((E1, steps, B), gates.dtype)   # a block's [x_t; 1], side by side
        self.zx = np.empty((H4, steps, B), gates.dtype)       # its input part of z_t
        if side is not None:
            self._compute(*blocks[0])
            for lo, hi in blocks[1:]:
                side.call(self._compute, lo, hi)

    def ready(self, k):
        """Return once block k's input parts are in its gates."""
        if self.side is None:
            self._compute(*self.blocks[k])
        elif k:
            self.side.wait(k)       # the side thread's k-th call is block k's: nothing else queues there

    def _compute(self, lo, hi):
        (E1, _, B), n = self.x_cols.shape, hi - lo
        x_cols, zx = self.x_cols[:, :n], self.zx[:, :n]
        copy_swapped(x_cols, self.xh[lo:hi, :E1])
        np.matmul(self.weights, x_cols.reshape(E1, n * B), out=zx.reshape(len(zx), n * B))
        # The block's input parts go into their steps' gates in one copy, so that each step
        # adds its recurrent part to a contiguous block rather than reading zx[:, t - lo], B
        # values every steps * B (the same sums: addition commutes, so the same bits).
        copy_swapped(self.gates[lo:hi], zx)


class MaskPlan:
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


class LoopCache:
    """What `forward_rows` keeps for backward: the loop's arrays and the weights it ran with.

    xh, plan, keep as in forward_rows; cells (T + 1, 6, H, B): each step's tanh(c_t), gates and
    c_{t-1} (slots TANH_C .. C_PREV); kernel and recurrent_kernel, the weights of the forward pass.
    Backward writes its gradients over the cells, then `release` gives them back to the spare
    arrays they came from. A cache dropped without a backward (evaluation, prediction) gives
    them back as it goes, so that a run of forwards reuses one buffer.
    """

    def __init__(self, xh, plan, cells, keep, kernel, recurrent_kernel, spare):
        self.xh, self.plan, self.cells, self.keep = xh, plan, cells, keep
        self.kernel, self.recurrent_kernel = kernel, recurrent_kernel
        self.spare = spare

    def release(self):
        """Give the large buffer back; the cache can serve no further backward."""
        if self.cells is not None:
            self.spare.give_back("cells", self.cells)
            self.cells = None

    def __del__(self):
        self.release()
