"""The tutorial's layers, by hand: Embedding -> LSTM -> Dense.

Every layer follows one pattern (after CS231n's rnn_layers): `forward` returns the output and a
cache of what backward needs; `backward` takes the upstream gradient and that cache and returns
the gradients. Each layer lists its weights in `weights`, in Keras's order, and `backward`
returns their gradients in the same order.

Shapes: B batch, T time steps, E embedding width, H LSTM units, V vocabulary size.
"""
import numpy as np

from .initializers import glorot_uniform, orthogonal


def sigmoid(z, out=None):
    """Logistic function, computed as 0.5 * (1 + tanh(z / 2)).

    The identity needs no exp, so it cannot overflow at any |z| (1 / (1 + exp(-z)) does for
    z << 0), and it runs in place when `out` is `z`.
    """
    out = np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


class Embedding:
    """Lookup table: ids (B, T) -> vectors (B, T, E). Keras init uniform(-0.05, 0.05)."""

    def __init__(self, input_dim, output_dim, rng, dtype=np.float32):
        self.embeddings = rng.uniform(-0.05, 0.05, (input_dim, output_dim)).astype(dtype)

    @property
    def weights(self):
        return [self.embeddings]

    def forward(self, ids):
        """ids: int (B, T) -> (out (B, T, E), cache)."""
        return self.embeddings[ids], ids

    def backward(self, dout, ids):
        """dout (B, T, E) -> [dembeddings (V, E)].

        A token id that occurs n times receives the sum of its n upstream rows; np.add.at is the
        unbuffered scatter-add that gets repeated ids right (`d[ids] += dout` would keep one).
        """
        dembeddings = np.zeros_like(self.embeddings)
        np.add.at(dembeddings, ids.ravel(), dout.reshape(-1, dout.shape[-1]))
        return [dembeddings]


class Dense:
    """Affine layer: x (B, D) -> x @ kernel + bias (B, U). Keras init: glorot_uniform, zeros."""

    def __init__(self, input_dim, units, rng, dtype=np.float32):
        self.kernel = glorot_uniform(rng, (input_dim, units)).astype(dtype)
        self.bias = np.zeros(units, dtype)

    @property
    def weights(self):
        return [self.kernel, self.bias]

    def forward(self, x):
        """x (B, D) -> (out (B, U), cache)."""
        return x @ self.kernel + self.bias, x

    def backward(self, dout, x):
        """dout (B, U) -> (dx (B, D), [dkernel (D, U), dbias (U,)])."""
        return dout @ self.kernel.T, [x.T @ dout, dout.sum(axis=0)]


