"""SentimentLSTM: whole-model gradients, Keras weight order, learning, save/load and its errors."""
import numpy as np
import pytest

from numpy_lstm import Adam, NumpyLSTMError, SentimentLSTM, check_gradient, sigmoid


def small_model(mask_zero=False, seed=0):
    model = SentimentLSTM(vocab_size=7, embed_dim=3, units=4, mask_zero=mask_zero,
                          dtype="float64", seed=seed)
    rng = np.random.default_rng(seed + 100)
    model.rnns[0].bias[:] = rng.normal(size=model.rnns[0].bias.shape)
    model.dense.bias[:] = rng.normal(size=1)
    return model


def model_gradient_errors(model, ids, labels, rng_state=None):
    """Relative error of every weight's gradient of the mean loss, {weight name: error}.

    With rng_state, dropout is active and draws the same masks on every evaluation.
    """
    def loss_and_grads():
        rng = None
        if rng_state is not None:
            rng = np.random.default_rng()
            rng.bit_generator.state = rng_state
        return model.gradients(ids, labels, rng=rng)

    _, grads = loss_and_grads()
    f = lambda: np.array(loss_and_grads()[0])  # noqa: E731
    return {name: check_gradient(f, w, np.array(1.0), g)
            for name, w, g in zip(model.weight_names, model.weights, grads)}


@pytest.mark.parametrize("mask_zero", [False, True])
def test_model_gradients_every_weight(mask_zero):
    model = small_model(mask_zero)
    ids = np.array([[0, 0, 3, 1, 6], [2, 5, 5, 1, 4], [0, 0, 0, 0, 2]])
    labels = np.array([1, 0, 1])
    errors = model_gradient_errors(model, ids, labels)
    assert max(errors.values()) < 1e-6, errors


def test_weights_in_keras_sequential_order():
    model = SentimentLSTM(seed=0)
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(500, 32), (32, 400), (100, 400), (400,), (100, 1), (1,)]
    assert all(w.dtype == np.float32 for w in model.get_weights())
    copies = model.get_weights()
    copies[0][:] = 0
    assert model.weights[0].any()  # get_weights returns copies


def test_same_seed_same_model_other_seed_other_model():
    a, b, c = SentimentLSTM(seed=3), SentimentLSTM(seed=3), SentimentLSTM(seed=4)
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.get_weights()[1], c.get_weights()[1])


