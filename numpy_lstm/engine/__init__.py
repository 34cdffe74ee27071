"""The fast LSTM engine, behind two functions: `lstm_forward` and `lstm_backward`.

It computes what `numpy_lstm.reference` computes (and is tested against it in float64), faster:
the time loops run laid out for speed (`loops`), with subnormals flushed to zero meanwhile (`fpu`),
on the cores as the shape asks (`strategy`, `workers.plan_cores`): below H = 256 units, a batch of
16 rows or more is cut into parts of rows, one per core (`rows`), this process running the first
part and worker processes the others (`workers`), each the whole time loop on its own rows, and a
smaller batch runs in one process on one core (with the matmuls that run a block of steps at a
time on a second thread, `sidethread`, when a second core is free); from H = 256, the rows are cut
only when each part gets at least 32, else one process runs the batch with BLAS's threads on the
matmuls.
Rows never interact, so the split changes no output.

Layout, as in Keras: kernel (E, 4H), recurrent_kernel (H, 4H), bias (4H,), gate blocks i, f, c, o.
Shapes: B batch rows, T time steps, E input features, H units.
"""
import numpy as np

from . import workers
from .loops import SpareArrays
from .rows import batch_parts, gather_rows, take_rows
from .workers import WorkerLost, get_num_threads, set_num_threads, start_workers

__all__ = ["WorkerLost", "Workspace", "get_num_threads", "lstm_backward", "lstm_forward",
           "set_num_threads", "start_workers", "strategy"]


class Workspace:
    """What the engine keeps for one layer between passes: the spare arrays that backward hands
    back for the next forward (`loops.SpareArrays`), and the key that names the layer to the
    worker processes, which keep spare arrays of their own for it until this object goes."""

    def __init__(self):
        self.spare = SpareArrays()
        self.key = workers.new_layer_key(self)


def strategy(B, H, cores=None):
    """How a batch of B rows and H units runs on `cores` (default get_num_threads()), in words:
    "rows split over n processes", "one process, BLAS n threads", "one process, block matmuls on
    a side thread" (`workers.side_thread`) or "one process, one thread"
    (`workers.plan_cores`; where fork is refused, the parts run one after another in this
    process, split the same way; off Linux, in one part)."""
    parts, blas = workers.plan_cores(B, H, cores)
    if parts > 1:
        return f"rows split over {parts} processes"
    if blas > 1:
        return f"one process, BLAS {blas} threads"
    if workers.side_thread(B, H, cores):
        return "one process, block matmuls on a side thread"
    return "one process, one thread"


def lstm_forward(weights, x, mask, initial_state, keep, return_sequences, workspace):
    """Run the LSTM over a batch: (out, cache).

    weights: [kernel, recurrent_kernel, bias]; x (B, T, E); mask bool (B, T) or None;
    initial_state (h0 (B, H), c0 (B, H)) or None for zeros; keep (B, H): recurrent dropout's
    scaled keep mask, multiplying h_{t-1} where the recurrent matmul reads it, or None;
    workspace: the layer's `Workspace`. The cores are used as `strategy` says. out is h_T (B, H)
    (h0 when T = 0), or every state (B, T, H) with return_sequences. With a pre-padding mask the
    rows are dealt out to the parts in order of length, so that every part gets a similar mix of
    short and long sequences.
    """
    x = np.asarray(x)
    B, H = x.shape[0], weights[1].shape[0]
    parts, blas = workers.plan_cores(B, H)
    parts = batch_parts(workers.split_rows(B, parts), mask)
    inputs = [(take_rows(x, p), take_rows(mask, p), None if initial_state is None else
               (take_rows(initial_state[0], p), take_rows(initial_state[1], p)), take_rows(keep, p))
              for p in parts]
    results = workers.forward_parts(weights, return_sequences, inputs, workspace.key, workspace.spare, blas,
                                    workers.side_thread(B, H))
    out = gather_rows(parts, [out for out, _ in results])
    return out, (parts, [cache for _, cache in results])


def lstm_backward(dout, cache):
    """Backprop through time: (dx (B, T, E), (dh0 (B, H), dc0 (B, H)), [dkernel, drecurrent_kernel, dbias]).

    dout: (B, H) for the last state, or (B, T, H) with return_sequences. Each part runs where
    its forward ran; the weight gradients are the sums of the parts'. The cache is spent: a
    second backward on it is an error.
    """
    parts, caches = cache
    dout = np.asarray(dout)
    B, H = dout.shape[0], dout.shape[-1]
    _, blas = workers.plan_cores(B, H)                              # as in forward
    results = workers.backward_parts([take_rows(dout, p) for p in parts], caches, blas,
                                     workers.side_thread(B, H))
    dx = gather_rows(parts, [r[0] for r in results])
    dh0 = gather_rows(parts, [r[1][0] for r in results])
    dc0 = gather_rows(parts, [r[1][1] for r in results])
    grads = [sum(part_grads) for part_grads in zip(*(r[2] for r in results))]
    return dx, (dh0, dc0), grads
