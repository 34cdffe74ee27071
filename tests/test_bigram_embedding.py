"""The hashed bigram table of the embedding (--bigram-buckets, issue 35):
central-difference gradients in float64, of the layer and of the whole model, its row-sparse
gradient and lazy Adam, and its plumbing."""
import json

import numpy as np
import pytest

from numpy_lstm import SGD, Adam, NumpyLSTMError, SentimentLSTM, check_gradient, clip_by_global_norm
from numpy_lstm.config import recipe_config
from numpy_lstm.layers import Embedding, bigram_buckets
from numpy_lstm.memory import weight_count
from numpy_lstm.sparse import RowSparse

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


@pytest.mark.parametrize("settings", [{}, {"mask_zero": True, "bidirectional": True, "pooling": "max"}])
def test_the_reference_implementation_agrees_with_the_engine(settings):
    """--implementation reference (numpy_lstm/reference.py's LSTM) and the fast engine, float64,
    one model with a pair table twice: the same loss, predictions and every gradient, the
    table's included; and every gradient of the reference path against central differences."""
    fast, ref = (SentimentLSTM(vocab_size=20, embed_dim=4, units=3, dtype="float64", seed=0, bigram_buckets=13,
                               implementation=impl, **settings) for impl in ("fast", "reference"))
    rng = np.random.default_rng(9)
    for a, b in zip(fast.weights, ref.weights):
        a[...] = b[...] = rng.normal(scale=0.5, size=a.shape)     # the table too: it starts at zeros
    ids = rng.integers(1, 20, (9, 7))
    ids[:4, :3] = 0                                                # pre-padding
    labels = rng.integers(0, 2, 9)
    (loss_f, grads_f), (loss_r, grads_r) = fast.gradients(ids, labels), ref.gradients(ids, labels)
    np.testing.assert_allclose(loss_f, loss_r, rtol=1e-10, atol=1e-12)
    for name, a, b in zip(ref.weight_names, grads_f, grads_r):
        assert np.abs(np.asarray(b)).max() > 0, name
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(fast.predict(ids), ref.predict(ids), rtol=1e-10, atol=1e-12)
    assert isinstance(grads_r[1], RowSparse)
    f = lambda: np.array(ref.gradients(ids, labels)[0])   # noqa: E731
    errors = {name: check_gradient(f, w, np.array(1.0), g)
              for name, w, g in zip(ref.weight_names, ref.weights, grads_r)}
    assert max(errors.values()) < TOL, errors


def test_save_load_keeps_the_table(tmp_path):
    model = small_model()
    model.save(tmp_path / "m.npz")
    loaded = SentimentLSTM.load(tmp_path / "m.npz")
    assert loaded.config["bigram_buckets"] == 11
    np.testing.assert_array_equal(loaded.embedding.bigram_table, model.embedding.bigram_table)
    ids = np.array([[0, 3, 1, 6], [2, 5, 5, 1]])
    np.testing.assert_array_equal(loaded.predict(ids), model.predict(ids))
    # A file whose config has the table but not its array, or another number of rows: one line
    with np.load(tmp_path / "m.npz") as data:
        arrays = {name: data[name] for name in data.files}
    table = arrays.pop("embedding/bigrams")
    np.savez(tmp_path / "none.npz", **arrays)
    np.savez(tmp_path / "short.npz", **arrays, **{"embedding/bigrams": table[:5]})
    for name in ("none.npz", "short.npz"):
        with pytest.raises(NumpyLSTMError, match="embedding/bigrams"):
            SentimentLSTM.load(tmp_path / name)


