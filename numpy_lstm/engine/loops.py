"""The fast LSTM's time loops on one part of a batch, in the calling process or in a worker.

The same equations as `numpy_lstm.reference`, laid out for speed: time-major, batch-last arrays;
per step only the recurrent matmul, the input part of the pre-activations (bias folded in) and,
in backward, dx and the weight gradients computed a block of steps at a time in large matmuls;
gate blocks reordered so that one tanh serves all four; the backward's gate derivatives computed
a block of steps at a time. Every function takes
the weights explicitly (Keras's kernel (E, 4H), recurrent_kernel (H, 4H), bias (4H,)), so that a
worker process runs them on the weights it was sent.

Shapes: B rows of this part, T time steps, E input features, H units.
"""
import numpy as np

from . import sidethread

# Elements of the block of gate-derivative factors that backward_rows fills before running the
# block's steps: small enough to stay in cache, large enough to amortise NumPy's per-call cost.
_BACKWARD_BLOCK = 1 << 17
# Columns (steps * B) of a block of steps whose input part of z_t the forward computes in one
# matmul: enough for the matmul to run near its peak, few enough to stay in cache.
BLOCK_COLUMNS = 512
# Recurrent weights of at least this many bytes (H >= 512 in float32) run the steps' matmuls
# batch-first (batch_first_step)
BATCH_FIRST_MIN_BYTES = 4 << 20


def loop_weights(kernel, recurrent_kernel, bias):
    """[kernel; bias; recurrent_kernel].T (4H, E + 1 + H), in the loop's gate layout.

    This matrix times [x_t; 1; h_{t-1}] (E + 1 + H, B) gives all of step t's pre-activations,
    bias included: its first E + 1 columns are the input part, which the loop applies to a block
    of steps at once, the last H the recurrent part, applied step by step. Two rearrangements,
    both exact in floating point: the gate blocks go from Keras's order (i, f, c, o) to
    (i, f, o, c), so that the three sigmoid gates form one block; and the sigmoid blocks are
    halved, so the loop gets z / 2 for them and one tanh call over all four blocks serves every
    gate: sigmoid(z) = (1 + tanh(z / 2)) / 2. (Faster than 1 / (1 + exp(-z)) on an Intel Xeon
    host: the forward of a tutorial-shaped batch 60 -> 55 ms. Slower on the AMD host, where the
    other form would also round every trained model differently: bench/README.md.)

    Built as the transpose of a C-ordered (E + 1 + H, 4H) array, one scaled copy per gate and
    source: there the gate blocks are column blocks, and only the recurrent kernel (F-ordered,
    as `orthogonal` gives it) is read across its layout. The same array, to the bit, as the
    concatenations that came before, which made three of its size: at (E, H) = (512, 1024),
    36.3 -> 32.1 ms as the best of 5 repeated calls (python -m timeit), 70 -> 45 ms as medians
    of 15 calls interleaved with the old code by a throwaway script (AMD host, 2026-11-30).
    """
    E, H4 = kernel.shape
    H = H4 // 4
    stacked = np.empty((E + 1 + H, H4), kernel.dtype)
    half, one = np.array([0.5, 1], kernel.dtype)
    for rows, weights in ((slice(0, E), kernel), (slice(E, E + 1), bias[None, :]),
                          (slice(E + 1, None), recurrent_kernel)):
        # Keras's gate k = 0, 1, 3, 2 (i, f, o, c) goes to the loop's block 0, 1, 2, 3
        for block, (k, scale) in enumerate(((0, half), (1, half), (3, half), (2, one))):
            np.multiply(weights[:, k * H:(k + 1) * H], scale,
                        out=stacked[rows, block * H:(block + 1) * H])
    return stacked.T


