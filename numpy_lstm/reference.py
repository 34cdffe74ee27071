"""The LSTM as the equations write it: a plain reference, one line per equation.

This is the file to read first. It has no speed tricks: a step forward, a step backward that
takes one derivative per line, and sequence functions that loop over the steps (after CS231n's
rnn_layers). The fast engine (`numpy_lstm.engine`) computes the same numbers and is tested
against these functions in float64.

Layout, as in Keras: kernel (E, 4H), recurrent_kernel (H, 4H), bias (4H,), the four gate blocks
side by side in the order i, f, c, o (input gate, forget gate, cell candidate, output gate).
Shapes: B batch rows, T time steps, E input features, H units. Per step t:

    z_t = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias      (B, 4H)
    i_t = sigmoid(z_i)    f_t = sigmoid(z_f)    g_t = tanh(z_c)    o_t = sigmoid(z_o)
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)
"""
from typing import NamedTuple, Optional

import numpy as np


def sigmoid(z, out=None):
    """Logistic function 1 / (1 + exp(-z)), computed as (1 + tanh(z / 2)) / 2.

    The two are equal, but the second needs no exp, so it cannot overflow at any z (the first
    does for z << 0); with `out=z` it runs in place.
    """
    out = np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


class StepCache(NamedTuple):
    """What one step keeps for its backward pass; every array (B, H) except x (B, E)."""

    x: np.ndarray
    h_prev: np.ndarray
    c_prev: np.ndarray
    i: np.ndarray           # input gate
    f: np.ndarray           # forget gate
    g: np.ndarray           # cell candidate (Keras's "c" block)
    o: np.ndarray           # output gate
    c: np.ndarray           # the new cell state (backward reads tanh_c; kept for inspection)
    tanh_c: np.ndarray
    kernel: np.ndarray
    recurrent_kernel: np.ndarray


class SequenceCache(NamedTuple):
    """What `lstm_forward` keeps: one StepCache per step, the mask and the dropout keep mask."""

    steps: list
    mask: Optional[np.ndarray]      # bool (B, T) or None
    keep: Optional[np.ndarray]      # (B, H) or None


def lstm_step_forward(x, h_prev, c_prev, kernel, recurrent_kernel, bias):
    """One time step.

    x (B, E), h_prev (B, H), c_prev (B, H); kernel (E, 4H), recurrent_kernel (H, 4H), bias (4H,).
    Returns (h (B, H), c (B, H), cache).
    """
    H = h_prev.shape[1]
    z = x @ kernel + h_prev @ recurrent_kernel + bias     # all four gates' pre-activations, one matmul each
    i = sigmoid(z[:, :H])
    f = sigmoid(z[:, H:2 * H])
    g = np.tanh(z[:, 2 * H:3 * H])
    o = sigmoid(z[:, 3 * H:])
    c = f * c_prev + i * g
    tanh_c = np.tanh(c)
    h = o * tanh_c
    return h, c, StepCache(x, h_prev, c_prev, i, f, g, o, c, tanh_c, kernel, recurrent_kernel)


def lstm_step_backward(dh, dc, cache):
    """Backward of one step.

    dh (B, H), dc (B, H): the loss's gradients arriving at h_t and c_t from later (the next step,
    the output). Returns (dx (B, E), dh_prev (B, H), dc_prev (B, H), dkernel (E, 4H),
    drecurrent_kernel (H, 4H), dbias (4H,)).
    """
    x, h_prev, c_prev, i, f, g, o, _, tanh_c, kernel, recurrent_kernel = cache
    do = dh * tanh_c                          # h = o * tanh(c)                       -> dh/do
    dc = dc + dh * o * (1 - tanh_c ** 2)      # ... and through tanh(c): tanh' = 1 - tanh^2
    di = dc * g                               # c = f * c_prev + i * g                -> dc/di
    df = dc * c_prev                          #                                        -> dc/df
    dg = dc * i                               #                                        -> dc/dg
    dc_prev = dc * f                          #                                        -> dc/dc_prev
    dz = np.concatenate([di * i * (1 - i),    # sigmoid'(z) = s (1 - s)
                         df * f * (1 - f),
                         dg * (1 - g ** 2),    # tanh'(z) = 1 - tanh(z)^2
                         do * o * (1 - o)], axis=1)                              # (B, 4H)
    dx = dz @ kernel.T                        # z = x @ kernel + h_prev @ recurrent_kernel + bias
    dh_prev = dz @ recurrent_kernel.T
    dkernel = x.T @ dz
    drecurrent_kernel = h_prev.T @ dz
    dbias = dz.sum(axis=0)
    return dx, dh_prev, dc_prev, dkernel, drecurrent_kernel, dbias


