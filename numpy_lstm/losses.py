"""Binary cross-entropy, computed from the logit so a saturated sigmoid costs no precision."""
import numpy as np

from .reference import sigmoid


def binary_crossentropy(logits, labels):
    """Mean BCE of sigmoid(logits) against labels, and its gradient.

    logits: (N,); labels: (N,) in {0, 1}. With p = sigmoid(z), -y log p - (1 - y) log(1 - p)
    equals softplus(z) - y z, and softplus(z) = max(z, 0) + log1p(exp(-|z|)) never overflows,
    so |z| = 1000 gives a finite loss where clipping p would not. Returns (loss, dlogits) with
    dlogits = (p - y) / N.
    """
    z = np.asarray(logits)
    y = np.asarray(labels, dtype=z.dtype)
    n = z.shape[0]
    loss = np.mean(np.maximum(z, 0) - y * z + np.log1p(np.exp(-np.abs(z))))
    return float(loss), (sigmoid(z) - y) / n