def block_steps(T, B):
    """Steps per block of the input part's matmuls: about BLOCK_COLUMNS columns (steps * B)."""
    return max(1, min(T, -(-BLOCK_COLUMNS // max(B, 1))))


def batch_first_step(H, B, dtype):
    """Whether the steps' matmuls run batch-first. Forward: h_{t-1}.T (B, H) @ the recurrent
    weights transposed (H, 4H) into zh (B, 4H), whose transpose the add of the input part then
    reads into the batch-last gates, instead of recurrent weights (4H, H) @ h_{t-1} (H, B);
    backward: `RecurrentGradient`.

    Both orientations are the same sums of products, up to rounding (BLAS may add in another
    order); which is faster is OpenBLAS's affair. In the loops, on the AMD EPYC host here, one
    core, a busy machine, batch-first paid once the weights outgrow the cache: at
    (B, T, E, H) = (16, 100, 512, 1024) forward 1.32 s -> 0.72 s, and (64, 100, 256, 512)
    forward 0.94-1.09 s -> 0.84-0.90 s (five A/B pairs); at H = 256 it was slower (forward
    0.13-0.24 s -> 0.16-0.27 s). Alone, without the loop around it, the matmul at B = 128 and
    H = 1024 was 1.07x slower batch-first: hence B <= 64.
    """
    return H * H * 4 * np.dtype(dtype).itemsize >= BATCH_FIRST_MIN_BYTES and B <= 64


def forward_rows(weights, x, mask, initial_state, keep, return_sequences, spare, side_thread=False):
    """The LSTM over one part of the batch, in this process: (out, cache).

    weights: [kernel, recurrent_kernel, bias]; x (B, T, E); mask bool (B, T) or None;
    initial_state (h0 (B, H), c0 (B, H)) or None for zeros; keep (B, H): recurrent dropout's
    scaled mask, or None; spare: the `SpareArrays` that lend the large buffers; side_thread:
    whether the input part's blocks are computed ahead on a `SideThread`. out is h_T (B, H), or
    every state (B, T, H) with return_sequences; cache is a `LoopCache`.

    The loop's arrays are time-major and batch-last: step t's values are a (features, B)
    block, so each gate's values over the part's rows are one contiguous (H, B) block and
    every element-wise op runs as one long loop (on the tutorial's (B, 4H) rows it ran as
    one short loop per row, 2-5x slower). The pre-activations are
    z_t = [input weights] @ [x_t; 1] + [recurrent weights] @ h_{t-1} (`loop_weights`): the input
    part does not depend on the recurrence, so it is one large matmul for a block of steps
    (`InputPart`, `block_steps`: their steps * B columns side by side), as cuDNN does, and the
    step's own matmul is only the recurrent (4H, H) @ (H, B) (batch-first at many units:
    `batch_first_step`).
    With a mask, the loop starts at the first
    step where some row is unmasked (before it, every row keeps (h0, c0)); a step where some
    rows are masked runs on every row, then puts the previous state back in the masked ones
    (see `MaskPlan`).
    """
    kernel, recurrent_kernel, bias = weights
    B, T, E = x.shape
    H = recurrent_kernel.shape[0]
    dtype = kernel.dtype
    plan = MaskPlan(mask, T)
    # xh[t] = [x_t; 1; h_{t-1}] for t < T: backward's input for the weight gradients, and the
    # source of the input part's blocks. The loop writes h_t straight into xh[t + 1] (h_t * keep
    # with recurrent dropout, below); xh[T] holds the final state.
    xh = np.empty((T + 1, E + 1 + H, B), dtype)
    xh[:T, :E] = x.transpose(1, 2, 0)
    xh[T, :E] = 0.0
    xh[:, E] = 1.0
    c = spare.take((T + 1, H, B), dtype)      # c[t + 1] is c_t; c[0] is c0
    if initial_state is None:
        xh[0, E + 1:] = 0.0
        c[0] = 0.0
    else:
        xh[0, E + 1:] = np.asarray(initial_state[0]).T
        c[0] = np.asarray(initial_state[1]).T
    gates = spare.take((T, 4 * H, B), dtype)  # gate values i, f, o, c~ of each step
    tanh_c = spare.take((T, H, B), dtype)     # tanh(c_t)
    step_weights = loop_weights(kernel, recurrent_kernel, bias)
    input_weights, recurrent_weights = step_weights[:, :E + 1], step_weights[:, E + 1:]

    # hs[t] is h_{t-1}. The matmul reads h_{t-1} in xh; with recurrent dropout it reads
    # h_{t-1} * keep there, so the states themselves live in an array of their own.
    h_in = xh[:, E + 1:]
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
    steps = block_steps(T, B)
    blocks = [(lo, min(T, lo + steps)) for lo in range(t0, T, steps)]
    ig = np.empty((H, B), dtype)
    if batch_first_step(H, B, dtype):
        recurrent_weights_t = np.ascontiguousarray(recurrent_weights.T)
        zh = np.empty((B, 4 * H), dtype)          # a step's recurrent part of z_t, batch-first
    else:
        recurrent_weights_t = None
        zh = np.empty((4 * H, B), dtype)          # a step's recurrent part of z_t
    with sidethread.running(side_thread and len(blocks) > 1) as side:
        inputs = InputPart(input_weights, xh, gates, blocks, side)
        for k, (lo, hi) in enumerate(blocks):
            inputs.ready(k)                               # the block's input parts, in its gates
            for t in range(lo, hi):
                z = gates[t]
                if recurrent_weights_t is None:
                    np.matmul(recurrent_weights, h_in[t], out=zh)
                    z += zh                               # pre-activations, loop layout
                else:                                     # the same, through zh (B, 4H)
                    np.matmul(h_in[t].T, recurrent_weights_t, out=zh)
                    z += zh.T
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

    if return_sequences:
        out = hs[1:].transpose(2, 0, 1)                 # h_1 .. h_T
    else:
        out = hs[T].T.copy()                            # h_T (h0 if T = 0)
    return out, LoopCache(xh, plan, gates, c, tanh_c, keep, kernel, recurrent_kernel, spare)


def copy_swapped(out, a):
    """out (m, n, B) = a (n, m, B) with its first two axes swapped: the copy between the loop's
    time-major arrays and the blocks of steps side by side.

    Each row of B values is contiguous in both, so they are moved as single items of a void
    dtype (4B bytes in float32) rather than B floats at a time: NumPy then runs one inner loop
    over all the rows of a slice, not one per row. One copy of 533 features by 512 columns, one
    core: 859 -> 92 us at B = 4, 331 -> 149 at B = 8, 102 -> 60 at B = 32; a whole forward +
    backward (T, E, H = 500, 32, 100), medians of 15 interleaved, two runs: B = 4 8% faster,
    B = 8 2-13%, B = 32 unchanged. At B = 1 the plain copy is already a 2-D transpose, and
    faster (223 against 297 us); at B = 0 a void item of no bytes has no row to stand for.
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
    [x_t; 1] rows are read; gates (T, 4H, B); blocks: the (lo, hi) steps of each block, in
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
        # values every steps * B (the same sums: addition commutes, so the same bits). The
        # forward on one core, medians of 15 interleaved, two runs: (B, T, E, H) =
        # (1, 500, 32, 100) 9.0 -> 7.9 and 10.5 -> 9.6 ms; at B = 8 and 32 and at H = 512
        # and 1,024 within the noise (0-5% faster).
        copy_swapped(self.gates[lo:hi], zx)


def backward_rows(dout, cache, side_thread=False):
    """Backprop through time on one part, in this process, with its `forward_rows` cache.

    dout: (B, H) for the last state, or (B, T, H) for every state. Returns (dx (B, T, E),
    (dh0 (B, H), dc0 (B, H)), [dkernel, drecurrent_kernel, dbias]), and spends the cache.

    Per step only dh_t and dc_t carry the recurrence; the gate derivatives that multiply
    them do not, so they are computed for a block of steps at a time, in a few large
    element-wise ops, before the block's steps run (`gate_factors`, then `bptt_block`). The
    step's one matmul is recurrent_kernel (H, 4H) @ dz_t (4H, B) = dh_{t-1} (`RecurrentGradient`);
    what does not feed the recurrence waits until a run of about BLOCK_COLUMNS columns (one
    or more blocks) is gathered, whose dz_t, side by side, make dx = kernel @ dz and the weight
    gradients in one matmul each (`StepColumns`; with side_thread, those matmuls run on a
    second thread, while this one goes on with the steps). Arrays are batch-last, as in the
    forward loop; dx is kept (E, T, B), each feature's (T, B) values one block, as Embedding's
    backward reads them. dz overwrites the gates.
    """
    if cache.gates is None:
        raise ValueError("this LSTM cache was used by an earlier backward: run forward again")
    xh, plan, gates, c, tanh_c, keep = cache.xh, cache.plan, cache.gates, cache.c, cache.tanh_c, cache.keep
    T, H4, B = gates.shape
    H = H4 // 4
    E = xh.shape[1] - H - 1
    dtype = gates.dtype
    dz = gates  # dL/dz_t (Keras gate order i, f, c, o) overwrites the gates, block by block
    dx = np.empty((E, T, B), dtype)
    dout = np.asarray(dout, dtype)
    if dout.ndim == 3:
        dh_seq = np.ascontiguousarray(dout.transpose(1, 2, 0))   # (T, H, B)
        dh = np.zeros((H, B), dtype)
    else:
        dh_seq = None
        # dL/dh_t, from the step after t and from dout; a copy, since the steps write into it
        # (dout.T is itself contiguous when H or B is 1)
        dh = dout.T.copy()

    t0 = plan.t0
    dx[:, :t0] = 0.0                      # steps masked in every row: no gradient through them
    dc_next = np.zeros((H, B), dtype)
    steps = max(1, min(T, _BACKWARD_BLOCK // (max(B, 1) * 6 * H)))
    # gate_factors' buffers for a block of steps: factor, dc_factor, forget
    factors = (np.empty((steps, 4, H, B), dtype), np.empty((steps, H, B), dtype),
               np.empty((steps, H, B), dtype))
    # dc, dc * f for masked steps, dh_{t-1} for masked steps
    work = (np.empty((H, B), dtype), np.empty((H, B), dtype), np.empty((H, B), dtype))
    run = max(steps, block_steps(T, B))
    recurrent = RecurrentGradient(cache.recurrent_kernel, B)
    # The last run's matmuls wait for the steps to end, so a single run leaves a side thread
    # nothing to overlap
    with sidethread.running(side_thread and T - t0 > run) as side:
        sums = StepColumns(cache.kernel, dx, H, run, side)
        for hi in range(T, t0, -steps):
            lo = max(t0, hi - steps)
            block = gate_factors(gates[lo:hi], c[lo:hi], tanh_c[lo:hi], factors)
            bptt_block(lo, hi, block, dh, dc_next, dh_seq, dz, recurrent, keep, plan, work)
            sums.add(lo, xh[lo:hi], dz[lo:hi])
    sums.flush()          # the side thread, if any, has taken in every step and ended
    if dh_seq is not None:
        for t in range(t0 - 1, -1, -1):   # skipped, masked steps: their output is h0
            dh += dh_seq[t]

    dkernel, drecurrent, dbias = sums.result()
    cache.spend()                         # the gates are spent: hand the big arrays back
    return dx.transpose(2, 1, 0), (dh.T, dc_next.T), [dkernel, drecurrent, dbias]


def gate_factors(gates, c_prev, tanh_c, buffers):
    """The derivatives that turn a block of steps' dh_t and dc_t into dz_t, all at once.

    gates (n, 4H, B): the block's gate values i, f, o, c~; c_prev (n, H, B): c_{t-1};
    tanh_c (n, H, B): tanh(c_t); buffers: arrays of at least n steps to fill. Returns their
    first n steps, (factor (n, 4, H, B), dc_factor (n, H, B), forget (n, H, B)): dz of gate k
    at step j is factor[j, k] times dc_t (gates i, f, c~) or dh_t (gate o); dc_factor =
    o (1 - tanh(c_t)^2), dh_t's share of dc_t; forget, a copy of f (dz_t will overwrite the
    gates).
    """
    n, H = tanh_c.shape[:2]
    factor, fc, f = (a[:n] for a in buffers)
    i, o, g = gates[:, :H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    fi, ff, fg, fo = (factor[:, j] for j in range(4))
    np.copyto(f, gates[:, H:2 * H])   # the forget gate
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
    fo *= tanh_c                  # dz_o = dh * tanh(c_t) o (1 - o)
    np.multiply(tanh_c, tanh_c, out=fc)
    np.subtract(1.0, fc, out=fc)
    fc *= o                       # dc_t = dc_{t+1} f_{t+1} + dh * o (1 - tanh(c_t)^2)
    return factor, fc, f


def bptt_block(lo, hi, block, dh, dc_next, dh_seq, dz, recurrent, keep, plan, work):
    """Steps hi - 1 down to lo of backprop through time.

    block: `gate_factors` of these steps; dh (H, B) and dc_next (H, B): the gradients at
    h_{hi-1} and c_{hi-1}, updated in place to those at h_{lo-1} and c_{lo-1}; dh_seq (T, H, B)
    the outputs' own gradients, or None; writes dz[t] (4H, B). recurrent: the
    `RecurrentGradient`; keep (H, B) or None.
    """
    factor, fc, f = block
    partial, unmasked = plan.partial, plan.unmasked
    H, B = dh.shape
    dc, carried, dh_prev = work
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
            recurrent.into(dh, dz_t)                     # dh_{t-1}
            if keep is not None:
                dh *= keep        # the matmul read h_{t-1} * keep
        else:
            # Some rows masked: the step is the identity on their (h, c), so their
            # gradients pass straight through it and none goes into the step.
            m = unmasked[t]
            dz_t *= m             # and so dx_t = 0 in masked columns
            np.multiply(dc, f[j], out=carried)
            np.copyto(dc_next, carried, where=m)
            recurrent.into(dh_prev, dz_t)
            if keep is not None:
                dh_prev *= keep
            np.copyto(dh, dh_prev, where=m)


class RecurrentGradient:
    """backward's step matmul, dh_{t-1} = recurrent_kernel (H, 4H) @ dz_t (4H, B), in the
    orientation that `batch_first_step` chooses for the forward's: batch-first, it is
    dz_t.T (B, 4H) @ recurrent_kernel.T (4H, H) into a (B, H) buffer, copied transposed into
    dh_{t-1}. At (16, 100, 512, 1024) on one core the backward took 1.36-1.45 s -> 0.93-1.04 s
    (three A/B pairs, busy machine)."""

    def __init__(self, recurrent_kernel, B):
        H = recurrent_kernel.shape[0]
        self.kernel, self.kernel_t = recurrent_kernel, None
        if batch_first_step(H, B, recurrent_kernel.dtype):
            self.kernel_t = np.ascontiguousarray(recurrent_kernel.T)
            self.dh_t = np.empty((B, H), recurrent_kernel.dtype)

    def into(self, out, dz_t):
        """out (H, B) = recurrent_kernel @ dz_t."""
        if self.kernel_t is None:
            np.matmul(self.kernel, dz_t, out=out)
        else:
            np.matmul(dz_t.T, self.kernel_t, out=self.dh_t)
            np.copyto(out, self.dh_t.T)


class StepColumns:
    """What backward derives from dz_t outside the recurrence, a run of steps at a time:
    dx_t = kernel @ dz_t, and the weight gradients.

    The weights are shared across time, so their gradients are sums over all steps and
    rows: [dkernel; dbias; drecurrent_kernel] = sum_t [x_t; 1; h_{t-1}] @ dz_t.T. dweights_t
    (4H, E + 1 + H), its transpose, adds up sum_t dz_t @ [x_t; 1; h_{t-1}].T over a run of up
    to `steps` steps, while xh and dz are in cache, as one matmul over the run's steps * B
    columns: both are first copied to (features, steps, B), so that those columns sit side by
    side; the same dz columns give the run's dx in one matmul. The runs are longer than the
    backward's blocks of gate factors at many units (those stay within the cache, one step at
    H = 1024), since a matmul over a few columns writes all of dweights_t for little work.
    (A matmul per step sums over B columns only, and one over all T * B columns at the end
    needs both arrays copied whole: slower, both measured.)

    With a `SideThread`, the steps are taken in and their matmuls run there, in the same
    order, so the same sums to the bit, while the calling thread goes on with the recurrence.
    """

    def __init__(self, kernel, dx, H, steps, side=None):
        E, _, B = dx.shape
        dtype = dx.dtype
        self.kernel, self.dx, self.E, self.side = kernel, dx, E, side
        self.dweights_t = np.zeros((4 * H, E + 1 + H), dtype)
        self.xh_cols = np.empty((E + 1 + H, steps, B), dtype)
        self.dz_cols = np.empty((4 * H, steps, B), dtype)
        self.lo = self.hi = None      # the steps held, at the end of the buffers

    def add(self, lo, xh, dz):
        """Take in the steps lo .. lo + n - 1: xh (n, E + 1 + H, B), dz (n, 4H, B), left
        unchanged until the side thread, if any, has ended. Steps come in backward order, each
        run right before the one held."""
        if self.side is None:
            self._take(lo, xh, dz)
        else:
            self.side.call(self._take, lo, xh, dz)

    def _take(self, lo, xh, dz):
        n, steps = len(xh), self.xh_cols.shape[1]
        if self.lo is not None and self.hi - self.lo + n > steps:
            self.flush()
        if self.lo is None:
            self.hi = lo + n
        self.lo = lo
        at = steps - (self.hi - lo)
        copy_swapped(self.xh_cols[:, at:at + n], xh)
        copy_swapped(self.dz_cols[:, at:at + n], dz)

    def flush(self):
        """The matmuls of the steps held: dx_t for them, their share of the weight gradients."""
        if self.lo is None:
            return
        at = self.xh_cols.shape[1] - (self.hi - self.lo)
        dz = self.dz_cols[:, at:].reshape(len(self.dz_cols), -1)
        xh = self.xh_cols[:, at:].reshape(len(self.xh_cols), -1)
        self.dweights_t += np.matmul(dz, xh.T)
        np.matmul(self.kernel, dz, out=self.dx[:, self.lo:self.hi].reshape(self.E, -1))
        self.lo = self.hi = None

    def result(self):
        """(dkernel (E, 4H), drecurrent_kernel (H, 4H), dbias (4H,)), once every step is flushed."""
        E = self.E
        dweights = self.dweights_t.T.copy()
        return dweights[:E], dweights[E + 1:], dweights[E]


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

    xh, plan, gates, c, tanh_c, keep as in forward_rows; kernel and recurrent_kernel, the
    weights of the forward pass. Backward overwrites the gates with dz, then `spend` hands
    gates, c and tanh_c back to the spare arrays they came from. A cache dropped without a
    backward (evaluation, prediction) hands them back as it goes, so that a run of forwards
    reuses one set of buffers.
    """

    def __init__(self, xh, plan, gates, c, tanh_c, keep, kernel, recurrent_kernel, spare):
        self.xh, self.plan, self.gates, self.c, self.tanh_c, self.keep = xh, plan, gates, c, tanh_c, keep
        self.kernel, self.recurrent_kernel = kernel, recurrent_kernel
        self._spare = spare

    def spend(self):
        """Hand the large buffers back; the cache can serve no further backward."""
        if self.gates is not None:
            self._spare.give(self.gates, self.c, self.tanh_c)
            self.gates = self.c = self.tanh_c = None

    def __del__(self):
        self.spend()


class SpareArrays:
    """A few large arrays that backward hands back for the next forward to reuse.

    A new array's pages are mapped on first touch, which costs here about 10-15 ms per 50 MB:
    a sizeable share of a forward + backward at the tutorial's shapes. Arrays are kept flat and
    lent out as views of the requested shape; only arrays that never leave the loops go here.
    Each layer has its own (`numpy_lstm.engine.Workspace`), and each worker process one per
    layer that it runs parts of.
    """

    KEEP = 3

    def __init__(self):
        self._arrays = []

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
