"""A row-sparse gradient: the gradient of a table of which a batch reads only a few rows.

The hashed bigram table (Embedding's `bigrams`, K rows) is read at a few thousand buckets per
batch; its gradient is zero everywhere else. `RowSparse` holds only the rows touched, so neither
the backward pass nor the optimizer (`Adam`'s lazy rows, `clip_by_global_norm`) forms a dense
K x E array per step.
"""
import numpy as np


class RowSparse:
    """The gradient of a (K, E) weight that is zero outside `rows`: rows (n,) int64, sorted and
    unique; values (n, E), the gradient's rows there; shape (K, E), the weight's.

    np.asarray(g) (or g.toarray()) gives the dense array, for tests and gradient checks: the
    training step never calls it.
    """

    def __init__(self, rows, values, shape):
        self.rows = rows
        self.values = values
        self.shape = tuple(shape)

    @property
    def dtype(self):
        return self.values.dtype

    def toarray(self):
        dense = np.zeros(self.shape, self.values.dtype)
        dense[self.rows] = self.values
        return dense

    def __array__(self, dtype=None, copy=None):
        dense = self.toarray()
        return dense if dtype is None else dense.astype(dtype)

    def scaled(self, factor):
        """The gradient times a scalar (the same rows)."""
        return RowSparse(self.rows, self.values * np.asarray(factor, self.values.dtype), self.shape)
