"""The fast engine computes what reference.py computes: LSTM, Bidirectional and the whole model,
implementation="fast" against implementation="reference" in float64, outputs and every gradient."""
import json
import warnings

import numpy as np
import pytest

from numpy_lstm import LSTM, Bidirectional, NumpyLSTMError, SentimentLSTM, recipe_config, set_num_processes
from numpy_lstm.cli import build_parser, main
from numpy_lstm.engine import workers
from numpy_lstm.model import build_model

TOL = {"rtol": 1e-10, "atol": 1e-12}


@pytest.fixture
def processes():
    """set_num_processes for the test, back to the default after it."""
    yield set_num_processes
    set_num_processes(None)


def twins(make, seed=0):
    """The same layer or model twice, implementation "fast" and "reference", with equal weights."""
    fast, ref = make("fast"), make("reference")
    rng = np.random.default_rng(seed)
    for a, b in zip(fast.weights, ref.weights):
        a[...] = rng.normal(size=a.shape) * 0.5   # random biases too: zero ones hide gate bugs
        b[...] = a
    return fast, ref


def make_mask(kind, B, T, rng):
    if kind is None:
        return None
    if kind == "pre":                                 # pre-padding: some rows empty, some full
        lengths = rng.integers(0, T + 1, B)
        lengths[:2] = 0, T
        return np.arange(T)[None, :] >= (T - lengths)[:, None]
    mask = rng.random((B, T)) > 0.35                  # holes anywhere
    mask[0] = False                                   # a row with no step at all
    mask[1, -1] = False                               # one whose last step is masked
    return mask


def run(layer, x, mask, state, dout, dropout_seed):
    """Forward and backward once: [out, dx, dh0, dc0, dkernel, drecurrent_kernel, dbias]."""
    rng = None if dropout_seed is None else np.random.default_rng(dropout_seed)
    out, cache = layer.forward(x, mask, state, rng)
    dx, (dh0, dc0), grads = layer.backward(dout, cache)
    return [out, dx, dh0, dc0] + grads, cache


NAMES = ["out", "dx", "dh0", "dc0", "dkernel", "drecurrent_kernel", "dbias"]


def assert_same(got, expected):
    for name, a, b in zip(NAMES, got, expected):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, **TOL, err_msg=name)


@pytest.mark.parametrize("cores", [1, 2])
@pytest.mark.parametrize("mask_kind", [None, "pre", "holes"])
@pytest.mark.parametrize("initial_state", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.4])
def test_fast_lstm_equals_reference(processes, cores, mask_kind, initial_state, return_sequences,
                                    recurrent_dropout):
    B, T, E, H = 17, 6, 3, 4                 # 17 rows: two parts on 2 cores (at least 8 rows each)
    fast, ref = twins(lambda impl: LSTM(E, H, np.random.default_rng(1), return_sequences, np.float64,
                                        recurrent_dropout, implementation=impl))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(B, T, E))
    mask = make_mask(mask_kind, B, T, rng)
    state = (rng.normal(size=(B, H)), rng.normal(size=(B, H))) if initial_state else None
    dout = rng.normal(size=(B, T, H) if return_sequences else (B, H))
    dropout_seed = 5 if recurrent_dropout else None
    if recurrent_dropout:                    # both layers draw this keep mask: it must drop something
        keep = fast.recurrent_dropout.mask((B, H), np.float64, np.random.default_rng(dropout_seed))
        assert 0 < (keep == 0).sum() < keep.size
    processes(cores)
    got, cache = run(fast, x, mask, state, dout, dropout_seed)
    _, caches = cache
    assert len(caches) == cores                                   # the split happened
    assert isinstance(caches[-1], workers.RemoteCache) == (cores > 1)
    expected, _ = run(ref, x, mask, state, dout, dropout_seed)
    assert_same(got, expected)
    if mask_kind is not None:
        assert not got[1][0].any()               # row 0 has no step: no gradient reaches its x


