"""An LSTM pass over a batch: its rows cut into parts, each part run where `cores` plans, and
the parts' results put back together.

Rows never interact, so the split changes no output: outputs and input gradients are those of
one part, bit for bit, and the weight gradients are the sums of the parts'.
"""
import numpy as np

from . import cores, workers
from .rows import batch_parts, gather_rows, take_rows
from .spare import SpareArrays


class Workspace:
    """What the engine keeps for one layer between passes: the spare arrays that backward gives
    back for the next forward (`spare.SpareArrays`), and the key that names the layer to the
    worker processes, which keep spare arrays of their own for it until this object goes."""

    def __init__(self):
        self.spare = SpareArrays()
        self.key = workers.new_layer_key(self)


def lstm_forward(weights, x, mask, initial_state, keep, return_sequences, workspace):
    """Run the LSTM over a batch: (out, cache).

    weights: [kernel, recurrent_kernel, bias]; x (B, T, E); mask bool (B, T) or None;
    initial_state (h0 (B, H), c0 (B, H)) or None for zeros; keep (B, H): recurrent dropout's
    scaled keep mask, multiplying h_{t-1} where the recurrent matmul reads it, or None;
    workspace: the layer's `Workspace`. The cores are used as `cores.strategy` says. out is h_T
    (B, H) (h0 when T = 0), or every state (B, T, H) with return_sequences. With a pre-padding
    mask the rows are dealt out to the parts in order of length, so that every part gets a
    similar mix of short and long sequences.
    """
    x = np.asarray(x)
    B, H = x.shape[0], weights[1].shape[0]
    parts, blas = cores.plan_cores(B, H)
    parts = batch_parts(split_rows(B, parts), mask)
    inputs = [(take_rows(x, p), take_rows(mask, p), None if initial_state is None else
               (take_rows(initial_state[0], p), take_rows(initial_state[1], p)), take_rows(keep, p))
              for p in parts]
    results = workers.forward_parts(weights, return_sequences, inputs, workspace.key, workspace.spare, blas,
                                    cores.side_thread(B, H))
    out = gather_rows(parts, [out for out, _ in results])
    return out, (parts, [cache for _, cache in results])


def lstm_backward(dout, cache):
    """Backprop through time: (dx (B, T, E), (dh0 (B, H), dc0 (B, H)), [dkernel, drecurrent_kernel, dbias]).

    dout: (B, H) for the last state, or (B, T, H) with return_sequences. Each part runs where
    its forward ran; the weight gradients are the sums of the parts'. The cache is released: a
    second backward on it is an error.
    """
    parts, caches = cache
    dout = np.asarray(dout)
    B, H = dout.shape[0], dout.shape[-1]
    _, blas = cores.plan_cores(B, H)                              # as in forward
    results = workers.backward_parts([take_rows(dout, p) for p in parts], caches, blas,
                                     cores.side_thread(B, H))
    dx = gather_rows(parts, [r[0] for r in results])
    dh0 = gather_rows(parts, [r[1][0] for r in results])
    dc0 = gather_rows(parts, [r[1][1] for r in results])
    grads = [summed(part_grads) for part_grads in zip(*(r[2] for r in results))]
    return dx, (dh0, dc0), grads


def summed(parts):
    """sum(parts), that is 0 + parts[0] + parts[1] + ..., computed in parts[0]'s array: the
    gradient of the part run here, made afresh by its backward. The same bits (adding 0.0 first
    turns a -0.0 into +0.0, as 0 + x does) with no new array, whose pages would be mapped again
    every pass (25 MB for the recurrent kernel's gradient at H = 1024)."""
    total = parts[0]
    np.add(total, 0.0, out=total)
    for part in parts[1:]:
        total += part
    return total


def split_rows(rows, parts=None):
    """Cut range(rows) into contiguous (start, stop) slices, up to `parts` (default one per
    core) of at least MIN_ROWS_PER_PART rows, sizes within one, and no more than the calling
    process and the workers that could be started can run."""
    parts = cores.get_num_processes() if parts is None else parts
    parts = max(1, min(parts, rows // cores.MIN_ROWS_PER_PART))
    parts = 1 + len(workers.usable_workers(parts - 1))
    bounds = [rows * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))
