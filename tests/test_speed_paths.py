"""The fast paths give the plain path's answers: parts run by worker processes, skipped padding,
reused buffers, subnormals flushed (tests/test_workers.py has the workers themselves)."""
import numpy as np
import pytest

from numpy_lstm import LSTM, Embedding, check_gradient
from numpy_lstm.engine import backward, cores, forward, fpu, spare


def run(layer, x, mask, state, dout_seed=1, dropout_seed=None):
    """Forward and backward once: [out, dx, dh0, dc0, dkernel, drecurrent, dbias]."""
    rng = None if dropout_seed is None else np.random.default_rng(dropout_seed)
    out, cache = layer.forward(x, mask, state, rng)
    dout = np.random.default_rng(dout_seed).normal(size=out.shape)
    dx, (dh0, dc0), grads = layer.backward(dout, cache)
    return [out, dx, dh0, dc0] + grads


def make_case(B, T=7, E=4, H=5, return_sequences=False, masked=False, seed=0):
    rng = np.random.default_rng(seed)
    layer = LSTM(E, H, rng, return_sequences=return_sequences, dtype=np.float64)
    layer.bias[:] = rng.normal(size=layer.bias.shape)
    x = rng.normal(size=(B, T, E))
    state = (rng.normal(size=(B, H)), rng.normal(size=(B, H)))
    mask = None
    if masked:
        lengths = rng.integers(0, T + 1, B)          # pre-padding, some rows empty, some full
        mask = np.arange(T)[None, :] >= (T - lengths)[:, None]
        if masked == "holes" and B > 2:
            mask[B // 2, T // 2] = False              # a hole in the middle of a row
    return layer, x, mask, state


@pytest.mark.parametrize("B", [1, 2, 5, 13])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("masked", [None, "pre", "holes"])
@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.3])
def test_split_matches_one_process(tiny_parts, B, return_sequences, masked, recurrent_dropout):
    layer, x, mask, state = make_case(B, return_sequences=return_sequences, masked=masked)
    layer.recurrent_dropout.rate = recurrent_dropout
    cores.set_num_processes(1)
    expected = run(layer, x, mask, state, dropout_seed=4)
    for threads in (2, 3, 4):                     # 13 rows: parts of 6/7, 4/4/5, 3/3/3/4
        cores.set_num_processes(threads)
        got = run(layer, x, mask, state, dropout_seed=4)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_default_split_is_deterministic_and_equal():
    """At the real minimum part size: repeatable for a core count, equal across counts."""
    layer, x, mask, state = make_case(37, T=9, E=6, H=8, masked="pre", seed=2)
    cores.set_num_processes(1)
    expected = run(layer, x, mask, state)
    try:
        for threads in (2, 3, 4):
            cores.set_num_processes(threads)
            first = run(layer, x, mask, state)
            again = run(layer, x, mask, state)
            for a, b, c in zip(first, again, expected):
                np.testing.assert_array_equal(a, b)
                np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-13)
    finally:
        cores.set_num_processes(None)


@pytest.mark.parametrize("threads, B, T, return_sequences, masked, seed", [
    (3, 5, 6, True, "pre", 3),
    (2, 6, 5, False, "pre", 11),
    (2, 6, 5, False, "holes", 11),
])
def test_split_gradients_check_numerically(tiny_parts, threads, B, T, return_sequences, masked, seed):
    cores.set_num_processes(threads)
    layer, x, mask, (h0, c0) = make_case(B, T, 3, 4, return_sequences=return_sequences, masked=masked, seed=seed)
    out, cache = layer.forward(x, mask, (h0, c0))
    dout = np.random.default_rng(seed + 1).normal(size=out.shape)
    dx, (dh0, dc0), grads = layer.backward(dout, cache)
    f = lambda: layer.forward(x, mask, (h0, c0))[0]  # noqa: E731
    pairs = [(x, dx), (h0, dh0), (c0, dc0)] + list(zip(layer.weights, grads))
    errors = [check_gradient(f, a, dout, g) for a, g in pairs]
    assert max(errors) < 1e-6, errors


def test_prepadded_rows_in_any_order_equal_one_at_a_time(tiny_parts):
    """Rows are reordered by start inside the layer; each must equal its own unpadded run."""
    cores.set_num_processes(3)
    layer, x, mask, _ = make_case(9, T=8, masked="pre", seed=13)
    layer.return_sequences = True
    out, cache = layer.forward(x, mask)
    dout = np.random.default_rng(14).normal(size=out.shape)
    dx, _, _ = layer.backward(dout, cache)
    for b in range(9):
        n = int(mask[b].sum())
        if n == 0:
            assert not out[b].any() and not dx[b].any()
            continue
        out_b, cache_b = layer.forward(x[b:b + 1, 8 - n:])
        np.testing.assert_allclose(out[b, 8 - n:], out_b[0], rtol=1e-12, atol=1e-13)
        assert not out[b, :8 - n].any()               # h stays h0 = 0 over the padding
        dx_b, _, _ = layer.backward(dout[b:b + 1, 8 - n:], cache_b)
        np.testing.assert_allclose(dx[b, 8 - n:], dx_b[0], rtol=1e-10, atol=1e-12)


