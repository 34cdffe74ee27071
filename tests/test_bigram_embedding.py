"""The hashed bigram table of the embedding (--bigram-buckets, a prototype for issue 35):
central-difference gradients in float64, of the layer and of the whole model, and its plumbing."""
import numpy as np
import pytest

from numpy_lstm import SentimentLSTM, check_gradient
from numpy_lstm.config import recipe_config
from numpy_lstm.layers import Embedding, bigram_buckets
from numpy_lstm.memory import weight_count

TOL = 1e-6


def bigram_layer(rng, V=7, E=3, K=5):
    layer = Embedding(V, E, rng, dtype=np.float64, bigrams=K)
    layer.bigram_table[:] = rng.normal(size=layer.bigram_table.shape)   # not the zeros it starts at
    return layer


def test_buckets_fixed_in_range_and_first_word_reads_padding():
    ids = np.array([[0, 0, 3, 1, 6], [2, 5, 5, 1, 4]])
    b = bigram_buckets(ids, 1 << 18)
    assert b.shape == ids.shape and b.dtype == np.int64 and 0 <= b.min() and b.max() < 1 << 18
    # The same pair, the same bucket wherever it is; a first column's previous word is 0
    np.testing.assert_array_equal(b, bigram_buckets(ids, 1 << 18))
    assert b[0, 2] == bigram_buckets(np.array([[3]]), 1 << 18)[0, 0]   # (0, 3) both
    repeated = bigram_buckets(np.array([[3, 1, 3, 1]]), 1 << 18)
    assert repeated[0, 1] == repeated[0, 3] and repeated[0, 0] != repeated[0, 2]   # (3, 1) twice; (0, 3) vs (1, 3)
    np.testing.assert_array_equal(bigram_buckets(ids[:, 2:], 1 << 18)[:, 1:], b[:, 3:])


@pytest.mark.parametrize("time_major", [False, True])
def test_layer_gradients_with_collisions_and_padding(time_major):
    rng = np.random.default_rng(0)
    layer = bigram_layer(rng)
    # K = 5 buckets for these pairs: collisions for sure; repeated pairs; padding steps
    ids = np.array([[0, 0, 3, 1, 3, 1], [2, 5, 5, 5, 1, 4], [0, 0, 0, 0, 6, 6]])
    out, cache = layer.forward(ids)
    dout = rng.normal(size=out.shape)
    if time_major:      # the LSTM engine's dx layout: (T, E, B) in memory
        dout = np.ascontiguousarray(dout.transpose(1, 2, 0)).transpose(2, 0, 1)
        assert dout.strides[0] < dout.strides[1]
    dtable, dbigrams = layer.backward(dout, cache)
    f = lambda: layer.forward(ids)[0]   # noqa: E731
    assert check_gradient(f, layer.embeddings, dout, dtable) < TOL
    assert check_gradient(f, layer.bigram_table, dout, dbigrams) < TOL


def test_padding_steps_get_no_bigram_term():
    rng = np.random.default_rng(1)
    layer = bigram_layer(rng)
    ids = np.array([[0, 0, 3, 1], [0, 2, 2, 4]])
    out, _ = layer.forward(ids)
    np.testing.assert_array_equal(out[ids == 0], layer.embeddings[np.zeros((ids == 0).sum(), int)])
    b = bigram_buckets(ids, 5)
    np.testing.assert_allclose(out[1, 2], layer.embeddings[2] + layer.bigram_table[b[1, 2]])


def test_off_is_the_plain_embedding():
    a = Embedding(7, 3, np.random.default_rng(2))
    b = Embedding(7, 3, np.random.default_rng(2), bigrams=0)
    assert len(b.weights) == 1 and np.array_equal(a.embeddings, b.embeddings)
    model = SentimentLSTM(vocab_size=7, embed_dim=3, units=4, seed=0)
    assert "bigram_buckets" not in model.config and len(model.weights) == 6


def small_model(K=11, seed=0):
    model = SentimentLSTM(vocab_size=7, embed_dim=3, units=4, mask_zero=True, bidirectional=True, pooling="max",
                          dtype="float64", seed=seed, bigram_buckets=K)
    rng = np.random.default_rng(seed + 100)
    model.embedding.bigram_table[:] = rng.normal(scale=0.5, size=model.embedding.bigram_table.shape)
    model.dense.bias[:] = rng.normal(size=1)
    return model


@pytest.mark.parametrize("adversarial", [0.0, 0.3])
def test_model_gradients_every_weight(adversarial):
    model = small_model()
    assert model.weight_names[1] == "embedding/bigrams"
    ids = np.array([[0, 0, 3, 1, 6], [2, 5, 5, 1, 4], [0, 0, 0, 3, 2]])
    labels = np.array([1, 0, 1])
    # A fixed adversarial move (what the loss holds constant), as test_adversarial does
    move = None
    if adversarial:
        move = np.random.default_rng(5).normal(scale=adversarial, size=ids.shape + (3,))
    grads = model.training_pass(ids, labels, move=move)[2]
    f = lambda: np.array(model.training_pass(ids, labels, move=move)[1])   # noqa: E731
    errors = {name: check_gradient(f, w, np.array(1.0), g)
              for name, w, g in zip(model.weight_names, model.weights, grads)}
    assert max(errors.values()) < TOL, errors


def test_save_load_keeps_the_table(tmp_path):
    model = small_model()
    model.save(tmp_path / "m.npz")
    loaded = SentimentLSTM.load(tmp_path / "m.npz")
    assert loaded.config["bigram_buckets"] == 11
    ids = np.array([[0, 3, 1, 6], [2, 5, 5, 1]])
    np.testing.assert_array_equal(loaded.predict(ids), model.predict(ids))


def test_setting_sizes_the_model_and_the_memory_estimate():
    off, on = recipe_config("full"), recipe_config("full", bigram_buckets=1 << 18)
    assert off.bigram_buckets == 0
    assert weight_count(on) - weight_count(off) == (1 << 18) * on.embed_dim
