"""The plain reference LSTM (numpy_lstm/reference.py): gradient checks of every input and weight,
the step functions against the sequence functions, masking, recurrent dropout, the gate layout."""
import numpy as np
import pytest

from numpy_lstm import check_gradient
from numpy_lstm.reference import lstm_backward, lstm_forward, lstm_step_backward, lstm_step_forward

TOL = 1e-6
B, T, E, H = 3, 5, 4, 3


def random_weights(rng, E=E, H=H):
    """kernel (E, 4H), recurrent_kernel (H, 4H), bias (4H,): all random, the bias too (zero
    biases hide bias and gate bugs)."""
    return [rng.normal(size=(E, 4 * H)), rng.normal(size=(H, 4 * H)) * 0.7, rng.normal(size=4 * H)]


def make_mask(kind):
    """A (B, T) mask: None, pre-padding as pad_sequences gives, or holes anywhere."""
    if kind is None:
        return None
    mask = np.ones((B, T), bool)
    if kind == "prepadded":
        mask[0, :2] = False       # starts at step 2
        mask[1, :4] = False       # only the last step
    else:
        mask[0, 1] = False        # a hole in the middle
        mask[1, [0, 4]] = False   # first and last steps masked
        mask[2, :] = False        # nothing at all: the state passes straight through
    return mask


def make_keep(rng, rate=0.4):
    """Recurrent dropout's scaled keep mask (B, H), with at least one unit dropped and one kept."""
    keep = (rng.random((B, H)) >= rate) / (1 - rate)
    keep.flat[:2] = [0.0, 1 / (1 - rate)]
    return keep


def sequence_gradient_errors(x, weights, h0, c0, mask, keep, dhs, cache=None):
    """{name: relative error} of lstm_backward's gradients of sum(hs * dhs) against central
    differences, for x, h0, c0 and the three weights. h0 and c0 None: the zero state, whose
    gradients are checked at explicit zero arrays. cache: a forward cache to run backward on
    instead of the forward's own (to show that a wrong one is caught)."""
    hs, own_cache = lstm_forward(x, *weights, h0, c0, mask, keep)
    dx, dh0, dc0, *dweights = lstm_backward(dhs, own_cache if cache is None else cache)
    if h0 is None:
        zeros = lstm_forward(x, *weights, np.zeros((B, H)), np.zeros((B, H)), mask, keep)[0]
        np.testing.assert_array_equal(hs, zeros)
        h0, c0 = np.zeros((B, H)), np.zeros((B, H))
    f = lambda: lstm_forward(x, *weights, h0, c0, mask, keep)[0]  # noqa: E731
    named = {"x": (x, dx), "h0": (h0, dh0), "c0": (c0, dc0)}
    named.update(zip(["kernel", "recurrent_kernel", "bias"], zip(weights, dweights)))
    return {name: check_gradient(f, a, dhs, g) for name, (a, g) in named.items()}