def test_part_of_all_padding_keeps_state_and_passes_gradient(tiny_parts):
    """A part whose rows are masked at every step runs no step at all."""
    layer, x, _, state = make_case(4, T=5)
    mask = np.ones((4, 5), bool)
    mask[2:] = False                                # the second part of two is all padding
    cores.set_num_processes(2)
    out, cache = layer.forward(x, mask, state)
    np.testing.assert_array_equal(out[2:], state[0][2:])
    dout = np.random.default_rng(5).normal(size=out.shape)
    dx, (dh0, dc0), _ = layer.backward(dout, cache)
    np.testing.assert_array_equal(dh0[2:], dout[2:])
    assert not dc0[2:].any() and not dx[2:].any()


def test_float32_stays_float32():
    rng = np.random.default_rng(6)
    layer = LSTM(3, 4, rng, return_sequences=True)
    x = rng.normal(size=(2, 5, 3)).astype(np.float32)
    out, cache = layer.forward(x, np.ones((2, 5), bool))
    dx, (dh0, dc0), grads = layer.backward(rng.normal(size=out.shape), cache)  # float64 dout
    assert all(a.dtype == np.float32 for a in [out, dx, dh0, dc0] + grads)


def test_cache_is_released_by_backward_and_buffers_are_reused(tiny_parts):
    layer, x, mask, state = make_case(6, masked="holes", seed=7)
    first = run(layer, x, mask, state)
    out, cache = layer.forward(x, mask, state)       # reuses the arrays backward handed back
    layer.backward(np.ones(out.shape), cache)
    with pytest.raises(ValueError, match="run forward again"):
        layer.backward(np.ones(out.shape), cache)
    second = run(layer, x, mask, state)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_backward_buffers_reused_give_the_same_gradients(monkeypatch, tiny_parts):
    """Backward's borrowed buffers (the weight gradients' sum and run share, the C-ordered copy
    of the recurrent kernel) hold the last pass's values when lent again: the second pass's
    gradients are the first's, and a pass with every step masked gives zeros."""
    monkeypatch.setattr(forward, "ROW_MAJOR_MIN_UNITS", 0)   # the kernel's copy at any size
    cores.set_num_processes(1)
    layer, x, mask, state = make_case(6, masked="holes", seed=9)
    first = run(layer, x, mask, state)
    run(layer, 3 * x, None, state, dout_seed=2)        # other values left in the buffers
    for a, b in zip(first, run(layer, x, mask, state)):
        np.testing.assert_array_equal(a, b)
    *_, dkernel, drecurrent, dbias = run(layer, x, np.zeros(mask.shape, bool), state)
    assert not dkernel.any() and not drecurrent.any() and not dbias.any()


@pytest.mark.parametrize("shape", [(7, 5), (64, 130), (130, 64)])
def test_scaled_copy_in_tiles_is_one_multiply(monkeypatch, shape):
    """F-ordered weights made from C-ordered ones, read across in tiles, some of them cut short."""
    monkeypatch.setattr(forward, "CROSS_TILED_MIN_ELEMENTS", 0)
    a = np.random.default_rng(0).normal(size=shape)                 # rows contiguous
    out = np.empty(shape, order="F")                                # columns contiguous
    forward.scaled_copy(out, a, 0.5, tile=3)
    np.testing.assert_array_equal(out, a * 0.5)


def test_forward_without_backward_hands_its_buffers_back(tiny_parts):
    cores.set_num_processes(1)                     # one part, in this process, to look at
    layer, x, mask, state = make_case(6, masked="pre", seed=8)
    expected = run(layer, x, mask, state)
    _, (_, [dropped]) = layer.forward(x, mask, state)
    cells = dropped.cells
    del dropped                                      # evaluation: no backward
    out, cache = layer.forward(x, mask, state)
    assert np.shares_memory(cache[1][0].cells, cells)   # the next forward got the buffers back
    for seed in range(3):                            # more unused forwards leave a live cache be
        layer.forward(np.random.default_rng(seed).normal(size=x.shape), mask, state)
    dout = np.random.default_rng(1).normal(size=out.shape)
    dx, (dh0, dc0), grads = layer.backward(dout, cache)
    for a, b in zip(expected, [out, dx, dh0, dc0] + grads):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("time_major", [False, True])
