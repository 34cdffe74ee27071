"""Layers: gradient checks of every tensor, the LSTM against reference.py, Keras's golden numbers, masking."""
import warnings

import numpy as np
import pytest

from numpy_lstm import LSTM, Dense, Embedding, check_gradient, relative_error, sigmoid
from numpy_lstm.reference import lstm_forward

TOL = 1e-6


def random_lstm(rng, E=4, H=3, return_sequences=False):
    """A float64 LSTM whose bias is random too: zero biases hide bias and gate bugs."""
    layer = LSTM(E, H, rng, return_sequences=return_sequences, dtype=np.float64)
    layer.bias[:] = rng.normal(size=layer.bias.shape)
    return layer


def test_sigmoid_is_stable_and_correct():
    z = np.array([-1000.0, -30.0, -1.0, 0.0, 2.0, 30.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sigmoid(z)
        s32 = sigmoid(z.astype(np.float32))
    assert s32.dtype == np.float32
    assert np.all(np.isfinite(s)) and s[0] == 0.0 and s[-1] == 1.0
    moderate = slice(1, 6)
    np.testing.assert_allclose(s[moderate], 1 / (1 + np.exp(-z[moderate])), rtol=1e-12, atol=1e-15)


def test_checker_catches_a_wrong_gradient():
    rng = np.random.default_rng(0)
    layer = Dense(4, 3, rng, dtype=np.float64)
    x = rng.normal(size=(5, 4))
    out, cache = layer.forward(x)
    dout = rng.normal(size=out.shape)
    dx, (dkernel, dbias) = layer.backward(dout, cache)
    f = lambda: layer.forward(x)[0]  # noqa: E731
    assert check_gradient(f, layer.kernel, dout, dkernel) < TOL
    wrong = dkernel.copy()
    wrong[2, 1] *= 1.001  # one entry off by 0.1%
    assert check_gradient(f, layer.kernel, dout, wrong) > 1e-4
    assert check_gradient(f, x, dout, dx * 0.5) > 0.1  # a whole tensor off by a factor


def test_relative_error_floor_and_shape():
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error([1.0], [1.0 + 1e-9]) < 1e-9
    with pytest.raises(ValueError):
        relative_error(np.zeros(3), np.zeros(4))


def test_dense_gradients():
    rng = np.random.default_rng(1)
    layer = Dense(5, 2, rng, dtype=np.float64)
    layer.bias[:] = rng.normal(size=2)
    x = rng.normal(size=(4, 5))
    out, cache = layer.forward(x)
    dout = rng.normal(size=out.shape)
    dx, grads = layer.backward(dout, cache)
    f = lambda: layer.forward(x)[0]  # noqa: E731
    for array, grad in [(x, dx)] + list(zip(layer.weights, grads)):
        assert check_gradient(f, array, dout, grad) < TOL


def test_embedding_gradient_with_repeated_ids():
    rng = np.random.default_rng(2)
    layer = Embedding(6, 3, rng, dtype=np.float64)
    ids = np.array([[1, 1, 4, 1], [0, 4, 4, 5]])  # repeats within and across rows
    out, cache = layer.forward(ids)
    assert out.shape == (2, 4, 3)
    dout = rng.normal(size=out.shape)
    (dtable,) = layer.backward(dout, cache)
    assert check_gradient(lambda: layer.forward(ids)[0], layer.embeddings, dout, dtable) < TOL
    np.testing.assert_allclose(dtable[1], dout[0, 0] + dout[0, 1] + dout[0, 3])
    assert not dtable[2].any() and not dtable[3].any()


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.4])
def test_lstm_gradients(return_sequences, masked, recurrent_dropout):
    rng = np.random.default_rng(3)
    B, T, E, H = 3, 5, 4, 3
    layer = random_lstm(rng, E, H, return_sequences)
    layer.recurrent_dropout.rate = recurrent_dropout
    # The same seed on every call: the same dropout mask, so the output is a fixed function.
    dropout_rng = (lambda: np.random.default_rng(11)) if recurrent_dropout else (lambda: None)
    x = rng.normal(size=(B, T, E))
    h0, c0 = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    mask = None
    if masked:
        mask = np.ones((B, T), bool)
        mask[0, :2] = False   # pre-padding
        mask[1, 3] = False    # a hole in the middle
        mask[2, :] = False    # nothing at all: the state passes straight through
    out, cache = layer.forward(x, mask, (h0, c0), dropout_rng())
    dout = rng.normal(size=out.shape)
    dx, (dh0, dc0), grads = layer.backward(dout, cache)
    f = lambda: layer.forward(x, mask, (h0, c0), dropout_rng())[0]  # noqa: E731
    named = {"x": (x, dx), "h0": (h0, dh0), "c0": (c0, dc0),
             "kernel": (layer.kernel, grads[0]), "recurrent_kernel": (layer.recurrent_kernel, grads[1]),
             "bias": (layer.bias, grads[2])}
    errors = {name: check_gradient(f, a, dout, g) for name, (a, g) in named.items()}
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("masked", [False, True])
def test_lstm_matches_plain_reference(masked):
    rng = np.random.default_rng(4)
    B, T, E, H = 4, 7, 5, 6
    layer = random_lstm(rng, E, H, return_sequences=True)
    x = rng.normal(size=(B, T, E))
    h0, c0 = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    mask = rng.random((B, T)) > 0.3 if masked else None
    out, _ = layer.forward(x, mask, (h0, c0))
    expected, _ = lstm_forward(x, *layer.weights, h0, c0, mask)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    layer.return_sequences = False
    last, _ = layer.forward(x, mask, (h0, c0))
    np.testing.assert_allclose(last, expected[:, -1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("masked", [False, True])
def test_lstm_recurrent_dropout_matches_plain_reference(masked):
    rng = np.random.default_rng(14)
    B, T, E, H = 4, 7, 5, 6
    layer = random_lstm(rng, E, H, return_sequences=True)
    layer.recurrent_dropout.rate = 0.5
    x = rng.normal(size=(B, T, E))
    h0, c0 = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    mask = rng.random((B, T)) > 0.3 if masked else None
    out, _ = layer.forward(x, mask, (h0, c0), rng=np.random.default_rng(15))
    keep = (np.random.default_rng(15).random((B, H)) >= 0.5) / 0.5      # the layer's draw
    assert 0 < (keep == 0).sum() < keep.size
    expected, _ = lstm_forward(x, *layer.weights, h0, c0, mask, keep)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    plain, _ = lstm_forward(x, *layer.weights, h0, c0, mask)
    assert not np.allclose(out, plain)                     # the mask did act
    np.testing.assert_allclose(layer.forward(x, mask, (h0, c0))[0], plain, rtol=1e-12, atol=1e-12)


def test_lstm_keras_golden_numbers():
    # keras/src/layers/rnn/lstm_test.py, test_correctness: constant initializers 0.01 / 0.02 /
    # 0.03; with unit_forget_bias (Keras's default) the forget block of the bias is 1.0, not 0.03.
    # Keras's expected output is (3, 3), each row constant: batch rows are 0.6288687,
    # 0.86899155 and 0.9460773.
    layer = LSTM(4, 3, np.random.default_rng(0))
    layer.kernel[:] = 0.01
    layer.recurrent_kernel[:] = 0.02
    layer.bias[:] = 0.03
    layer.bias[3:6] = 1.0
    x = np.arange(72).reshape(3, 6, 4).astype(np.float32)
    out, _ = layer.forward(x)
    expected = np.array([0.6288687, 0.86899155, 0.9460773], np.float32)[:, None].repeat(3, axis=1)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_lstm_keras_initialisation():
    rng = np.random.default_rng(5)
    E, H = 32, 100
    layer = LSTM(E, H, rng)
    assert layer.kernel.shape == (E, 4 * H) and layer.recurrent_kernel.shape == (H, 4 * H)
    assert layer.kernel.dtype == np.float32
    limit = np.sqrt(6 / (E + 4 * H))
    assert np.abs(layer.kernel).max() <= limit and np.abs(layer.kernel).max() > 0.95 * limit
    np.testing.assert_allclose(layer.recurrent_kernel @ layer.recurrent_kernel.T, np.eye(H), atol=1e-5)
    expected_bias = np.zeros(4 * H)
    expected_bias[H:2 * H] = 1.0
    np.testing.assert_array_equal(layer.bias, expected_bias)
    # The four gate blocks are drawn independently, not copies of one another.
    blocks = np.split(layer.recurrent_kernel, 4, axis=1)
    assert not np.allclose(blocks[0], blocks[1])


def test_pre_padded_batch_equals_unpadded_sequences():
    rng = np.random.default_rng(6)
    E, H, T = 4, 5, 8
    layer = random_lstm(rng, E, H, return_sequences=False)
    lengths = [8, 3, 5, 1]
    seqs = [rng.normal(size=(n, E)) for n in lengths]
    x = np.zeros((len(seqs), T, E))
    mask = np.zeros((len(seqs), T), bool)
    for b, s in enumerate(seqs):
        x[b, T - len(s):] = s
        mask[b, T - len(s):] = True
    out, cache = layer.forward(x, mask)
    dout = rng.normal(size=out.shape)
    dx, _, grads = layer.backward(dout, cache)
    total = [np.zeros_like(g) for g in grads]
    for b, s in enumerate(seqs):
        out_b, cache_b = layer.forward(s[None])
        np.testing.assert_allclose(out[b], out_b[0], rtol=1e-12, atol=1e-12)
        dx_b, _, grads_b = layer.backward(dout[b:b + 1], cache_b)
        np.testing.assert_allclose(dx[b, T - len(s):], dx_b[0], rtol=1e-10, atol=1e-12)
        assert not dx[b, :T - len(s)].any()
        total = [a + g for a, g in zip(total, grads_b)]
    for g, expected in zip(grads, total):
        np.testing.assert_allclose(g, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["mean", "max"])
def test_time_pooling_matches_reference_and_gradients(mode):
    from numpy_lstm.layers import TimePooling
    rng = np.random.default_rng(7)
    B, T, H = 4, 6, 3
    h = rng.normal(size=(B, T, H))
    mask = rng.random((B, T)) > 0.4
    mask[0] = True
    mask[1] = False  # a row with nothing unmasked pools to zeros
    pool = TimePooling(mode)
    out, cache = pool.forward(h, mask)
    reduce = np.mean if mode == "mean" else np.max
    for b in range(B):
        expected = reduce(h[b, mask[b]], axis=0) if mask[b].any() else np.zeros(H)
        np.testing.assert_allclose(out[b], expected, rtol=1e-12)
    dout = rng.normal(size=out.shape)
    dh = pool.backward(dout, cache)
    assert not dh[~mask].any()  # masked steps get no gradient
    assert check_gradient(lambda: pool.forward(h, mask)[0], h, dout, dh) < TOL


@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_is_two_lstms_and_its_gradients(return_sequences):
    from numpy_lstm.layers import Bidirectional
    rng = np.random.default_rng(8)
    B, T, E, H = 3, 5, 4, 3
    layer = Bidirectional(E, H, rng, return_sequences=return_sequences, dtype=np.float64)
    for w in layer.weights:
        w[...] = rng.normal(size=w.shape) * 0.5
    x = rng.normal(size=(B, T, E))
    mask = np.ones((B, T), bool)
    mask[0, :2] = False
    out, cache = layer.forward(x, mask)
    fwd, _ = lstm_forward(x, *layer.forward_layer.weights, mask=mask)
    bwd = lstm_forward(x[:, ::-1], *layer.backward_layer.weights, mask=mask[:, ::-1])[0][:, ::-1]
    expected = np.concatenate([fwd, bwd], axis=-1) if return_sequences else \
        np.concatenate([fwd[:, -1], bwd[:, 0]], axis=-1)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    dout = rng.normal(size=out.shape)
    dx, _, grads = layer.backward(dout, cache)
    f = lambda: layer.forward(x, mask)[0]  # noqa: E731
    errors = [check_gradient(f, a, dout, g) for a, g in [(x, dx)] + list(zip(layer.weights, grads))]
    assert max(errors) < TOL, errors


def test_lstm_saturated_gates_give_no_warnings_and_finite_gradients():
    rng = np.random.default_rng(9)
    layer = LSTM(4, 3, rng)
    x = (rng.choice([-1.0, 1.0], size=(2, 5, 4)) * 1000).astype(np.float32)  # |z| in the thousands
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, cache = layer.forward(x)
        dx, _, grads = layer.backward(np.ones_like(out), cache)
    assert np.all(np.isfinite(out)) and np.all(np.abs(out) <= 1)
    assert all(np.all(np.isfinite(g)) for g in [dx, *grads])