@pytest.mark.parametrize("cores", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_gates_equal_reference_without_a_warning(processes, cores, dtype):
    """Inputs a thousand times too large drive every gate to 0 or 1, as in the reference, and
    without a warning: the textbook sigmoid 1 / (1 + exp(-z)) would overflow in exp where
    z < -88 (float32) or -709 (float64), unless the loop silenced it."""
    B, T, E, H = 17, 6, 3, 4
    fast, ref = twins(lambda impl: LSTM(E, H, np.random.default_rng(1), False, dtype,
                                        implementation=impl))
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(B, T, E)) * 1e3).astype(dtype)
    dout = rng.normal(size=(B, H)).astype(dtype)
    processes(cores)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, _ = run(fast, x, None, None, dout, None)
    expected, _ = run(ref, x, None, None, dout, None)
    tol = TOL if dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-5}
    for name, a, b in zip(NAMES, got, expected):
        np.testing.assert_allclose(a, b, **tol, err_msg=name)


@pytest.mark.parametrize("return_sequences", [False, True])
def test_no_time_step_passes_the_state_through(return_sequences):
    B, E, H = 3, 2, 4
    fast, ref = twins(lambda impl: LSTM(E, H, np.random.default_rng(1), return_sequences, np.float64,
                                        implementation=impl))
    rng = np.random.default_rng(3)
    x, state = np.zeros((B, 0, E)), (rng.normal(size=(B, H)), rng.normal(size=(B, H)))
    dout = rng.normal(size=(B, 0, H) if return_sequences else (B, H))
    got, _ = run(ref, x, None, state, dout, None)
    assert_same(got, run(fast, x, None, state, dout, None)[0])
    if not return_sequences:
        np.testing.assert_array_equal(got[0], state[0])          # out is h0
        np.testing.assert_array_equal(got[2], dout)              # so dh0 is dout
    assert not any(g.any() for g in got[3:])


@pytest.mark.parametrize("return_sequences", [False, True])
def test_an_empty_batch_gives_empty_outputs_and_zero_gradients(return_sequences):
    """No rows (a predict on no review): the engine once failed here, in a block copy."""
    T, E, H = 5, 3, 4
    fast, ref = twins(lambda impl: LSTM(E, H, np.random.default_rng(1), return_sequences, np.float64,
                                        implementation=impl))
    x = np.zeros((0, T, E))
    dout = np.zeros((0, T, H) if return_sequences else (0, H))
    got, _ = run(fast, x, None, None, dout, None)
    assert_same(got, run(ref, x, None, None, dout, None)[0])
    assert got[0].shape == dout.shape and got[1].shape == x.shape
    assert not any(g.any() for g in got[4:])


@pytest.mark.parametrize("implementation", ["fast", "reference"])
def test_backward_leaves_dout_alone(implementation):
    """With one unit, dout.T is contiguous: the engine once wrote its steps into the caller's dout."""
    layer = LSTM(3, 1, np.random.default_rng(0), dtype=np.float64, implementation=implementation)
    rng = np.random.default_rng(1)
    x, mask = rng.normal(size=(4, 5, 3)), np.ones((4, 5), bool)
    mask[0, -1] = False
    out, cache = layer.forward(x, mask)
    dout = rng.normal(size=out.shape)
    before = dout.copy()
    layer.backward(dout, cache)
    np.testing.assert_array_equal(dout, before)


@pytest.mark.parametrize("return_sequences", [False, True])
def test_fast_bidirectional_equals_reference(return_sequences):
    B, T, E, H = 4, 6, 3, 5
    fast, ref = twins(lambda impl: Bidirectional(E, H, np.random.default_rng(1), return_sequences, np.float64,
                                                 implementation=impl))
    assert {fast.forward_layer.implementation, fast.backward_layer.implementation} == {"fast"}
    assert {ref.forward_layer.implementation, ref.backward_layer.implementation} == {"reference"}
    rng = np.random.default_rng(4)
    x, mask = rng.normal(size=(B, T, E)), make_mask("pre", B, T, rng)
    outs = [layer.forward(x, mask) for layer in (fast, ref)]
    np.testing.assert_allclose(outs[0][0], outs[1][0], **TOL)
    dout = rng.normal(size=outs[0][0].shape)
    (dx_f, _, grads_f), (dx_r, _, grads_r) = [layer.backward(dout, cache)
                                              for layer, (_, cache) in zip((fast, ref), outs)]
    for a, b in zip([dx_f] + grads_f, [dx_r] + grads_r):
        np.testing.assert_allclose(a, b, **TOL)