def test_embedding_backward_equals_scatter_add(time_major):
    rng = np.random.default_rng(8)
    layer = Embedding(11, 3, rng, dtype=np.float64)
    ids = rng.integers(0, 11, (4, 9))
    dout = rng.normal(size=(9, 4, 3)).transpose(1, 0, 2) if time_major else rng.normal(size=(4, 9, 3))
    expected = np.zeros((11, 3))
    np.add.at(expected, ids.ravel(), dout.reshape(-1, 3))
    np.testing.assert_allclose(layer.backward(dout, ids)[0], expected, rtol=1e-12, atol=1e-14)


def subnormal(a):
    """Where a is nonzero but below the smallest normal number of its type."""
    return (a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)


@pytest.mark.skipif(not fpu.available(), reason="FTZ/DAZ are reached on x86-64 Linux only")
def test_flush_subnormals_holds_inside_the_block_only():
    small, scale = np.float32(1e-37), np.float32(1e-3)
    assert subnormal(small * scale)                     # 1e-40: representable, subnormal
    with fpu.flush_subnormals():
        assert small * scale == 0                       # FTZ: a subnormal result is 0
        assert np.float32(1e-40) * np.float32(1) == 0   # DAZ: a subnormal input reads as 0
    assert subnormal(small * scale)                     # restored on leaving
    with pytest.raises(KeyError), fpu.flush_subnormals():
        raise KeyError
    assert subnormal(small * scale)                     # and on leaving by an exception


@pytest.mark.skipif(not fpu.available(), reason="FTZ/DAZ are reached on x86-64 Linux only")
@pytest.mark.parametrize("threads", [1, 2])
def test_long_backward_flushes_subnormals_and_changes_nothing_else(threads):
    """500 steps take the early steps' gradients down through the subnormal range. The layer's
    passes (in this process and in a worker) flush them to zero; every value above 1e-30 is what
    the unflushed loop gives on the same rows, to float32 rounding. Both run with OpenBLAS at one
    thread, as the layer's parts do: on the AMD host its 2-thread matmuls round differently, and
    dx has elements that cancel to a few percent of their terms."""
    rng = np.random.default_rng(0)
    layer = LSTM(32, 100, rng)
    x = rng.standard_normal((16, 500, 32), dtype=np.float32)
    plain_dx, plain_grads = [], []
    for rows in np.split(np.arange(16), threads):   # the parts the layer will cut, unflushed
        with cores.blas_threads(1):
            out, cache = forward.forward_rows(layer.weights, x[rows], None, None, None, False,
                                              spare.SpareArrays())
            dx, _, grads = backward.backward_rows(np.ones_like(out), cache)
        plain_dx.append(dx)
        plain_grads.append(grads)
    plain_dx = np.concatenate(plain_dx)
    plain_grads = [sum(g) for g in zip(*plain_grads)]
    assert subnormal(plain_dx).any()                            # the case this test is about
    try:
        cores.set_num_processes(threads)     # 2: two parts of 8 rows, one in a worker
        out, cache = layer.forward(x)
        flushed = layer.backward(np.ones_like(out), cache)
    finally:
        cores.set_num_processes(None)
    assert not subnormal(flushed[0]).any()
    np.testing.assert_allclose(flushed[0], plain_dx, rtol=1e-5, atol=1e-30)
    for got, expected in zip(flushed[2], plain_grads):   # sums over all steps: float32 rounding
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


@pytest.mark.skipif(not fpu.available(), reason="FTZ/DAZ are reached on x86-64 Linux only")
def test_side_thread_computes_in_the_callers_floating_point_environment():
    """The backward's side thread (backward.StepColumns), started by the backward, inherits its
    caller's flush of subnormals: a side thread that did not flush (checked by resetting its
    MXCSR by hand) left 2,008 subnormal values in dx of the early steps of 500, which the
    backward on one thread flushes to zero."""
    rng = np.random.default_rng(0)
    layer = LSTM(32, 100, rng)
    x = rng.standard_normal((8, 500, 32), dtype=np.float32)
    results = []
    for side_thread in (False, True):
        with cores.blas_threads(1), fpu.flush_subnormals():
            out, cache = forward.forward_rows(layer.weights, x, None, None, None, False, spare.SpareArrays())
            dx, _, grads = backward.backward_rows(np.ones_like(out), cache, side_thread)
        results.append([dx] + grads)
    assert (results[0][0] == 0).any() and not subnormal(results[1][0]).any()
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
