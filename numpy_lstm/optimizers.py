"""Optimizers that update a list of weight arrays in place from a list of gradients, and the
learning-rate schedule."""
import numpy as np

from .sparse import RowSparse


def clip_by_global_norm(grads, max_norm):
    """Scale all gradients by one factor so their joint L2 norm is at most `max_norm`.

    Returns (grads, norm) where norm is the norm before clipping. One factor for all tensors
    keeps the update's direction, unlike clipping each tensor on its own. A `RowSparse` gradient
    counts its rows (the others are zero) and stays row-sparse.
    """
    dense = [g.values if isinstance(g, RowSparse) else g for g in grads]
    norm = float(np.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in dense)))
    if norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        grads = [g.scaled(scale) if isinstance(g, RowSparse) else g * np.asarray(scale, g.dtype) for g in grads]
    return grads, norm


class SGD:
    """w -= lr * grad."""

    def __init__(self, learning_rate=0.01):
        self.learning_rate = learning_rate

    def step(self, weights, grads):
        for w, g in zip(weights, grads):
            if isinstance(g, RowSparse):    # rows unique: one subtraction per row
                w[g.rows] -= np.asarray(self.learning_rate, w.dtype) * g.values
            else:
                w -= np.asarray(self.learning_rate, w.dtype) * g

    def state(self):
        return {}

    def load_state(self, state):
        pass


class Adam:
    """Adam as Keras runs it (the "epsilon hat" form of Kingma & Ba, section 2).

    m = beta_1 m + (1 - beta_1) g;  v = beta_2 v + (1 - beta_2) g^2
    alpha_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t);  w -= alpha_t m / (sqrt(v) + epsilon)

    Keras's defaults: lr 1e-3, beta_1 0.9, beta_2 0.999, epsilon 1e-7. Folding the bias
    corrections into alpha_t puts epsilon next to the uncorrected sqrt(v), which is what makes
    this differ (slightly) from the textbook form.

    A weight whose gradient is `RowSparse` (the hashed bigram table, Embedding's `bigrams`) is
    updated lazily, row-sparse: only its rows in the gradient have their m and v decayed and
    updated and their weights moved, with alpha_t of the global step t. The moments of the rows
    a batch does not touch stay as they are; they do not decay (as TensorFlow Addons' LazyAdam),
    so it differs from dense Adam, which would decay them and keep moving those rows by the
    remains of their momentum. On the rows touched at step 1 the two agree exactly. Every other
    weight (the word table among them) is updated densely, as before.
    """

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        self.learning_rate = learning_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.iterations = 0
        self.m = None
        self.v = None

    def step(self, weights, grads):
        if self.m is None:
            self.m = [np.zeros_like(w) for w in weights]
            self.v = [np.zeros_like(w) for w in weights]
        self.iterations += 1
        t = self.iterations
        alpha = self.learning_rate * np.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
        for w, g, m, v in zip(weights, grads, self.m, self.v):
            if isinstance(g, RowSparse):
                self._lazy_step(w, g, m, v, alpha)
                continue
            m *= self.beta_1
            m += (1 - self.beta_1) * g
            v *= self.beta_2
            v += (1 - self.beta_2) * np.square(g)
            w -= (alpha * m / (np.sqrt(v) + self.epsilon)).astype(w.dtype, copy=False)

    def _lazy_step(self, w, g, m, v, alpha):
        """Dense Adam's update on the rows of g alone (rows unique): gathered, updated, written back."""
        rows = g.rows
        m_rows, v_rows = m[rows], v[rows]
        m_rows *= self.beta_1
        m_rows += (1 - self.beta_1) * g.values
        v_rows *= self.beta_2
        v_rows += (1 - self.beta_2) * np.square(g.values)
        m[rows], v[rows] = m_rows, v_rows
        w[rows] -= (alpha * m_rows / (np.sqrt(v_rows) + self.epsilon)).astype(w.dtype, copy=False)

    def state(self):
        """Arrays and counters needed to resume exactly: {"iterations", "m", "v"}."""
        return {"iterations": self.iterations, "m": self.m, "v": self.v}

    def load_state(self, state):
        self.iterations = int(state["iterations"])
        self.m = None if state["m"] is None else [np.array(a) for a in state["m"]]
        self.v = None if state["v"] is None else [np.array(a) for a in state["v"]]


def learning_rate(config, epoch, step, steps_per_epoch):
    """The learning rate of one step (epoch and step count from 1).

    "constant": config.lr throughout. "linear": warm up from 0 over the first epoch, then decay
    linearly to 0 at the last epoch. A function of the step alone, so resuming needs no state.
    """
    if config.lr_schedule == "constant":
        return config.lr
    t = (epoch - 1) * steps_per_epoch + step
    warmup, total = steps_per_epoch, config.epochs * steps_per_epoch
    if t <= warmup:
        return config.lr * t / warmup
    return config.lr * (total - t + 1) / (total - warmup + 1)
