"""Keras's default initializers, drawn from an explicit np.random.Generator (never global state)."""
import numpy as np


def glorot_uniform(rng, shape):
    """Uniform(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)), shape (fan_in, fan_out).

    As in Keras, the fans are those of the whole matrix: for an LSTM kernel (E, 4H), the four
    gate blocks share one limit.
    """
    fan_in, fan_out = shape
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape)


def orthogonal(rng, shape, gain=1.0):
    """A (rows, cols) matrix with orthonormal rows or columns, whichever there are fewer of.

    QR of a Gaussian matrix of the tall orientation; multiplying Q's columns by the signs of R's
    diagonal makes the result uniformly (Haar) distributed rather than biased by QR's sign
    convention. Keras does the same, then transposes when rows < cols.
    """
    rows, cols = shape
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return gain * q
