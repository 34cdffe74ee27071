"""Loss and optimizers: BCE from logits, Adam as Keras runs it, SGD, clipping by global norm, the schedule."""
import math
import warnings

import numpy as np
import pytest

from numpy_lstm import SGD, Adam, binary_crossentropy, check_gradient, clip_by_global_norm
from numpy_lstm.config import recipe_config
from numpy_lstm.optimizers import learning_rate


def test_bce_matches_definition_and_gradient():
    rng = np.random.default_rng(0)
    z = rng.normal(size=7) * 3
    y = (rng.random(7) > 0.5).astype(float)
    loss, dz = binary_crossentropy(z, y)
    p = 1 / (1 + np.exp(-z))
    assert math.isclose(loss, np.mean(-y * np.log(p) - (1 - y) * np.log(1 - p)), rel_tol=1e-12)
    f = lambda: np.array(binary_crossentropy(z, y)[0])  # noqa: E731
    assert check_gradient(f, z, np.array(1.0), dz) < 1e-6


def test_bce_saturated_logits_are_finite():
    z = np.array([1000.0, -1000.0, 1000.0, -1000.0], np.float32)
    y = np.array([1, 0, 0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, dz = binary_crossentropy(z, y)
    assert math.isclose(loss, 500.0, rel_tol=1e-6)  # mean of 0, 0, 1000, 1000
    np.testing.assert_allclose(dz, [0, 0, 0.25, -0.25])


def test_adam_matches_scalar_rederivation():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 2))
    grads = [rng.normal(size=(3, 2)) for _ in range(5)]
    opt = Adam(learning_rate=0.01)
    w_ours = w.copy()
    for g in grads:
        opt.step([w_ours], [g])
    # The same five steps, one scalar at a time, written from Keras's update rule.
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    for idx in np.ndindex(w.shape):
        x, m, v = w[idx], 0.0, 0.0
        for t, g in enumerate(grads, start=1):
            m = b1 * m + (1 - b1) * g[idx]
            v = b2 * v + (1 - b2) * g[idx] ** 2
            x -= lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (math.sqrt(v) + eps)
        assert math.isclose(w_ours[idx], x, rel_tol=1e-12)
    assert opt.iterations == 5


def test_adam_state_round_trip_resumes_exactly():
    rng = np.random.default_rng(2)
    grads = [rng.normal(size=4).astype(np.float32) for _ in range(6)]
    w_a = np.ones(4, np.float32)
    a = Adam()
    for g in grads:
        a.step([w_a], [g])
    w_b = np.ones(4, np.float32)
    b = Adam()
    for g in grads[:3]:
        b.step([w_b], [g])
    c = Adam()
    c.load_state(b.state())
    for g in grads[3:]:
        c.step([w_b], [g])
    np.testing.assert_array_equal(w_a, w_b)
    assert w_b.dtype == np.float32


def test_sgd_step():
    w = np.array([1.0, 2.0])
    SGD(0.5).step([w], [np.array([2.0, -2.0])])
    np.testing.assert_array_equal(w, [0.0, 3.0])


def test_clip_by_global_norm():
    g = [np.array([3.0]), np.array([4.0])]
    clipped, norm = clip_by_global_norm(g, 1.0)
    assert norm == 5.0
    np.testing.assert_allclose(np.concatenate(clipped), [0.6, 0.8])
    same, _ = clip_by_global_norm(g, 10.0)
    np.testing.assert_array_equal(np.concatenate(same), [3.0, 4.0])


def test_linear_schedule_warms_up_then_decays_to_zero():
    config = recipe_config("tutorial", lr=0.01, epochs=3, lr_schedule="linear")
    steps = 10
    rates = [learning_rate(config, e, s, steps) for e in (1, 2, 3) for s in range(1, steps + 1)]
    assert rates[0] == pytest.approx(0.001) and rates[9] == pytest.approx(0.01)
    assert all(a > b for a, b in zip(rates[9:], rates[10:]))
    assert rates[-1] == pytest.approx(0.01 / 21) and rates[-1] > 0
    assert learning_rate(recipe_config("tutorial", lr=0.01), 2, 5, steps) == 0.01
