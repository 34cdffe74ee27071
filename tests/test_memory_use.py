"""What a run keeps in memory between batches: the engine's spare arrays, the best epoch's weights."""
import json

import numpy as np
from test_cli import TINY, write_tree

from numpy_lstm import SentimentLSTM, train
from numpy_lstm.cli import main
from numpy_lstm.engine import spare
from numpy_lstm.layers import LSTM


def test_spare_arrays_keep_one_array_per_name_the_largest_asked_for():
    arrays = spare.SpareArrays()
    for n in (100, 300, 200, 50):           # batches of varying length, one after another
        cells = arrays.borrow("cells", (n, 4), np.float32)
        share = arrays.borrow("run share", (8,), np.float32)
        assert cells.shape == (n, 4) and share.shape == (8,)
        arrays.give_back("cells", cells)
        arrays.give_back("run share", share)
    assert arrays.held_bytes() == 4 * (300 * 4 + 8)
    big = arrays.borrow("cells", (300, 4), np.float32)
    assert arrays.borrow("cells", (10,), np.float32).base is not big.base    # lent out: a fresh one


def test_a_layer_over_batches_of_varying_length_keeps_one_loop_array():
    """The old rule (the four largest arrays of any name) also kept the first batch's loop
    array here, made before a longer batch needed a larger one; one per name keeps the longest's."""
    rng = np.random.default_rng(0)
    layer = LSTM(8, 16, rng)
    for T in (40, 80, 60, 70, 20):
        x = rng.standard_normal((4, T, 8)).astype(np.float32)
        out, cache = layer.forward(x)
        layer.backward(np.ones_like(out), cache)
    cells = (80 + 1) * 6 * 16 * 4 * 4                # (T + 1, 6, H, B) float32, the longest batch's
    gradients = 2 * (4 * 16) * (8 + 1 + 16) * 4      # backward's sum and run share, (4H, E + 1 + H)
    assert layer.workspace.spare.held_bytes() == cells + gradients


def test_early_stopping_keeps_the_best_epoch_on_disk_and_ends_with_its_weights(tmp_path, monkeypatch):
    """Held-out losses 0.5, 0.4, 0.6, 0.7: epoch 2 is the best, patience 2 stops after epoch 4.
    The best weights are not kept in memory: the checkpoints of epochs 3 and 4 carry epoch 2's
    weights over from the one before, and model.npz ends with them, read back from there."""
    losses = iter([0.5, 0.4, 0.6, 0.7])
    at_epoch_end = []

    def fake_evaluate(model, x, y):
        at_epoch_end.append([w.copy() for w in model.weights])
        return next(losses), 0.5

    monkeypatch.setattr(train, "evaluate", fake_evaluate)
    tree = write_tree(tmp_path / "imdb", per_class=20)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tree), *TINY, "--epochs", "6", "--patience", "2", "--out", str(out)]) == 0
    assert len(at_epoch_end) == 4
    best, last = at_epoch_end[1], at_epoch_end[3]
    assert any(not np.array_equal(b, w) for b, w in zip(best, last))
    with np.load(out / "checkpoint.npz") as data:
        state = json.loads(str(data["state"]))
        assert (state["epoch"], state["best_epoch"], state["stopped_early"]) == (4, 2, True)
        for i, (b, w) in enumerate(zip(best, last)):
            np.testing.assert_array_equal(data[f"best/{i}"], b)
            np.testing.assert_array_equal(data[f"weights/{i}"], w)
    model = SentimentLSTM.load(out / "model.npz")
    for got, b in zip(model.weights, best):
        np.testing.assert_array_equal(got, b)
