"""The shared memory through which the parent and a worker process pass a message's large arrays.

A part's inputs and gradients are megabytes: pickled through a pipe they cost milliseconds a pass
and the worker cannot start until they have arrived. `Mailbox` (a memfd both processes map)
carries them instead; the pipe carries only a `Mailed` note of where each one is.
"""
import collections
import mmap

import numpy as np

from .rows import axes_in_memory_order

Mailed = collections.namedtuple("Mailed", "offset shape dtype axes")


class Mailbox:
    """Shared memory through which a worker and the parent pass the large arrays of a message.

    Through the pipe an array is pickled, copied through the kernel and unpickled, and the
    worker cannot start before its input has arrived: milliseconds a pass for the 2 MB inputs,
    and input gradients, of a tutorial-shaped part.
    The mailbox is a memfd mapped by both processes: the sender copies the array in, in its own
    memory layout (the LSTM's dx is batch-last), and the message carries only a `Mailed` note
    of where it is; the receiver reads it in place. What a message put there is overwritten by
    the next one, so the receiver uses it (the worker copies x into its loop arrays, the parent
    gathers the parts) before it answers or asks again. Only the parent makes one: a memfd,
    handed to the worker with send_handle, as large as the largest message so far. A reply
    that does not fit travels in the pipe, and the next mailbox is made large enough for it.
    """

    MIN_BYTES = 1 << 16      # smaller arrays travel in the pipe

    def __init__(self, fd=None, size=0):
        self.size = size
        self.buffer = mmap.mmap(fd, size) if size else None

    def pack(self, items):
        """The tuple items with each large array copied in and replaced by its note; an array
        that does not fit stays in the message."""
        packed, offset = [], 0
        for a in items:
            if is_large(a) and offset + a.nbytes <= self.size:
                in_memory_order = axes_in_memory_order(a)
                ordered = a.transpose(in_memory_order)
                np.copyto(np.ndarray(ordered.shape, a.dtype, self.buffer, offset), ordered)
                note = Mailed(offset, ordered.shape, a.dtype.str, tuple(np.argsort(in_memory_order)))
                offset += room([a])
                a = note
            packed.append(a)
        return tuple(packed)

    def unpack(self, items):
        """The tuple items with each note replaced by a view of its array in the mailbox."""
        return tuple(np.ndarray(a.shape, a.dtype, self.buffer, a.offset).transpose(a.axes)
                     if isinstance(a, Mailed) else a for a in items)


def is_large(a):
    return isinstance(a, np.ndarray) and a.nbytes >= Mailbox.MIN_BYTES


def room(items):
    """Bytes that the large arrays among items take in a mailbox (each 64-byte aligned)."""
    return sum(-(-a.nbytes // 64) * 64 for a in items if is_large(a))
