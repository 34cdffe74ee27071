"""Large arrays lent to a forward pass and given back after its backward, for the next to reuse."""
import numpy as np


class SpareArrays:
    """The large arrays of a layer's passes, lent by name and given back for the next pass.

    A new array's pages are mapped by the kernel on first touch, a cost paid again by every
    pass that allocates afresh (docs/engine.md, "Spare arrays"). One flat array is kept per
    name ("cells", "weight gradients", "run share", "recurrent kernel"), the largest asked for
    so far, and lent out as a view of the requested shape; only arrays that never leave the
    loops go here. One per name, not the few largest of any name: in a run whose batches vary
    in length, those were the loop arrays of several of the longest batches, kept at once.
    Each layer has its own (`numpy_lstm.engine.Workspace`), and each worker process one per
    layer that it runs parts of.
    """

    def __init__(self):
        self._arrays = {}

    def borrow(self, name, shape, dtype):
        """An uninitialised array of this shape and dtype: the one kept under `name` when it is
        large enough, else a fresh one (which replaces it when given back)."""
        size = int(np.prod(shape))
        kept = self._arrays.pop(name, None)
        if kept is None or kept.dtype != dtype or kept.size < size:
            kept = np.empty(size, dtype)
        return kept[:size].reshape(shape)

    def give_back(self, name, array):
        """Return an array obtained from `borrow(name, ...)`."""
        flat = array if array.base is None else array.base
        kept = self._arrays.get(name)
        if flat.ndim == 1 and (kept is None or kept.size < flat.size):
            self._arrays[name] = flat

    def held_bytes(self):
        """Bytes of the arrays kept for the next pass."""
        return sum(a.nbytes for a in self._arrays.values())
