"""Pieces of the training loop: batching, the learning-rate schedule, NB features, OOV handling."""
import math

import numpy as np
import pytest

from numpy_lstm import NumpyLSTMError, Vocabulary
from numpy_lstm.train import (batch_order, encode_cleaned, init_embedding, learning_rate, log_count_ratio,
                              recipe_config, scaled_word_vectors)


def test_batch_order_covers_every_row_once_and_buckets_by_length():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 500, size=1000)
    for bucket in (False, True):
        batches = batch_order(lengths, 64, np.random.default_rng(1), bucket)
        assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
        assert sorted(len(b) for b in batches)[1:] == [64] * (len(batches) - 1)  # one short batch
    plain = batch_order(lengths, 64, np.random.default_rng(1), False)
    bucketed = batch_order(lengths, 64, np.random.default_rng(1), True)
    longest = lambda batches: sum(lengths[b].max() for b in batches)  # noqa: E731  steps run under a mask
    assert longest(bucketed) < 0.7 * longest(plain)


def test_batch_order_is_seeded():
    lengths = np.arange(100)
    a = batch_order(lengths, 8, np.random.default_rng(3), True)
    b = batch_order(lengths, 8, np.random.default_rng(3), True)
    c = batch_order(lengths, 8, np.random.default_rng(4), True)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_linear_schedule_warms_up_then_decays_to_zero():
    config = recipe_config("tutorial", lr=0.01, epochs=3, lr_schedule="linear")
    steps = 10
    rates = [learning_rate(config, e, s, steps) for e in (1, 2, 3) for s in range(1, steps + 1)]
    assert rates[0] == pytest.approx(0.001) and rates[9] == pytest.approx(0.01)
    assert all(a > b for a, b in zip(rates[9:], rates[10:]))
    assert rates[-1] == pytest.approx(0.01 / 21) and rates[-1] > 0
    assert learning_rate(recipe_config("tutorial", lr=0.01), 2, 5, steps) == 0.01


def test_log_count_ratio_by_hand():
    x = np.array([[0, 2, 2, 3], [0, 0, 2, 4], [0, 0, 3, 4]])
    y = np.array([1, 1, 0])
    r = log_count_ratio(x, y, vocab_size=5)
    # positive reviews contain: 2 twice (once each), 3 once, 4 once; negative: 3 once, 4 once.
    p, q = np.array([3, 2, 2]), np.array([1, 2, 2])  # alpha = 1 added; ids 0 and 1 left out
    expected = np.log((p / p.sum()) / (q / q.sum()))
    np.testing.assert_allclose(r[2:], expected)
    assert r[0] == 0 and r[1] == 0 and r[2] > 0 and math.isclose(r[3], r[4])


def test_oov_skip_drops_unknown_words():
    vocab = Vocabulary(5).fit(["good good bad fine"])
    keep = encode_cleaned(["good unknown bad"], vocab, recipe_config("tutorial", maxlen=4))
    skip = encode_cleaned(["good unknown bad"], vocab, recipe_config("tutorial", maxlen=4, oov="skip"))
    good, bad = vocab.word_index["good"], vocab.word_index["bad"]
    np.testing.assert_array_equal(keep[0], [0, good, 1, bad])
    np.testing.assert_array_equal(skip[0], [0, 0, good, bad])


@pytest.mark.parametrize("setting", [{"oov": "drop"}, {"lr_schedule": "cosine"}, {"pooling": "sum"},
                                     {"val_split": 1.0}, {"num_layers": 0}, {"clipnorm": 0.0}])
def test_bad_settings_are_refused(setting):
    with pytest.raises(NumpyLSTMError):
        recipe_config("tutorial", **setting)


def test_unknown_recipe():
    with pytest.raises(NumpyLSTMError, match="unknown recipe"):
        recipe_config("magic")


def test_embedding_init_nb_column_then_word_vectors():
    rng = np.random.default_rng(0)
    x = np.where(rng.random((40, 12)) < 0.2, 0, rng.integers(1, 30, (40, 12))).astype(np.int32)
    y = rng.integers(0, 2, 40)
    config = recipe_config("tutorial", vocab_size=30, embed_dim=6, nb_init=2.0, ppmi_init=0.3)
    vectors = scaled_word_vectors(config, x)
    known = vectors.any(axis=1)
    assert vectors.shape == (30, 5) and known[2:].any() and not known[:2].any()
    assert math.isclose(vectors[known].std(), 0.3, rel_tol=1e-9)
    start = rng.uniform(-0.05, 0.05, (30, 6))
    emb = start.copy()
    init_embedding(emb, config, x, y, vectors)
    np.testing.assert_array_equal(emb[:, 0], 2.0 * log_count_ratio(x, y, 30))
    np.testing.assert_array_equal(emb[known, 1:], vectors[known])
    np.testing.assert_array_equal(emb[~known, 1:], start[~known, 1:])   # padding, OOV, unseen ids
