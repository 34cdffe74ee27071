"""Numerical gradients by central differences, to check the hand-written backward passes.

Use float64 and small sizes: central differences have error O(eps^2) from truncation and
O(machine_eps / eps) from rounding; eps = 1e-5 balances the two, and only in float64 are both
far below the relative error of 1e-6 the tests ask for.
"""
import numpy as np


def relative_error(analytic, numeric, floor=1e-8):
    """Largest elementwise |a - n| / max(floor, |a| + |n|).

    Elementwise (not a norm over the tensor) so that one wrong entry among many correct ones is
    still caught; the floor keeps entries that are both ~0 from dividing noise by noise.
    """
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    if a.shape != n.shape:
        raise ValueError(f"gradient shape {a.shape} does not match {n.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - n) / np.maximum(floor, np.abs(a) + np.abs(n))))


def numerical_gradient(f, x, dout, eps=1e-5):
    """Gradient of sum(f() * dout) with respect to the array x, by central differences.

    f takes no arguments and reads x, which is perturbed in place one entry at a time and
    restored; dout is the upstream gradient (same shape as f's output). Returns an array
    shaped like x.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        idx = it.multi_index
        old = x[idx]
        x[idx] = old + eps
        plus = np.sum(f() * dout)
        x[idx] = old - eps
        minus = np.sum(f() * dout)
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def check_gradient(f, x, dout, analytic, eps=1e-5, tol=1e-6):
    """Relative error of an analytic gradient against the numerical one.

    Rounding in f leaves about machine_eps * |f| / eps of noise in every numerical entry, so an
    entry smaller than noise / tol cannot be checked to `tol` against its own size (gradient
    entries that happen to cross zero are the usual victims); the floor of relative_error is
    set to that size, and such entries are measured against it instead.
    """
    numeric = numerical_gradient(f, x, dout, eps)
    noise = np.finfo(np.float64).eps * max(1.0, abs(float(np.sum(f() * dout)))) / eps
    return relative_error(analytic, numeric, floor=max(1e-8, noise / tol))