def test_off_writes_the_model_file_it_always_wrote(tmp_path):
    """bigram_buckets 0 (the default, and every recipe but full): the config keys and the arrays of the
    file are those of a version without the setting, so that such a version still reads it."""
    SentimentLSTM(vocab_size=7, embed_dim=3, units=4, seed=0).save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as data:
        assert sorted(data.files) == ["config", "dense/bias", "dense/kernel", "embedding/embeddings",
                                      "lstm/bias", "lstm/kernel", "lstm/recurrent_kernel"]
        config = json.loads(str(data["config"]))
    assert list(config) == ["vocab_size", "embed_dim", "units", "mask_zero", "dropout", "pooling", "num_layers",
                            "bidirectional", "dtype", "recurrent_dropout", "word_dropout", "implementation"]


def test_setting_sizes_the_model_and_the_memory_estimate():
    off, on = recipe_config("full", bigram_buckets=0), recipe_config("full")
    assert on.bigram_buckets == 1 << 18      # full reads word pairs (docs/experiments.md, section 8)
    assert weight_count(on) - weight_count(off) == (1 << 18) * on.embed_dim


def dense_bigram_gradient(ids, dout, K):
    """The bigram table's gradient the plain way: every non-padding step adds its dout row to its bucket."""
    dense = np.zeros((K, dout.shape[2]))
    words = ids != 0
    np.add.at(dense, bigram_buckets(ids, K)[words], dout[words])
    return dense


@pytest.mark.parametrize("time_major", [False, True])
def test_sparse_gradient_is_the_dense_one_on_the_rows_touched(time_major):
    rng = np.random.default_rng(3)
    K = 5
    layer = bigram_layer(rng, K=K)
    # collisions (7 distinct pairs into 5 buckets), repeated pairs, padding, one bucket no step reads
    ids = np.array([[0, 0, 3, 1, 3, 1], [2, 5, 5, 5, 1, 4], [0, 0, 0, 0, 6, 6]])
    out, cache = layer.forward(ids)
    dout = rng.normal(size=out.shape)
    if time_major:
        dout = np.ascontiguousarray(dout.transpose(1, 2, 0)).transpose(2, 0, 1)
    _, dbigrams = layer.backward(dout, cache)
    assert isinstance(dbigrams, RowSparse) and dbigrams.shape == (K, 3)
    touched = np.unique(bigram_buckets(ids, K)[ids != 0])
    np.testing.assert_array_equal(dbigrams.rows, touched)
    assert dbigrams.values.shape == (len(touched), 3) and dbigrams.values.dtype == np.float64
    dense = dense_bigram_gradient(ids, np.asarray(dout), K)
    np.testing.assert_allclose(dbigrams.values, dense[touched], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dbigrams.toarray(), dense, rtol=1e-12, atol=1e-12)
    assert not np.any(dense[np.setdiff1d(np.arange(K), touched)])


def test_sparse_gradient_at_scale_reads_only_the_batch():
    rng = np.random.default_rng(4)
    K = 1 << 18
    layer = Embedding(50, 4, rng, dtype=np.float64, bigrams=K)
    ids = rng.integers(0, 50, size=(8, 30))
    ids[:, :5] = 0
    out, cache = layer.forward(ids)
    dout = rng.normal(size=out.shape)
    _, dbigrams = layer.backward(dout, cache)
    assert len(dbigrams.rows) <= (ids != 0).sum()
    dense = dense_bigram_gradient(ids, dout, K)
    np.testing.assert_allclose(dbigrams.values, dense[dbigrams.rows], rtol=1e-12, atol=1e-12)
    assert np.count_nonzero(np.abs(dense).sum(axis=1)) == len(dbigrams.rows)


