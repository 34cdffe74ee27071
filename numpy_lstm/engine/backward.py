"""Backprop through time on one part of a batch, with the cache of its forward loop.

The same equations as `numpy_lstm.reference`'s backward, laid out as the forward loop lays them
(numpy_lstm/engine/forward.py): per step only dh_t and dc_t carry the recurrence, so what does
not feed it is computed outside the steps, a block of steps at a time: the gate derivatives
before a block's steps run (`gate_factors`), dx and the weight gradients after a run of steps
(`StepColumns`). A step itself is three element-wise ops and one matmul (`bptt_block`,
`RecurrentGradient`), writing over the forward's `cells` in slots laid out for it (`DC_PREV` ..
`DC`). docs/engine.md says what each of these bought.

Shapes: B rows of this part, T time steps, E input features, H units.
"""
import numpy as np

from . import sidethread
from .forward import batch_first_step, block_steps, copy_swapped, recurrent_order, step_views, tiled_copy

# Elements of the block of gate-derivative factors that backward_rows fills before running the
# block's steps: small enough to stay in cache, large enough to amortise NumPy's per-call cost.
BACKWARD_BLOCK = 1 << 17
# Elements up to which such blocks are merged while the runs of StepColumns stay the same
# (`backward_blocks`): past it a block's factors and cells outgrow a 2 MB cache, and the merge
# costs more than the calls it saves (docs/engine.md, "Gate derivatives a block of steps at a time")
MAX_BACKWARD_BLOCK = 240_000
# Rows and columns of a tile of `transposed_copy`: a tile of both arrays stays in cache
TILE = 256
# What backward writes over a step's (6, H, B) block of the forward's `cells`: dc_{t-1}, dz_t in
# Keras's gate order (i, f, c~, o), dc_t. So [f, the factors of i, f, c~] times dc_t is one
# multiply into [dc_{t-1}, dz_i, dz_f, dz_c], and [the factors of o and of dc_t's share] times
# dh_t one into [dz_o, dc_t]; step t reads dc_t from step t + 1's block.
DC_PREV, DZ_I, DZ_F, DZ_G, DZ_O, DC = range(6)