def test_step_gradients():
    rng = np.random.default_rng(0)
    weights = random_weights(rng)
    x, h_prev, c_prev = rng.normal(size=(B, E)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    dh, dc = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    _, _, cache = lstm_step_forward(x, h_prev, c_prev, *weights)
    grads = lstm_step_backward(dh, dc, cache)
    # The loss sum(h * dh) + sum(c * dc): both of the step's outputs reach it.
    f = lambda: np.concatenate(lstm_step_forward(x, h_prev, c_prev, *weights)[:2], axis=1)  # noqa: E731
    dout = np.concatenate([dh, dc], axis=1)
    arrays = [x, h_prev, c_prev, *weights]
    names = ["x", "h_prev", "c_prev", "kernel", "recurrent_kernel", "bias"]
    errors = {n: check_gradient(f, a, dout, g) for n, a, g in zip(names, arrays, grads)}
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("mask_kind", [None, "prepadded", "holes"])
@pytest.mark.parametrize("initial_state", [False, True])
@pytest.mark.parametrize("dropout", [False, True])
def test_sequence_gradients(mask_kind, initial_state, dropout):
    rng = np.random.default_rng(1)
    weights = random_weights(rng)
    x = rng.normal(size=(B, T, E))
    h0, c0 = (rng.normal(size=(B, H)), rng.normal(size=(B, H))) if initial_state else (None, None)
    keep = make_keep(rng) if dropout else None
    dhs = rng.normal(size=(B, T, H))
    errors = sequence_gradient_errors(x, weights, h0, c0, make_mask(mask_kind), keep, dhs)
    assert max(errors.values()) < TOL, errors


def test_last_state_gradients():
    # A last-state model: dhs is zero but at the last step, so every gradient comes through BPTT.
    rng = np.random.default_rng(2)
    weights = random_weights(rng)
    x, h0, c0 = rng.normal(size=(B, T, E)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    dhs = np.zeros((B, T, H))
    dhs[:, -1] = rng.normal(size=(B, H))
    errors = sequence_gradient_errors(x, weights, h0, c0, make_mask("prepadded"), None, dhs)
    assert max(errors.values()) < TOL, errors


def test_the_checks_catch_wrong_gradients():
    # The gradient checks above can fail: a backward that forgets the mask or the dropout mask,
    # or one bias entry off by 0.1%, is far over TOL.
    rng = np.random.default_rng(3)
    weights = random_weights(rng)
    x, h0, c0 = rng.normal(size=(B, T, E)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    mask, keep, dhs = make_mask("holes"), make_keep(rng), rng.normal(size=(B, T, H))
    _, cache = lstm_forward(x, *weights, h0, c0, mask, keep)
    no_mask = sequence_gradient_errors(x, weights, h0, c0, mask, keep, dhs, cache._replace(mask=None))
    assert no_mask["x"] > 1e-2 and no_mask["h0"] > 1e-2
    no_keep = sequence_gradient_errors(x, weights, h0, c0, mask, keep, dhs, cache._replace(keep=None))
    assert no_keep["recurrent_kernel"] > 1e-2 and no_keep["h0"] > 1e-2
    dbias = lstm_backward(dhs, cache)[5]
    f = lambda: lstm_forward(x, *weights, h0, c0, mask, keep)[0]  # noqa: E731
    assert check_gradient(f, weights[2], dhs, dbias) < TOL
    wrong = dbias.copy()
    wrong[H + 1] *= 1.001                  # one forget-gate bias entry
    assert check_gradient(f, weights[2], dhs, wrong) > 1e-4


@pytest.mark.parametrize("dropout", [False, True])
def test_steps_by_hand_equal_the_sequence_functions(dropout):
    rng = np.random.default_rng(4)
    weights = random_weights(rng)
    x, h0, c0 = rng.normal(size=(B, T, E)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    keep = make_keep(rng) if dropout else np.ones((B, H))
    dhs = rng.normal(size=(B, T, H))
    hs, cache = lstm_forward(x, *weights, h0, c0, keep=keep if dropout else None)
    dx, dh0, dc0, *dweights = lstm_backward(dhs, cache)

    h, c, caches = h0, c0, []
    for t in range(T):
        h, c, step = lstm_step_forward(x[:, t], h * keep, c, *weights)
        np.testing.assert_allclose(hs[:, t], h, rtol=1e-13, atol=1e-15)
        caches.append(step)
    dh_next, dc_next = np.zeros((B, H)), np.zeros((B, H))
    total = [np.zeros_like(w) for w in weights]
    for t in reversed(range(T)):
        dx_t, dh_prev, dc_next, *dw = lstm_step_backward(dhs[:, t] + dh_next, dc_next, caches[t])
        dh_next = dh_prev * keep
        np.testing.assert_allclose(dx[:, t], dx_t, rtol=1e-13, atol=1e-15)
        total = [a + g for a, g in zip(total, dw)]
    np.testing.assert_allclose(dh0, dh_next, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dc0, dc_next, rtol=1e-13, atol=1e-15)
    for ours, by_hand in zip(dweights, total):
        np.testing.assert_allclose(ours, by_hand, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("mask_kind", ["prepadded", "holes"])
def test_a_masked_step_leaves_the_state_unchanged(mask_kind):
    rng = np.random.default_rng(5)
    weights = random_weights(rng)
    x, h0, c0 = rng.normal(size=(B, T, E)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    mask = make_mask(mask_kind)
    hs, cache = lstm_forward(x, *weights, h0, c0, mask)
    # The state each step reads is the state after the previous step; (h0, c0) before step 0.
    h_before = np.concatenate([h0[:, None], hs[:, :-1]], axis=1)
    c_before = np.stack([step.c_prev for step in cache.steps], axis=1)
    for b, t in zip(*np.nonzero(~mask)):
        np.testing.assert_array_equal(hs[b, t], h_before[b, t])
        if t + 1 < T:                            # c_t is what step t + 1 reads
            np.testing.assert_array_equal(c_before[b, t + 1], c_before[b, t])
    for b, t in zip(*np.nonzero(mask)):          # an unmasked step does change it
        assert not np.allclose(hs[b, t], h_before[b, t])
    # A row whose masked steps are dropped gives the same states at its unmasked steps.
    for b in range(B):
        kept = mask[b]
        if kept.any():
            alone, _ = lstm_forward(x[b:b + 1, kept], *weights, h0[b:b + 1], c0[b:b + 1])
            np.testing.assert_allclose(hs[b, kept], alone[0], rtol=1e-13, atol=1e-15)
        else:
            np.testing.assert_array_equal(hs[b], np.broadcast_to(h0[b], (T, H)))


def test_keras_golden_numbers():
    # keras/src/layers/rnn/lstm_test.py, test_correctness: kernel 0.01, recurrent kernel 0.02,
    # bias 0.03 with the forget block at 1.0 (unit_forget_bias), input arange(72).reshape(3, 6, 4),
    # 3 units; Keras's last outputs are constant along each row.
    H = 3
    kernel, recurrent_kernel = np.full((4, 4 * H), 0.01), np.full((H, 4 * H), 0.02)
    bias = np.full(4 * H, 0.03)
    bias[H:2 * H] = 1.0
    hs, _ = lstm_forward(np.arange(72).reshape(3, 6, 4), kernel, recurrent_kernel, bias)
    expected = np.repeat(np.array([0.6288687, 0.86899155, 0.9460773])[:, None], H, axis=1)
    np.testing.assert_allclose(hs[:, -1], expected, atol=1e-6)
    # The numbers pin the layout: the 1.0 in another gate block, or in none, misses them by far
    # more than the tolerance (the gates are near saturation, so by 8e-4 at least).
    for block in (0, 2, 3, None):
        moved = np.full(4 * H, 0.03)
        if block is not None:
            moved[block * H:(block + 1) * H] = 1.0
        other, _ = lstm_forward(np.arange(72).reshape(3, 6, 4), kernel, recurrent_kernel, moved)
        assert np.abs(other[:, -1] - expected).max() > 1e-4


def test_gate_blocks_are_i_f_c_o():
    # With zero weights z = bias, so each block of the bias drives one gate alone.
    H = 2
    zi, zf, zc, zo = 0.3, -1.2, 0.8, 2.0
    bias = np.repeat([zi, zf, zc, zo], H)
    c_prev, h_prev = np.array([[0.5, -0.7]]), np.array([[0.1, 0.2]])
    h, c, _ = lstm_step_forward(np.ones((1, 3)), h_prev, c_prev, np.zeros((3, 4 * H)),
                                np.zeros((H, 4 * H)), bias)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    expected_c = sig(zf) * c_prev + sig(zi) * np.tanh(zc)
    np.testing.assert_allclose(c, expected_c, rtol=1e-14)
    np.testing.assert_allclose(h, sig(zo) * np.tanh(expected_c), rtol=1e-14)


def test_float32_in_float32_out_and_no_time_steps_is_an_error():
    rng = np.random.default_rng(6)
    weights = [w.astype(np.float32) for w in random_weights(rng)]
    x = rng.normal(size=(B, T, E)).astype(np.float32)
    hs, cache = lstm_forward(x, *weights)
    grads = lstm_backward(np.ones_like(hs), cache)
    assert hs.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    with pytest.raises(ValueError):
        lstm_forward(x[:, :0], *weights)