class LSTM:
    """Long short-term memory over a batch of sequences, in Keras's layout.

    Weights: kernel (E, 4H), recurrent_kernel (H, 4H), bias (4H,), the four gate blocks side by
    side in the order i, f, c, o (input, forget, cell candidate, output). Per step t:

        z   = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias        (B, 4H)
        i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o)
        g   = tanh(z_c)                                                (the candidate cell)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)

    With a mask (B, T), a row whose step is masked keeps (h_{t-1}, c_{t-1}) unchanged, as Keras
    does with mask_zero: pre-padded sequences then end exactly where the unpadded ones would.
    Keras init: glorot_uniform kernel, orthogonal recurrent kernel, zero bias with the forget
    block set to 1 (unit_forget_bias).
    """

    def __init__(self, input_dim, units, rng, return_sequences=False, dtype=np.float32):
        H = units
        self.units = units
        self.return_sequences = return_sequences
        self.kernel = glorot_uniform(rng, (input_dim, 4 * H)).astype(dtype)
        self.recurrent_kernel = orthogonal(rng, (H, 4 * H)).astype(dtype)
        self.bias = np.zeros(4 * H, dtype)
        self.bias[H:2 * H] = 1.0

    @property
    def weights(self):
        return [self.kernel, self.recurrent_kernel, self.bias]

    def forward(self, x, mask=None, initial_state=None):
        """Run the sequence.

        x: (B, T, E); mask: bool (B, T) or None; initial_state: (h0 (B, H), c0 (B, H)) or None
        for zeros. Returns (out, cache) with out the last state h_T (B, H), or every state
        (B, T, H) when return_sequences.
        """
        B, T, _ = x.shape
        H = self.units
        dtype = self.kernel.dtype
        # Time-major copies keep each step's rows contiguous, so the loop touches one block.
        x_tm = np.ascontiguousarray(x.transpose(1, 0, 2), dtype=dtype)          # (T, B, E)
        m_tm = None if mask is None else np.ascontiguousarray(mask.T[:, :, None])  # (T, B, 1)

        # Every step's input projection in one matmul; the loop then adds the recurrent part
        # and turns each z in place into the gate values i, f, g, o that backward reuses.
        gates = (x_tm.reshape(T * B, -1) @ self.kernel + self.bias).reshape(T, B, 4 * H)
        h = np.empty((T + 1, B, H), dtype)    # h[t + 1] is h_t; h[0] is h0
        c = np.empty((T + 1, B, H), dtype)
        tanh_c = np.empty((T, B, H), dtype)
        if initial_state is None:
            h[0] = 0.0
            c[0] = 0.0
        else:
            h[0], c[0] = initial_state

        for t in range(T):
            z = gates[t]
            z += h[t] @ self.recurrent_kernel
            sigmoid(z[:, :2 * H], out=z[:, :2 * H])          # i, f
            np.tanh(z[:, 2 * H:3 * H], out=z[:, 2 * H:3 * H])  # g
            sigmoid(z[:, 3 * H:], out=z[:, 3 * H:])          # o
            i, f, g, o = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
            np.multiply(f, c[t], out=c[t + 1])
            c[t + 1] += i * g
            np.tanh(c[t + 1], out=tanh_c[t])
            np.multiply(o, tanh_c[t], out=h[t + 1])
            if m_tm is not None:
                # Masked rows carry the previous state; their gates are never used by backward.
                np.copyto(c[t + 1], c[t], where=~m_tm[t])
                np.copyto(h[t + 1], h[t], where=~m_tm[t])

        out = h[1:].transpose(1, 0, 2) if self.return_sequences else h[T]
        cache = (x_tm, m_tm, gates, h, c, tanh_c)
        return out, cache

    def backward(self, dout, cache):
        """Backprop through time.

        dout: (B, H) for the last state, or (B, T, H) with return_sequences.
        Returns (dx (B, T, E), (dh0 (B, H), dc0 (B, H)), [dkernel, drecurrent_kernel, dbias]).
        """
        x_tm, m_tm, gates, h, c, tanh_c = cache
        T, B, _ = x_tm.shape
        H = self.units
        dz = np.empty_like(gates)                              # (T, B, 4H)
        if self.return_sequences:
            dh_seq = dout.transpose(1, 0, 2)                   # (T, B, H)
            dh_next = np.zeros((B, H), gates.dtype)
        else:
            dh_seq = None
            dh_next = dout.astype(gates.dtype, copy=True)
        dc_next = np.zeros((B, H), gates.dtype)

        for t in reversed(range(T)):
            dh = dh_next if dh_seq is None else dh_next + dh_seq[t]
            i, f, g, o = (gates[t, :, k * H:(k + 1) * H] for k in range(4))
            # dc_t collects the path through h_t = o * tanh(c_t) and the path from c_{t+1}.
            dc = dc_next + dh * o * (1.0 - tanh_c[t] ** 2)
            dz_t = dz[t]
            np.multiply(dc * g, i * (1.0 - i), out=dz_t[:, :H])             # through i
            np.multiply(dc * c[t], f * (1.0 - f), out=dz_t[:, H:2 * H])     # through f
            np.multiply(dc * i, 1.0 - g ** 2, out=dz_t[:, 2 * H:3 * H])     # through g
            np.multiply(dh * tanh_c[t], o * (1.0 - o), out=dz_t[:, 3 * H:])  # through o
            dc_prev = dc * f
            if m_tm is not None:
                # A masked step is the identity on (h, c): gradients pass straight through.
                m = m_tm[t]
                dz_t *= m
                dc_prev = np.where(m, dc_prev, dc_next)
                dh_next = dz_t @ self.recurrent_kernel.T + np.where(m, 0.0, dh)
            else:
                dh_next = dz_t @ self.recurrent_kernel.T
            dc_next = dc_prev

        # The weights are shared across time, so their gradients are sums over all steps:
        # one matmul each over the (T * B) rows instead of T small ones inside the loop.
        dz_flat = dz.reshape(T * B, 4 * H)
        dkernel = x_tm.reshape(T * B, -1).T @ dz_flat
        drecurrent = h[:T].reshape(T * B, H).T @ dz_flat
        dbias = dz_flat.sum(axis=0)
        dx = (dz_flat @ self.kernel.T).reshape(T, B, -1).transpose(1, 0, 2)
        return dx, (dh_next, dc_next), [dkernel, drecurrent, dbias]