def lstm_forward(x, kernel, recurrent_kernel, bias, h0=None, c0=None, mask=None, keep=None):
    """Run the steps in order.

    x (B, T, E); h0, c0 (B, H) or None for zeros; mask bool (B, T) or None: where a row's step is
    masked it keeps (h, c) unchanged, as Keras's mask_zero does. keep (B, H) or None: recurrent
    dropout's scaled keep mask (0 or 1 / (1 - rate)), the same for every step: the step reads
    h_{t-1} * keep where it reads h_{t-1}, as Keras's LSTM(recurrent_dropout=...) does.
    Returns (hs (B, T, H), every h_t, and a SequenceCache). T must be at least 1.
    """
    B, T, _ = x.shape
    if T == 0:
        raise ValueError("lstm_forward needs at least one time step")
    H = recurrent_kernel.shape[0]
    dtype = np.result_type(x, kernel)             # integer inputs (Keras's test feeds arange) give float states
    h = np.zeros((B, H), dtype) if h0 is None else h0
    c = np.zeros((B, H), dtype) if c0 is None else c0
    hs = np.empty((B, T, H), dtype)
    steps = []
    for t in range(T):
        h_read = h if keep is None else h * keep
        h_new, c_new, step = lstm_step_forward(x[:, t], h_read, c, kernel, recurrent_kernel, bias)
        if mask is not None:                      # masked rows carry the previous state
            m = mask[:, t, None]
            h_new, c_new = np.where(m, h_new, h), np.where(m, c_new, c)
        h, c = h_new, c_new
        hs[:, t] = h
        steps.append(step)
    return hs, SequenceCache(steps, mask, keep)


def lstm_backward(dhs, cache):
    """Backprop through time: the steps in reverse order.

    dhs (B, T, H): the loss's gradient with respect to every h_t (zeros but the last step for a
    model that reads only the last state). Returns (dx (B, T, E), dh0 (B, H), dc0 (B, H),
    dkernel (E, 4H), drecurrent_kernel (H, 4H), dbias (4H,)): the weights serve every step, so
    their gradients are sums over the steps.
    """
    steps, mask, keep = cache
    B, T, H = dhs.shape
    E, H4 = steps[0].kernel.shape
    dx = np.zeros((B, T, E), dhs.dtype)
    dkernel = np.zeros((E, H4), dhs.dtype)
    drecurrent_kernel = np.zeros((H, H4), dhs.dtype)
    dbias = np.zeros(H4, dhs.dtype)
    dh_next = np.zeros((B, H), dhs.dtype)         # dL/dh_t through step t + 1
    dc_next = np.zeros((B, H), dhs.dtype)
    for t in reversed(range(T)):
        dh = dh_next + dhs[:, t]                  # h_t is an output and step t + 1's input
        dc = dc_next
        dh_carried = dc_carried = 0.0
        if mask is not None:                      # a masked step copied (h, c): gradients pass straight back
            m = mask[:, t, None]
            dh, dh_carried = np.where(m, dh, 0.0), np.where(m, 0.0, dh)
            dc, dc_carried = np.where(m, dc, 0.0), np.where(m, 0.0, dc)
        dx[:, t], dh_prev, dc_prev, dk, drk, db = lstm_step_backward(dh, dc, steps[t])
        if keep is not None:
            dh_prev = dh_prev * keep              # the step read h_{t-1} * keep
        dh_next, dc_next = dh_prev + dh_carried, dc_prev + dc_carried
        dkernel += dk
        drecurrent_kernel += drk
        dbias += db
    return dx, dh_next, dc_next, dkernel, drecurrent_kernel, dbias
