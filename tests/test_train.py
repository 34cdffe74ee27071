"""Pieces of the training loop: batching, OOV handling."""

import numpy as np

from numpy_lstm import Vocabulary
from numpy_lstm.config import recipe_config
from numpy_lstm.prepare import batch_order, encode_cleaned


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


def test_oov_skip_drops_unknown_words():
    vocab = Vocabulary(5).fit(["good good bad fine"])
    keep = encode_cleaned(["good unknown bad"], vocab, recipe_config("tutorial", maxlen=4))
    skip = encode_cleaned(["good unknown bad"], vocab, recipe_config("tutorial", maxlen=4, oov="skip"))
    good, bad = vocab.word_index["good"], vocab.word_index["bad"]
    np.testing.assert_array_equal(keep[0], [0, good, 1, bad])
    np.testing.assert_array_equal(skip[0], [0, 0, good, bad])
