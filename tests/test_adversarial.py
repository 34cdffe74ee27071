"""Adversarial training (`--adversarial EPS`): the move of the embedded reviews, the gradients of
the loss at x and at x + r (r held constant) checked by central differences in float64, in the
reference LSTM and in the engine, and the setting on the command line."""
import json

import numpy as np
import pytest
from test_cli import TINY, run_cli, write_tree

from numpy_lstm import SentimentLSTM, binary_crossentropy, check_gradient
from numpy_lstm.model import adversarial_move

IDS = np.array([[0, 0, 3, 1, 6], [2, 5, 5, 1, 4], [0, 0, 0, 0, 2]])
LABELS = np.array([1, 0, 1])


def small_model(implementation="fast", mask_zero=True, bidirectional=False, pooling="last"):
    model = SentimentLSTM(vocab_size=7, embed_dim=3, units=4, mask_zero=mask_zero, dtype="float64", seed=0,
                          implementation=implementation, bidirectional=bidirectional, pooling=pooling)
    rng = np.random.default_rng(100)
    for w in model.weights:
        if w.ndim == 1:                                   # biases: away from Keras's zeros and ones
            w[:] = rng.normal(size=w.shape)
    return model


def clean_gradient_at_x(model):
    """dx (B, T, E): the gradient of the loss at the embedded ids, x."""
    logits, (emb_cache, cache) = model.forward(IDS)
    _, dlogits = binary_crossentropy(logits, LABELS)
    return model.backward_vectors(dlogits, cache)[0]


def test_the_move_has_norm_epsilon_per_review_along_the_gradient():
    dx = np.random.default_rng(0).normal(size=(4, 6, 3))
    dx[2] = 0.0                                           # a review the loss does not see
    r = adversarial_move(dx, 0.5)
    norms = np.sqrt((r ** 2).sum(axis=(1, 2)))
    np.testing.assert_allclose(norms[[0, 1, 3]], 0.5, rtol=1e-12)
    assert not r[2].any()
    for b in (0, 1, 3):                                   # the same direction: cosine 1
        cosine = np.sum(r[b] * dx[b]) / (np.linalg.norm(r[b]) * np.linalg.norm(dx[b]))
        assert cosine == pytest.approx(1.0, abs=1e-12)
    assert adversarial_move(dx.astype(np.float32), 0.5).dtype == np.float32


def test_the_move_raises_the_loss_as_its_first_order_term_says():
    """Loss(x + r) - loss(x) = epsilon * sum over reviews of ||g_b|| + O(epsilon^2), with g the
    gradient of the mean loss at x: the move is the steepest one of its size."""
    model = small_model()
    x = model.get_weights()[0][IDS]
    mask = IDS != 0
    dx = clean_gradient_at_x(model)
    loss = lambda v: binary_crossentropy(model.forward_vectors(v, mask)[0], LABELS)[0]  # noqa: E731
    for epsilon in (1e-3, 1e-4):
        rise = loss(x + adversarial_move(dx, epsilon)) - loss(x)
        first_order = epsilon * np.sqrt((dx ** 2).sum(axis=(1, 2))).sum()
        assert rise == pytest.approx(first_order, rel=50 * epsilon)
        random = np.random.default_rng(1).normal(size=dx.shape) * mask[:, :, None]
        assert loss(x + adversarial_move(random, epsilon)) - loss(x) < rise


@pytest.mark.parametrize("implementation", ["reference", "fast"])
@pytest.mark.parametrize("mask_zero, bidirectional, pooling", [(False, False, "last"), (True, False, "last"),
                                                               (True, True, "max")])
def test_gradients_of_the_adversarial_loss(implementation, mask_zero, bidirectional, pooling):
    """d/dw [BCE(x) + BCE(x + r)] with r fixed at its value, for every weight, the embedding's
    included: r is added to the looked-up vectors, so the embedding rows get both gradients."""
    model = small_model(implementation, mask_zero, bidirectional, pooling)
    move = adversarial_move(clean_gradient_at_x(model), 0.7)
    _, loss, grads = model.training_pass(IDS, LABELS, move=move)
    f = lambda: np.array(model.training_pass(IDS, LABELS, move=move)[1])  # noqa: E731
    errors = {name: check_gradient(f, w, np.array(1.0), g)
              for name, w, g in zip(model.weight_names, model.weights, grads)}
    assert max(errors.values()) < 1e-6, errors
    clean_loss, clean_grads = model.gradients(IDS, LABELS)
    assert loss > 2 * clean_loss                          # the loss at x + r is above the loss at x
    assert not np.allclose(grads[1], 2 * clean_grads[1])


def test_the_checker_sees_a_move_that_is_not_held_fixed():
    """Recomputing r inside the function differentiated is another function: its gradient is
    not the one training uses, and the checker says so. (The check above is not vacuous.)"""
    model = small_model("reference")
    _, _, grads = model.training_pass(IDS, LABELS, adversarial=0.7)
    f = lambda: np.array(model.training_pass(IDS, LABELS, adversarial=0.7)[1])  # noqa: E731
    held = lambda: np.array(model.training_pass(IDS, LABELS, move=move)[1])  # noqa: E731
    move = adversarial_move(clean_gradient_at_x(model), 0.7)
    w = model.weights[2]                                  # the recurrent kernel
    assert check_gradient(held, w, np.array(1.0), grads[2]) < 1e-6
    assert check_gradient(f, w, np.array(1.0), grads[2]) > 1e-4


def test_off_is_the_plain_pass_bit_for_bit():
    model = SentimentLSTM(vocab_size=50, embed_dim=8, units=6, mask_zero=True, seed=3)
    ids = np.random.default_rng(0).integers(0, 50, size=(16, 12))
    logits, cache = model.forward(ids)
    loss, dlogits = binary_crossentropy(logits, (ids[:, -1] % 2))
    plain = model.backward(dlogits, cache)
    got_logits, got_loss, got = model.training_pass(ids, ids[:, -1] % 2, adversarial=0.0)
    assert got_loss == loss and np.array_equal(got_logits, logits)
    assert all(np.array_equal(a, b) for a, b in zip(got, plain))


def test_the_command_line_trains_with_it_and_refuses_a_negative_epsilon(tmp_path):
    tree = write_tree(tmp_path / "imdb", per_class=20)
    out = tmp_path / "run"
    code, _, err = run_cli("train", "--data", tree, "--out", out, "--epochs", "2", "--adversarial", "1.5", *TINY)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["adversarial"] == 1.5
    code, _, err = run_cli("train", "--data", tree, "--out", tmp_path / "bad", "--adversarial", "-1", *TINY)
    assert code == 2 and "adversarial" in err and err.count("\n") == 1, err