def backward_rows(dout, cache, side_thread=False):
    """Backprop through time on one part, in this process, with its `forward_rows` cache.

    dout: (B, H) for the last state, or (B, T, H) for every state. Returns (dx (B, T, E),
    (dh0 (B, H), dc0 (B, H)), [dkernel, drecurrent_kernel, dbias]), and releases the cache.

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
    if cache.cells is None:
        raise ValueError("this LSTM cache was used by an earlier backward: run forward again")
    xh, plan, cells, keep = cache.xh, cache.plan, cache.cells, cache.keep
    T, B, H = len(cells) - 1, cells.shape[3], cells.shape[2]
    E = xh.shape[1] - H - 1
    dtype = cells.dtype
    # dL/dz_t (Keras gate order i, f, c, o) overwrites the gates, block by block
    dz = cells.reshape(T + 1, 6 * H, B)[:, DZ_I * H:DC * H]
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
    cells[T, DC_PREV] = 0.0               # dc_T: the last step reads it as dc_{t+1}'s share
    steps, run = backward_blocks(T, B, H)
    factors = np.empty((steps, 6, H, B), dtype)   # gate_factors' buffer for a block of steps
    work = np.empty((H, B), dtype)                # dh_{t-1} of a partly masked step
    spare = cache.spare
    recurrent = RecurrentGradient(cache.recurrent_kernel, B, spare)
    # The last run's matmuls wait for the steps to end, so a single run leaves a side thread
    # nothing to overlap
    with sidethread.running(side_thread and T - t0 > run) as side:
        sums = StepColumns(cache.kernel, dx, H, run, spare, side)
        for hi in range(T, t0, -steps):
            lo = max(t0, hi - steps)
            block = gate_factors(cells[lo:hi], factors)
            bptt_block(lo, hi, block, dh, cells, dz, dh_seq, recurrent, keep, plan, work)
            sums.add(lo, xh[lo:hi], dz[lo:hi])
    sums.flush()          # the side thread, if any, has held every step and ended
    if dh_seq is not None:
        for t in range(t0 - 1, -1, -1):   # skipped, masked steps: their output is h0
            dh += dh_seq[t]

    dkernel, drecurrent, dbias = sums.result()
    dc0 = cells[t0, DC_PREV].T.copy()     # dc_{t0 - 1}: c0's, through the masked steps
    cache.release()                       # dz overwrote the gates: the big array goes back
    recurrent.release()
    return dx.transpose(2, 1, 0), (dh.T, dc0), [dkernel, drecurrent, dbias]


def backward_blocks(T, B, H):
    """(steps, run): the steps of a block of gate factors (`gate_factors`, `bptt_block`) and of a
    run of `StepColumns`.

    A block is about BACKWARD_BLOCK elements, a run about BLOCK_COLUMNS columns, at least one
    block: it holds as many whole blocks as fit, flushed when the next would not. The runs set
    how the weight gradients' sums are grouped, so their lengths stay those of blocks of
    BACKWARD_BLOCK; the blocks themselves are then made as long as a divisor of the run's
    blocks allows within MAX_BACKWARD_BLOCK elements: the runs come out the same, with fewer
    calls per step (at the tutorial's part, blocks of 12 steps instead of 6).
    """
    per_step = max(B, 1) * 6 * H
    steps = max(1, min(T, BACKWARD_BLOCK // per_step))
    run = max(steps, block_steps(T, B))
    blocks = run // steps              # of these steps in each run
    merged = max(m for m in range(1, blocks + 1) if blocks % m == 0 and m * steps * per_step <= MAX_BACKWARD_BLOCK
                 or m == 1)
    return steps * merged, run


def gate_factors(cells, factor):
    """The derivatives that turn a block of steps' dh_t and dc_t into dz_t, all at once.

    cells (n, 6, H, B): the block's forward values, tanh(c_t), i, f, o, c~, c_{t-1} (forward's
    slots TANH_C .. C_PREV); factor: an array of at least n steps (., 6, H, B) to fill. Returns
    its first n steps, laid out as `bptt_block` multiplies them: [fo, fc, f, fi, ff, fg], where
    dz_o = fo dh_t, dc_t = fc dh_t + dc_{t+1} f_{t+1} (fc = o (1 - tanh(c_t)^2), dh_t's share),
    f is a copy of the forget gate (dz_t will overwrite the gates), and dz_i, dz_f, dz_c are
    fi, ff, fg times dc_t.
    """
    n = len(cells)
    factor = factor[:n]
    tanh_c, i, f, o, g, c_prev = (cells[:, k] for k in range(6))   # forward's slots TANH_C .. C_PREV
    fo, fc, forget, fi, ff, fg = (factor[:, k] for k in range(6))
    np.copyto(forget, f)
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
    return factor


def bptt_block(lo, hi, factor, dh, cells, dz, dh_seq, recurrent, keep, plan, work):
    """Steps hi - 1 down to lo of backprop through time.

    factor: `gate_factors` of these steps; dh (H, B): the gradient at h_{hi-1}, updated in place
    to that at h_{lo-1}; cells (T + 1, 6, H, B): the forward's, whose block of step t this
    writes over (DC_PREV .. DC), reading dc_t's share from step t + 1 in the block above (cells[T]'s
    zero for the last step); dz (T + 1, 4H, B): the view of its dz slots; dh_seq (T, H, B) the
    outputs' own gradients, or None. recurrent: the `RecurrentGradient`; keep (H, B) or None;
    work: an (H, B) buffer.
    """
    into = recurrent.into
    partial = plan.partial
    factor = factor[:hi - lo]
    # The step's views come as items of one iteration, as in the forward loop (`step_views`)
    for t, fo, fc, f_rest, dz_o, dc, dc_next, dc_prev_dz, dz_t in step_views(
            0, hi - lo, factor[:, 0], factor[:, 1], factor[:, 2:], cells[lo:, DZ_O], cells[lo:, DC],
            cells[lo + 1:, DC_PREV], cells[lo:, :DZ_O], dz[lo:], reverse=True):
        if dh_seq is not None:
            dh += dh_seq[lo + t]  # the step's own output gradient
        np.multiply(fo, dh, out=dz_o)
        np.multiply(fc, dh, out=dc)           # dh's share of dc_t ...
        dc += dc_next                         # ... and dc_{t+1} f_{t+1}'s
        np.multiply(f_rest, dc, out=dc_prev_dz)   # dc_{t-1} = dc f; dz_i, dz_f, dz_c
        if partial[lo + t]:
            step_back_partly_masked(plan.unmasked[lo + t], dc_prev_dz[DC_PREV], dc_next, dz_t, dh, recurrent,
                                    keep, work)
        else:
            into(dh, dz_t)                    # dh_{t-1}
            if keep is not None:
                dh *= keep                    # the matmul read h_{t-1} * keep


def step_back_partly_masked(unmasked, dc_prev, dc_next, dz_t, dh, recurrent, keep, dh_prev):
    """The end of a step where some rows are masked (unmasked (1, B) False): the step is the
    identity on their (h, c), so their gradients pass straight through it and none goes into
    the step (dz_t (4H, B) is zeroed in their columns, and so is dx_t). dc_prev (H, B): the
    step's dc_{t-1}, whose masked columns get dc_next's (H, B), the gradient at c_t from the
    step after; dh (H, B) updated to dh_{t-1}; dh_prev (H, B): a buffer."""
    dz_t *= unmasked
    np.copyto(dc_prev, dc_next, where=~unmasked)
    recurrent.into(dh_prev, dz_t)
    if keep is not None:
        dh_prev *= keep
    np.copyto(dh, dh_prev, where=unmasked)


class RecurrentGradient:
    """backward's step matmul, dh_{t-1} = recurrent_kernel (H, 4H) @ dz_t (4H, B), in the
    orientation that `batch_first_step` chooses for the forward's: batch-first, it is
    dz_t.T (B, 4H) @ recurrent_kernel.T (4H, H) into a (B, H) buffer, copied transposed into
    dh_{t-1}. Batch-last from ROW_MAJOR_MIN_UNITS units, it reads a C-ordered copy of the
    kernel, as the forward's step does (`forward.recurrent_order`): the same bits, faster; the
    copy is made in a buffer borrowed from `spare` (SpareArrays) and given back by `release`."""

    def __init__(self, recurrent_kernel, B, spare):
        H = recurrent_kernel.shape[0]
        self.kernel = recurrent_kernel
        self.spare, self.borrowed = spare, None
        if batch_first_step(H, B, recurrent_kernel.dtype):
            self.kernel_t = np.ascontiguousarray(recurrent_kernel.T)
            self.dh_t = np.empty((B, H), recurrent_kernel.dtype)
            self.into = self._into_batch_first
        else:
            if recurrent_order(H, B, recurrent_kernel.dtype) == "C" and not recurrent_kernel.flags.c_contiguous:
                self.borrowed = spare.borrow("recurrent kernel", recurrent_kernel.shape, recurrent_kernel.dtype)
                self.kernel = transposed_copy(recurrent_kernel.T, out=self.borrowed)
            self.into = self._into_batch_last

    def release(self):
        """Give the kernel's copy back to the spare arrays; no step may run after."""
        if self.borrowed is not None:
            self.spare.give_back("recurrent kernel", self.borrowed)
            self.borrowed = self.kernel = None

    def _into_batch_last(self, out, dz_t):
        """out (H, B) = recurrent_kernel @ dz_t (np.dot, as in forward's `RecurrentPart`)."""
        np.dot(self.kernel, dz_t, out=out)

    def _into_batch_first(self, out, dz_t):
        np.dot(dz_t.T, self.kernel_t, out=self.dh_t)
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
    needs both arrays copied whole.)

    With a `SideThread`, the steps are held and their matmuls run there, in the same
    order, so the same sums to the bit, while the calling thread goes on with the recurrence.
    """

    def __init__(self, kernel, dx, H, steps, spare, side=None):
        E, _, B = dx.shape
        dtype = dx.dtype
        self.kernel, self.dx, self.E, self.side, self.spare = kernel, dx, E, side, spare
        # The sum, and a run's share before it is added, in buffers borrowed from the layer's
        # spare arrays (given back by `result`): fresh arrays would have their pages mapped again
        # every pass, and a fresh run_share every run (at H = 1024, 25 MB each). The sum starts
        # unwritten: the first run's share is added to zero as it is copied in (`flush`).
        self.dweights_t = spare.borrow("weight gradients", (4 * H, E + 1 + H), dtype)
        self.run_share = spare.borrow("run share", (4 * H, E + 1 + H), dtype)
        self.summed = False           # whether dweights_t holds a sum yet
        self.xh_cols = np.empty((E + 1 + H, steps, B), dtype)
        self.dz_cols = np.empty((4 * H, steps, B), dtype)
        self.lo = self.hi = None      # the steps held, at the end of the buffers

    def add(self, lo, xh, dz):
        """Hold the steps lo .. lo + n - 1: xh (n, E + 1 + H, B), dz (n, 4H, B), left
        unchanged until the side thread, if any, has ended. Steps come in backward order, each
        run right before the one held."""
        if self.side is None:
            self._hold(lo, xh, dz)
        else:
            self.side.call(self._hold, lo, xh, dz)

    def _hold(self, lo, xh, dz):
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
        np.matmul(dz, xh.T, out=self.run_share)
        if self.summed:
            self.dweights_t += self.run_share
        else:                         # 0 + share, as a sum from zero (a -0.0 comes out +0.0)
            np.add(self.run_share, 0.0, out=self.dweights_t)
            self.summed = True
        np.matmul(self.kernel, dz, out=self.dx[:, self.lo:self.hi].reshape(self.E, -1))
        self.lo = self.hi = None

    def result(self):
        """(dkernel (E, 4H), drecurrent_kernel (H, 4H), dbias (4H,)), once every step is flushed;
        gives the buffers back to the spare arrays."""
        E = self.E
        if not self.summed:           # no step ran: every row masked throughout
            self.dweights_t.fill(0.0)
        dweights = transposed_copy(self.dweights_t)
        self.spare.give_back("weight gradients", self.dweights_t)
        self.spare.give_back("run share", self.run_share)
        self.dweights_t = self.run_share = None
        return dweights[:E], dweights[E + 1:], dweights[E]


def transposed_copy(a, tile=TILE, out=None):
    """a.T.copy() of a 2-D array (into out, (cols, rows), when given), tile by tile
    (`forward.tiled_copy`): at (4H, E + 1 + H) = (4096, 1537) a plain transposing copy misses the
    cache on nearly every read."""
    rows, cols = a.shape
    out = np.empty((cols, rows), a.dtype) if out is None else out
    tiled_copy(out, a.T, tile=tile)
    return out