class Dropout:
    """Inverted dropout: zero each unit with probability `rate`, scale the rest by 1 / (1 - rate).

    `shared_axis` repeats one mask along that axis; on (B, T, E) inputs with shared_axis=1 every
    time step of a sequence loses the same features, as Keras's LSTM(dropout=...) does. Active
    only when forward gets an rng (training); otherwise the identity.
    """

    def __init__(self, rate, shared_axis=None):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.shared_axis = shared_axis

    def forward(self, x, rng=None):
        """x (any shape) -> (out, cache); cache is the scaled mask, or None when inactive."""
        if rng is None or self.rate == 0.0:
            return x, None
        shape = list(x.shape)
        if self.shared_axis is not None:
            shape[self.shared_axis] = 1
        keep = (rng.random(shape) >= self.rate).astype(x.dtype) / x.dtype.type(1.0 - self.rate)
        return x * keep, keep

    def backward(self, dout, keep):
        """dout like x -> dx."""
        return dout if keep is None else dout * keep


class TimePooling:
    """Summarise a sequence of states (B, T, H) as one vector (B, H), over unmasked steps only.

    mode "mean": the average of the states; "max": the largest value of each unit. A row with
    no unmasked step gives zeros. ("last" needs no layer: it is LSTM(return_sequences=False).)
    """

    def __init__(self, mode):
        if mode not in ("mean", "max"):
            raise ValueError(f"pooling mode must be 'mean' or 'max', got {mode!r}")
        self.mode = mode

    def forward(self, h, mask=None):
        """h (B, T, H), mask bool (B, T) or None -> (out (B, H), cache)."""
        B, T, H = h.shape
        m = np.ones((B, T, 1), bool) if mask is None else mask[:, :, None]
        if self.mode == "mean":
            count = np.maximum(m.sum(axis=1), 1).astype(h.dtype)           # (B, 1)
            return np.where(m, h, 0).sum(axis=1) / count, (m, count)
        masked = np.where(m, h, -np.inf)
        arg = masked.argmax(axis=1)                                         # (B, H)
        out = np.take_along_axis(h, arg[:, None, :], axis=1)[:, 0]
        out = np.where(m.any(axis=1), out, 0)
        return out, (m, arg, T)

    def backward(self, dout, cache):
        """dout (B, H) -> dh (B, T, H): spread evenly (mean) or routed to each maximum (max)."""
        if self.mode == "mean":
            m, count = cache
            return np.where(m, (dout / count)[:, None, :], 0)
        m, arg, T = cache
        dh = np.zeros((dout.shape[0], T, dout.shape[1]), dout.dtype)
        np.put_along_axis(dh, arg[:, None, :], np.where(m.any(axis=1), dout, 0)[:, None, :], axis=1)
        return dh