def test_set_weights_gives_the_forward_pass_of_those_weights():
    model = SentimentLSTM(vocab_size=9, embed_dim=2, units=3, seed=0, dtype="float64")
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=w.shape) for w in model.get_weights()]
    model.set_weights(weights)
    emb, kernel, recurrent, bias, dense_kernel, dense_bias = weights
    ids = np.array([[1, 8, 3], [4, 4, 0]])
    h = np.zeros((2, 3))
    c = np.zeros((2, 3))
    for t in range(3):
        z = emb[ids[:, t]] @ kernel + h @ recurrent + bias
        i, f, g, o = np.split(z, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
    expected = sigmoid((h @ dense_kernel + dense_bias)[:, 0])
    np.testing.assert_allclose(model.predict(ids), expected, rtol=1e-12)


def test_set_weights_rejects_wrong_count_and_shape():
    model = SentimentLSTM(seed=0)
    weights = model.get_weights()
    with pytest.raises(NumpyLSTMError, match="expected 6"):
        model.set_weights(weights[:5])
    weights[1] = weights[1][:, :10]
    with pytest.raises(NumpyLSTMError, match="lstm/kernel"):
        model.set_weights(weights)


def test_bad_ids_and_sizes_are_clear_errors():
    model = SentimentLSTM(vocab_size=10, embed_dim=2, units=2, seed=0)
    with pytest.raises(NumpyLSTMError, match=r"\[0, 10\)"):
        model.predict(np.array([[1, 10]]))
    with pytest.raises(NumpyLSTMError, match="2-D integer"):
        model.predict(np.array([1.5, 2.0]))
    with pytest.raises(NumpyLSTMError, match="units"):
        SentimentLSTM(units=0)


def test_leading_padding_changes_nothing_with_mask_zero():
    model = SentimentLSTM(vocab_size=20, embed_dim=4, units=5, mask_zero=True, seed=0, dtype="float64")
    ids = np.array([[0, 3, 4, 5], [7, 8, 9, 1]])
    padded = np.concatenate([np.zeros((2, 6), int), ids], axis=1)
    np.testing.assert_allclose(model.predict(padded), model.predict(ids), rtol=1e-14)


def test_model_overfits_a_tiny_synthetic_task():
    # Label: does token 2 come before token 3? Order matters, so a bag of words cannot solve it.
    rng = np.random.default_rng(0)
    n, T = 64, 8
    ids = rng.integers(4, 10, size=(n, T))
    labels = rng.integers(0, 2, size=n)
    for row, y in zip(ids, labels):
        a, b = sorted(rng.choice(T, 2, replace=False))
        row[a], row[b] = (2, 3) if y else (3, 2)
    model = SentimentLSTM(vocab_size=10, embed_dim=8, units=16, seed=1)
    opt = Adam(learning_rate=0.01)
    first = None
    for step in range(300):
        loss, grads = model.gradients(ids, labels)
        first = loss if first is None else first
        opt.step(model.weights, grads)
    assert first > 0.6 and loss < 0.05
    assert np.mean((model.predict(ids) > 0.5) == labels) == 1.0


def test_save_load_predicts_identically(tmp_path):
    model = SentimentLSTM(vocab_size=30, embed_dim=4, units=6, mask_zero=True, seed=2)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = SentimentLSTM.load(path)
    assert loaded.config == model.config
    ids = np.random.default_rng(0).integers(0, 30, size=(5, 9))
    np.testing.assert_array_equal(loaded.predict(ids), model.predict(ids))
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary left behind


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(NumpyLSTMError, match="no model file"):
        SentimentLSTM.load(tmp_path / "missing.npz")
    good = tmp_path / "good.npz"
    SentimentLSTM(vocab_size=30, embed_dim=4, units=6, seed=0).save(good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(NumpyLSTMError, match="truncated or corrupt") as info:
        SentimentLSTM.load(truncated)
    assert "\n" not in str(info.value)
    # Weights that do not match the config they travel with.
    with np.load(good) as data:
        arrays = dict(data)
    arrays["lstm/kernel"] = arrays["lstm/kernel"][:, :8]
    mismatched = tmp_path / "mismatched.npz"
    np.savez(mismatched, **arrays)
    with pytest.raises(NumpyLSTMError, match="lstm/kernel"):
        SentimentLSTM.load(mismatched)


@pytest.mark.parametrize("kind", ["dropout", "recurrent_dropout", "word_dropout"])
def test_dropout_gradients_and_inference(kind):
    model = SentimentLSTM(vocab_size=7, embed_dim=3, units=4, dtype="float64", seed=0, **{kind: 0.4})
    ids = np.array([[1, 2, 3, 4], [5, 6, 1, 2]])
    labels = np.array([1, 0])
    # The same rng state each call gives the same dropout masks, so the loss is a fixed function.
    state = np.random.default_rng(7).bit_generator.state
    errors = model_gradient_errors(model, ids, labels, rng_state=state)
    assert max(errors.values()) < 1e-6, errors
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    loss, _ = model.gradients(ids, labels, rng=rng)
    assert loss != model.gradients(ids, labels)[0]  # dropout changed the training loss
    np.testing.assert_array_equal(model.predict(ids), model.predict(ids))  # and not inference


def test_dropout_masks_are_shared_along_their_axis():
    from numpy_lstm.layers import Dropout
    out, keep = Dropout(0.5, shared_axis=1).forward(np.ones((4, 6, 5)), np.random.default_rng(0))
    assert keep.shape == (4, 1, 5)
    assert (out == out[:, :1]).all() and set(np.unique(out)) == {0.0, 2.0}
    model = SentimentLSTM(vocab_size=7, embed_dim=3, units=4, word_dropout=0.5, seed=0)
    out, keep = model.word_dropout.forward(np.ones((4, 6, 3)), np.random.default_rng(0))
    assert keep.shape == (4, 6, 1)                   # whole tokens: all features of a step
    assert (out == out[:, :, :1]).all() and set(np.unique(out)) == {0.0, 2.0}


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_model_gradients_with_pooling(pooling):
    model = SentimentLSTM(vocab_size=7, embed_dim=3, units=4, mask_zero=True, pooling=pooling,
                          dtype="float64", seed=0)
    model.rnns[0].bias[:] = np.random.default_rng(1).normal(size=model.rnns[0].bias.shape)
    ids = np.array([[0, 0, 3, 1, 6], [2, 5, 5, 1, 4], [0, 0, 0, 0, 2]])
    labels = np.array([1, 0, 1])
    errors = model_gradient_errors(model, ids, labels)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("bidirectional, num_layers", [(False, 2), (True, 1), (True, 2)])
def test_stacked_and_bidirectional_models(bidirectional, num_layers, tmp_path):
    model = SentimentLSTM(vocab_size=7, embed_dim=3, units=2, mask_zero=True, pooling="mean",
                          num_layers=num_layers, bidirectional=bidirectional, dtype="float64", seed=0)
    rng = np.random.default_rng(2)
    for name, w in zip(model.weight_names, model.weights):
        if name.endswith("bias"):
            w[...] = rng.normal(size=w.shape)
    ids = np.array([[0, 0, 3, 1, 6], [2, 5, 5, 1, 4], [0, 0, 0, 0, 2]])
    labels = np.array([1, 0, 1])
    errors = model_gradient_errors(model, ids, labels)
    assert max(errors.values()) < 1e-6, errors
    assert len(model.weight_names) == 3 + 3 * num_layers * (2 if bidirectional else 1)
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(SentimentLSTM.load(tmp_path / "m.npz").predict(ids), model.predict(ids))
