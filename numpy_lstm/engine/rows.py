"""The batch cut into parts of rows, one per core, and the parts' results put back together.

Rows never interact in an LSTM, so a part is any set of rows: contiguous slices, or, with a
pre-padding mask, rows dealt out by length so that every core gets a similar mix of short and
long sequences.
"""
import numpy as np


def token_starts(mask):
    """Each row's first unmasked step (T when it has none), and whether the mask is pre-padding:
    in every row, masked steps only before the first unmasked one."""
    B, T = mask.shape
    started = np.logical_or.accumulate(mask, axis=1)
    start = np.where(started.any(axis=1), started.argmax(axis=1), T)
    return start, np.array_equal(started, mask)


def batch_parts(slices, mask):
    """The rows of each core's part of the batch: slices, or index arrays dealt out by length.

    slices: the contiguous (start, stop) parts of the batch, one per core (`batch.split_rows`);
    mask: bool (B, T) or None.
    """
    if len(slices) == 1:
        return [slice(None)]
    if mask is not None and np.shape(mask)[1] > 0:
        start, prepadded = token_starts(np.asarray(mask, bool))
        if prepadded and start.any():
            by_start = np.argsort(start, kind="stable")
            return [by_start[p::len(slices)] for p in range(len(slices))]
    return [slice(b0, b1) for b0, b1 in slices]


def take_rows(a, rows):
    """a[rows] along the batch axis (first), None for None."""
    return None if a is None else np.asarray(a)[rows]


def gather_rows(parts, arrays):
    """The inverse of take_rows over all parts: one array with every part's rows in place.

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
    in_memory_order = axes_in_memory_order(out)
    batch_axis = int(np.flatnonzero(in_memory_order == 0)[0])
    np.take(stacked.transpose(in_memory_order), source, axis=batch_axis,
            out=out.transpose(in_memory_order), mode="clip")
    return out


def axes_in_memory_order(a):
    """The axes of a, outermost in memory first: a.transpose() of it walks memory in order."""
    return np.argsort(a.strides, kind="stable")[::-1]
