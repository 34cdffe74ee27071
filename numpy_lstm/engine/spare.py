"""Large arrays lent to a forward pass and given back after its backward, for the next to reuse."""
import numpy as np


class SpareArrays:
    """A few large arrays that backward gives back for the next forward to borrow.

    A new array's pages are mapped by the kernel on first touch, a cost paid again by every
    pass that allocates afresh (docs/engine.md, "Spare arrays"). Arrays are kept flat and lent
    out as views of the requested shape; only arrays that never leave the loops go here. Each
    layer has its own (`numpy_lstm.engine.Workspace`), and each worker process one per layer
    that it runs parts of.
    """

    # the loop's cells, backward's sum of the weight gradients and its run's share, its copy of
    # the recurrent kernel
    KEEP = 4

    def __init__(self):
        self._arrays = []

    def borrow(self, shape, dtype):
        """An uninitialised array of this shape and dtype, reused when one is large enough."""
        size = int(np.prod(shape))
        fits = [k for k, a in enumerate(self._arrays) if a.dtype == dtype and a.size >= size]
        if fits:
            best = self._arrays.pop(min(fits, key=lambda k: self._arrays[k].size))
            return best[:size].reshape(shape)
        return np.empty(size, dtype).reshape(shape)

    def give_back(self, *arrays):
        """Return arrays obtained from `borrow`; only the KEEP largest are kept."""
        for a in arrays:
            flat = a if a.base is None else a.base
            if flat.ndim == 1 and all(flat is not b for b in self._arrays):
                self._arrays.append(flat)
        self._arrays.sort(key=lambda a: a.size, reverse=True)
        del self._arrays[self.KEEP:]