@pytest.mark.parametrize("settings", [
    {},                                                            # the tutorial's model
    {"mask_zero": True, "bidirectional": True, "num_layers": 2, "pooling": "max",
     "recurrent_dropout": 0.3, "dropout": 0.2, "word_dropout": 0.1},
])
def test_fast_model_equals_reference(settings):
    fast, ref = twins(lambda impl: SentimentLSTM(vocab_size=20, embed_dim=4, units=3, dtype="float64",
                                                 seed=0, implementation=impl, **settings))
    rng = np.random.default_rng(5)
    ids = rng.integers(1, 20, (9, 7))
    ids[:4, :3] = 0                                                # some pre-padding
    labels = rng.integers(0, 2, 9)
    train_rng = 6 if settings else None
    results = [model.gradients(ids, labels, None if train_rng is None else np.random.default_rng(train_rng))
               for model in (fast, ref)]
    (loss_f, grads_f), (loss_r, grads_r) = results
    np.testing.assert_allclose(loss_f, loss_r, **TOL)
    for name, a, b in zip(fast.weight_names, grads_f, grads_r):
        assert np.abs(a).max() > 0, name
        np.testing.assert_allclose(a, b, **TOL, err_msg=name)
    np.testing.assert_allclose(fast.predict(ids), ref.predict(ids), **TOL)


def test_implementation_is_recorded_and_checked(tmp_path):
    model = SentimentLSTM(vocab_size=10, embed_dim=3, units=2, seed=0, implementation="reference")
    assert model.config["implementation"] == "reference"
    assert all(rnn.implementation == "reference" for rnn in model.rnns)
    model.save(tmp_path / "model.npz")
    assert SentimentLSTM.load(tmp_path / "model.npz").rnns[0].implementation == "reference"
    # A model file from before the setting existed loads with the fast engine.
    with np.load(tmp_path / "model.npz") as data:
        arrays = {name: data[name] for name in data.files}
    config = json.loads(str(arrays.pop("config")))
    del config["implementation"]
    np.savez(tmp_path / "old.npz", config=np.array(json.dumps(config)), **arrays)
    old = SentimentLSTM.load(tmp_path / "old.npz")
    assert old.config["implementation"] == "fast" and old.rnns[0].implementation == "fast"
    ids = np.random.default_rng(0).integers(0, 10, (3, 5))
    np.testing.assert_allclose(old.predict(ids), model.predict(ids), rtol=1e-5)
    with pytest.raises(NumpyLSTMError, match="implementation"):
        SentimentLSTM(implementation="slow")
    with pytest.raises(ValueError, match="implementation"):
        LSTM(3, 2, np.random.default_rng(0), implementation="slow")


def test_train_config_and_flag_choose_the_implementation(capsys):
    args = build_parser().parse_args(["train", "--recipe", "tutorial", "--implementation", "reference"])
    assert args.implementation == "reference"
    config = recipe_config("tutorial", implementation=args.implementation)
    assert build_model(config, np.random.default_rng(0)).rnns[0].implementation == "reference"
    assert recipe_config("tutorial").implementation == "fast"
    with pytest.raises(NumpyLSTMError, match="implementation"):
        recipe_config("tutorial", implementation="slow")
    assert main(["train", "--implementation", "slow"]) == 2       # one line, no traceback
    err = capsys.readouterr().err
    assert "implementation must be" in err and "Traceback" not in err
