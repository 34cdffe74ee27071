"""Backprop through time on one part of a batch, with the cache of its forward loop.

The same equations as `numpy_lstm.reference`'s backward, laid out as the forward loop lays them
(numpy_lstm/engine/forward.py): per step only dh_t and dc_t carry the recurrence, so what does
not feed it is computed outside the steps, a block of steps at a time: the gate derivatives
before a block's steps run (`gate_factors`), dx and the weight gradients after a run of steps
(`StepColumns`). A step itself is a few element-wise ops and one matmul (`bptt_block`,
`RecurrentGradient`). docs/engine.md says what each of these bought.

Shapes: B rows of this part, T time steps, E input features, H units.
"""
import numpy as np

from . import sidethread
from .forward import batch_first_step, block_steps, copy_swapped

# Elements of the block of gate-derivative factors that backward_rows fills before running the
# block's steps: small enough to stay in cache, large enough to amortise NumPy's per-call cost.
BACKWARD_BLOCK = 1 << 17


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
    steps = max(1, min(T, BACKWARD_BLOCK // (max(B, 1) * 6 * H)))
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
    sums.flush()          # the side thread, if any, has held every step and ended
    if dh_seq is not None:
        for t in range(t0 - 1, -1, -1):   # skipped, masked steps: their output is h0
            dh += dh_seq[t]

    dkernel, drecurrent, dbias = sums.result()
    cache.release()                       # dz overwrote the gates: the big arrays go back
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
    `RecurrentGradient`; keep (H, B) or None; work: three (H, B) buffers.
    """
    factor, fc, f = block
    H, B = dh.shape
    dc = work[0]
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
        if plan.partial[t]:
            step_back_partly_masked(plan.unmasked[t], dc, f[j], dz_t, dh, dc_next, recurrent, keep, work)
        else:
            step_back(dc, f[j], dz_t, dh, dc_next, recurrent, keep)


def step_back(dc, f, dz_t, dh, dc_next, recurrent, keep):
    """From step t's dc (H, B), forget gate f (H, B) and dz_t (4H, B), the gradients at c_{t-1}
    and h_{t-1}: into dc_next and dh (H, B)."""
    np.multiply(dc, f, out=dc_next)           # dc_{t-1}
    recurrent.into(dh, dz_t)                  # dh_{t-1}
    if keep is not None:
        dh *= keep                            # the matmul read h_{t-1} * keep


def step_back_partly_masked(unmasked, dc, f, dz_t, dh, dc_next, recurrent, keep, work):
    """`step_back` for a step where some rows are masked (unmasked (1, B) False): the step is the
    identity on their (h, c), so their gradients pass straight through it and none goes into
    the step (dz_t is zeroed in their columns, and so is dx_t)."""
    _, carried, dh_prev = work
    dz_t *= unmasked
    np.multiply(dc, f, out=carried)
    np.copyto(dc_next, carried, where=unmasked)
    recurrent.into(dh_prev, dz_t)
    if keep is not None:
        dh_prev *= keep
    np.copyto(dh, dh_prev, where=unmasked)


class RecurrentGradient:
    """backward's step matmul, dh_{t-1} = recurrent_kernel (H, 4H) @ dz_t (4H, B), in the
    orientation that `batch_first_step` chooses for the forward's: batch-first, it is
    dz_t.T (B, 4H) @ recurrent_kernel.T (4H, H) into a (B, H) buffer, copied transposed into
    dh_{t-1}."""

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
    needs both arrays copied whole.)

    With a `SideThread`, the steps are held and their matmuls run there, in the same
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
        self.dweights_t += np.matmul(dz, xh.T)
        np.matmul(self.kernel, dz, out=self.dx[:, self.lo:self.hi].reshape(self.E, -1))
        self.lo = self.hi = None

    def result(self):
        """(dkernel (E, 4H), drecurrent_kernel (H, 4H), dbias (4H,)), once every step is flushed."""
        E = self.E
        dweights = self.dweights_t.T.copy()
        return dweights[:E], dweights[E + 1:], dweights[E]
