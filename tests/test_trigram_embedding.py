"""Word triples hashed into the pair table (--hashed-trigrams, issue 35): their buckets, the
layer's and the model's gradients by central differences in float64, the reference path, the
model file, and the settings that refuse them."""
import json

import numpy as np
import pytest

from numpy_lstm import NumpyLSTMError, SentimentLSTM, check_gradient
from numpy_lstm.config import recipe_config
from numpy_lstm.layers import Embedding, bigram_buckets, trigram_buckets
from numpy_lstm.sparse import RowSparse

TOL = 1e-6
IDS = np.array([[0, 0, 3, 1, 3, 1], [2, 5, 5, 5, 1, 4], [0, 0, 0, 0, 6, 6]])


def trigram_layer(rng, V=7, E=3, K=5):
    layer = Embedding(V, E, rng, dtype=np.float64, bigrams=K, trigrams=True)
    layer.bigram_table[:] = rng.normal(size=layer.bigram_table.shape)   # not the zeros it starts at
    return layer


def test_buckets_fixed_in_range_and_the_words_before_a_row_are_padding():
    K = 1 << 18
    b = trigram_buckets(IDS, K)
    assert b.shape == IDS.shape and b.dtype == np.int64 and 0 <= b.min() and b.max() < K
    np.testing.assert_array_equal(b, trigram_buckets(IDS.copy(), K))
    # (3, 1, 3) at columns 2-4 of row 0 and again, shifted, nowhere else; (1, 3, 1) twice
    repeated = trigram_buckets(np.array([[3, 1, 3, 1, 3]]), K)[0]
    assert repeated[2] == repeated[4] and repeated[3] != repeated[2]
    # A row's first two words read zeros before them: (0, 0, 3) and (0, 3, 1)
    np.testing.assert_array_equal(trigram_buckets(np.array([[0, 0, 3, 1]]), K)[0, 2:],
                                  trigram_buckets(np.array([[3, 1]]), K)[0])
    # A triple's bucket depends on all three words, and is not its pair's
    one, two = trigram_buckets(np.array([[4, 3, 1], [5, 3, 1]]), K)[:, 2]
    assert one != two
    assert not np.array_equal(b, bigram_buckets(IDS, K))


def test_each_word_adds_its_pair_and_its_triple():
    rng = np.random.default_rng(1)
    layer = trigram_layer(rng)
    out, _ = layer.forward(IDS)
    pairs, triples = bigram_buckets(IDS, 5), trigram_buckets(IDS, 5)
    expected = layer.embeddings[IDS] + np.where((IDS != 0)[..., None],
                                                layer.bigram_table[pairs] + layer.bigram_table[triples], 0.0)
    np.testing.assert_allclose(out, expected, rtol=1e-15, atol=1e-15)
    np.testing.assert_array_equal(out[IDS == 0], np.broadcast_to(layer.embeddings[0], out[IDS == 0].shape))


@pytest.mark.parametrize("time_major", [False, True])
def test_layer_gradients_with_collisions_and_padding(time_major):
    rng = np.random.default_rng(0)
    layer = trigram_layer(rng)          # 5 buckets for all pairs and triples: collisions for sure
    out, cache = layer.forward(IDS)
    dout = rng.normal(size=out.shape)
    if time_major:      # the LSTM engine's dx layout: (T, E, B) in memory
        dout = np.ascontiguousarray(dout.transpose(1, 2, 0)).transpose(2, 0, 1)
    dtable, dpairs = layer.backward(dout, cache)
    assert isinstance(dpairs, RowSparse)
    f = lambda: layer.forward(IDS)[0]   # noqa: E731
    assert check_gradient(f, layer.embeddings, dout, dtable) < TOL
    assert check_gradient(f, layer.bigram_table, dout, dpairs) < TOL
    # The row-sparse gradient is the plain scatter-add of each word's row into both its buckets
    dense = np.zeros(layer.bigram_table.shape)
    words = IDS != 0
    for buckets in (bigram_buckets(IDS, 5), trigram_buckets(IDS, 5)):
        np.add.at(dense, buckets[words], np.asarray(dout)[words])
    np.testing.assert_allclose(dpairs.toarray(), dense, rtol=1e-12, atol=1e-12)