def sparse_case(rng, K=9, E=3, rows=(1, 4, 5, 8)):
    rows = np.array(rows)
    values = rng.normal(size=(len(rows), E))
    return RowSparse(rows, values, (K, E)), rows


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lazy_adam_step_one_is_dense_adam_on_the_rows_touched(dtype):
    rng = np.random.default_rng(6)
    g, rows = sparse_case(rng)
    g.values = g.values.astype(dtype)
    other = rng.normal(size=(4, 2)).astype(dtype)       # a dense weight beside it
    other_g = rng.normal(size=(4, 2)).astype(dtype)
    w0 = rng.normal(size=g.shape).astype(dtype)
    lazy_w, dense_w = [w0.copy(), other.copy()], [w0.copy(), other.copy()]
    Adam(learning_rate=0.01).step(lazy_w, [g, other_g])
    Adam(learning_rate=0.01).step(dense_w, [g.toarray(), other_g])
    np.testing.assert_array_equal(lazy_w[0][rows], dense_w[0][rows])
    untouched = np.setdiff1d(np.arange(g.shape[0]), rows)
    np.testing.assert_array_equal(lazy_w[0][untouched], w0[untouched])
    np.testing.assert_array_equal(lazy_w[1], dense_w[1])     # the dense weight: dense Adam, as before
    assert np.all(lazy_w[0][rows] != w0[rows])


def test_lazy_adam_leaves_the_moments_of_untouched_rows_as_they_are():
    rng = np.random.default_rng(7)
    first, rows1 = sparse_case(rng, rows=(1, 4, 5, 8))
    second, rows2 = sparse_case(rng, rows=(0, 4, 6))
    w = [rng.normal(size=first.shape)]
    opt = Adam(learning_rate=0.01)
    opt.step(w, [first])
    m1, v1, w1 = opt.m[0].copy(), opt.v[0].copy(), w[0].copy()
    opt.step(w, [second])
    kept = np.setdiff1d(np.arange(first.shape[0]), rows2)      # rows 1, 5, 8 (and never touched 2, 3, 7)
    np.testing.assert_array_equal(opt.m[0][kept], m1[kept])
    np.testing.assert_array_equal(opt.v[0][kept], v1[kept])
    np.testing.assert_array_equal(w[0][kept], w1[kept])
    # row 4, touched twice, as dense Adam's second step on that row
    b1, b2 = 0.9, 0.999
    g = second.values[1]
    np.testing.assert_allclose(opt.m[0][4], b1 * m1[4] + (1 - b1) * g)
    np.testing.assert_allclose(opt.v[0][4], b2 * v1[4] + (1 - b2) * g ** 2)
    assert opt.iterations == 2


def test_clipping_and_sgd_keep_it_row_sparse():
    rng = np.random.default_rng(8)
    g, rows = sparse_case(rng)
    dense_other = rng.normal(size=(3, 2))
    clipped, norm = clip_by_global_norm([g, dense_other], 0.5)
    expected, expected_norm = clip_by_global_norm([g.toarray(), dense_other], 0.5)
    assert isinstance(clipped[0], RowSparse) and norm == pytest.approx(expected_norm, rel=1e-12)
    np.testing.assert_allclose(clipped[0].toarray(), expected[0], rtol=1e-12)
    np.testing.assert_allclose(clipped[1], expected[1], rtol=1e-12)
    w = rng.normal(size=g.shape)
    sparse_w, dense_w = w.copy(), w.copy()
    SGD(0.1).step([sparse_w], [g])
    SGD(0.1).step([dense_w], [g.toarray()])
    np.testing.assert_allclose(sparse_w, dense_w, rtol=1e-12)


def test_a_training_run_step_forms_nothing_k_long():
    """A model's training pass returns the bigram gradient row-sparse; Adam's step then moves
    only those rows of the table."""
    model = small_model(K=1 << 16)
    ids = np.array([[0, 0, 3, 1, 6], [2, 5, 5, 1, 4]])
    grads = model.training_pass(ids, np.array([1, 0]))[2]
    assert isinstance(grads[1], RowSparse) and len(grads[1].rows) <= 8
    assert all(isinstance(g, np.ndarray) for i, g in enumerate(grads) if i != 1)
    before = model.embedding.bigram_table.copy()
    Adam().step(model.weights, grads)
    moved = np.flatnonzero(np.any(model.embedding.bigram_table != before, axis=1))
    np.testing.assert_array_equal(moved, grads[1].rows)