def test_the_gradient_check_catches_a_gradient_missing_the_triples():
    rng = np.random.default_rng(2)
    layer = trigram_layer(rng, K=97)    # few collisions: the triples' rows are mostly their own
    out, cache = layer.forward(IDS)
    dout = rng.normal(size=out.shape)
    pairs_only = Embedding(7, 3, rng, dtype=np.float64, bigrams=97)
    pairs_only.bigram_table = layer.bigram_table
    _, wrong = pairs_only.backward(dout, cache)
    assert check_gradient(lambda: layer.forward(IDS)[0], layer.bigram_table, dout, wrong) > 1e-2


def small_model(trigrams=True, seed=0, **settings):
    model = SentimentLSTM(vocab_size=7, embed_dim=3, units=4, dtype="float64", seed=seed, bigram_buckets=11,
                          trigrams=trigrams, **settings)
    rng = np.random.default_rng(seed + 100)
    model.embedding.bigram_table[:] = rng.normal(scale=0.5, size=model.embedding.bigram_table.shape)
    model.dense.bias[:] = rng.normal(size=1)
    return model


@pytest.mark.parametrize("implementation", ["fast", "reference"])
def test_model_gradients_every_weight(implementation):
    model = small_model(mask_zero=True, bidirectional=True, pooling="max", implementation=implementation)
    ids = np.array([[0, 0, 3, 1, 6], [2, 5, 5, 1, 4], [0, 0, 0, 3, 2]])
    labels = np.array([1, 0, 1])
    grads = model.training_pass(ids, labels)[2]
    f = lambda: np.array(model.training_pass(ids, labels)[1])   # noqa: E731
    errors = {name: check_gradient(f, w, np.array(1.0), g)
              for name, w, g in zip(model.weight_names, model.weights, grads)}
    assert max(errors.values()) < TOL, errors


def test_the_reference_implementation_agrees_with_the_engine():
    fast, ref = (small_model(mask_zero=True, bidirectional=True, pooling="max", implementation=impl)
                 for impl in ("fast", "reference"))
    rng = np.random.default_rng(9)
    ids = rng.integers(1, 7, (9, 8))
    ids[:4, :3] = 0
    labels = rng.integers(0, 2, 9)
    (loss_f, grads_f), (loss_r, grads_r) = fast.gradients(ids, labels), ref.gradients(ids, labels)
    np.testing.assert_allclose(loss_f, loss_r, rtol=1e-10, atol=1e-12)
    for name, a, b in zip(ref.weight_names, grads_f, grads_r):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12, err_msg=name)


def test_save_load_keeps_the_setting_and_off_writes_no_key(tmp_path):
    model = small_model()
    model.save(tmp_path / "m.npz")
    loaded = SentimentLSTM.load(tmp_path / "m.npz")
    assert loaded.config["trigrams"] is True and loaded.embedding.trigrams
    ids = np.array([[0, 3, 1, 6], [2, 5, 5, 1]])
    np.testing.assert_array_equal(loaded.predict(ids), model.predict(ids))
    assert not np.array_equal(small_model(trigrams=False).predict(ids), model.predict(ids))
    small_model(trigrams=False).save(tmp_path / "pairs.npz")
    with np.load(tmp_path / "pairs.npz") as data:
        assert "trigrams" not in json.loads(str(data["config"]))


def test_refused_without_a_pair_table(tmp_path):
    with pytest.raises(NumpyLSTMError, match="bigram_buckets"):
        SentimentLSTM(vocab_size=7, embed_dim=3, units=4, trigrams=True)
    with pytest.raises(NumpyLSTMError, match="--bigram-buckets"):
        recipe_config("tutorial", hashed_trigrams=True).validate()
    assert recipe_config("full", hashed_trigrams=True).validate().hashed_trigrams
    # A model file whose config asks for triples without a table, or says "yes" for true: one line
    small_model().save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as data:
        arrays = {name: data[name] for name in data.files}
    config = json.loads(str(arrays["config"]))
    for bad, message in (({"trigrams": "yes"}, "true or false"), ({"bigram_buckets": 0}, "pair table")):
        arrays["config"] = np.array(json.dumps({**config, **bad}))
        np.savez(tmp_path / "bad.npz", **arrays)
        with pytest.raises(NumpyLSTMError, match=message):
            SentimentLSTM.load(tmp_path / "bad.npz")
