"""Language-model pretraining (`--pretrain-epochs N`): the sampled softmax and the whole pass
checked by central differences in float64, in the reference LSTM and in the engine; the sampled
loss against the full softmax's; pretraining learning a predictable text; a run stopped during
or after pretraining resuming to the bits of one that was not."""
import json
import os
import signal
import types

import numpy as np
import pytest
from fault_runs import signal_at_batch
from test_cli import TINY, assert_same_run, run_cli, write_tree

from numpy_lstm import SentimentLSTM, check_gradient, language_model, train
from numpy_lstm.cli import main
from numpy_lstm.config import recipe_config
from numpy_lstm.language_model import (
    WordPredictor,
    every_state,
    language_model_pass,
    negative_sampler,
    sampled_softmax,
    sampled_softmax_backward,
)
from numpy_lstm.memory import estimate_bytes

IDS = np.array([[0, 0, 3, 1, 6, 2], [2, 5, 5, 1, 4, 4], [0, 0, 0, 0, 2, 5], [0, 6, 6, 6, 3, 1]])


def softmax_case(seed=0, n=9, h=4, v=12, k=6):
    rng = np.random.default_rng(seed)
    targets = rng.integers(1, v, n)
    negatives = np.concatenate([rng.integers(1, v, k - 1), targets[:1]])   # one draw hits a true word
    log_expected = np.log(rng.uniform(0.1, 2.0, v))
    return rng.normal(size=(n, h)), targets, negatives, rng.normal(size=(v, h)), rng.normal(size=v), log_expected


def test_sampled_softmax_gradients():
    h, targets, negatives, W, b, log_expected = softmax_case()
    _, cache = sampled_softmax(h, targets, negatives, W, b, log_expected)
    dh, dW, db = sampled_softmax_backward(cache)
    f = lambda: np.array(sampled_softmax(h, targets, negatives, W, b, log_expected)[0])  # noqa: E731
    errors = [check_gradient(f, x, np.array(1.0), g) for x, g in ((h, dh), (W, dW), (b, db))]
    assert max(errors) < 1e-6, errors


def test_the_checker_sees_sampled_words_left_without_their_gradient():
    """The rows of W of the sampled words get a gradient too; a backward that forgot it is caught.
    (The check above is not vacuous.)"""
    h, targets, negatives, W, b, log_expected = softmax_case(1)
    _, cache = sampled_softmax(h, targets, negatives, W, b, log_expected)
    _, dW, _ = sampled_softmax_backward(cache)
    forgot = dW.copy()
    sampled_only = np.setdiff1d(negatives, targets)
    forgot[sampled_only] = 0.0
    f = lambda: np.array(sampled_softmax(h, targets, negatives, W, b, log_expected)[0])  # noqa: E731
    assert check_gradient(f, W, np.array(1.0), dW) < 1e-6
    assert check_gradient(f, W, np.array(1.0), forgot) > 1e-2


def fit_word_scores(p, log_expected, probabilities, steps=500, seed=4):
    """Scores b (V,) fitted by gradient descent on the sampled loss, with no context (h = 0), to
    words drawn from p: what the sampled softmax learns."""
    rng = np.random.default_rng(seed)
    V = len(p)
    b, h, W = np.zeros(V), np.zeros((500, 1)), np.zeros((V, 1))
    for _ in range(steps):
        targets = rng.choice(V, size=500, p=p)
        negatives = rng.choice(V, size=40, p=probabilities)
        _, cache = sampled_softmax(h, targets, negatives, W, b, log_expected)
        b -= 2.0 * sampled_softmax_backward(cache)[2]
    return b


def test_the_sampled_softmax_learns_the_words_probabilities():
    """Trained to its minimum, the sampled softmax's scores are close to the log-probabilities of
    the words, up to a constant, however the sampled words were drawn (for a vocabulary where no
    word is frequent): lowering each logit by the log of its expected count is what undoes the
    draw. Without it the scores learn about p / q instead of p."""
    V = 100
    p = np.concatenate([[0.0], np.random.default_rng(5).dirichlet(np.full(V - 1, 2.0))])  # 0: padding
    text = np.repeat(np.arange(V), V + 1 - np.arange(V))[None, :]        # draws unlike p
    probabilities, log_expected = negative_sampler(text, V, 40)
    assert probabilities[0] == 0.0 and probabilities.sum() == pytest.approx(1.0)
    seen = p > 0.5 / V
    for corrected, low, high in ((True, 0.0, 0.25), (False, 0.5, np.inf)):
        b = fit_word_scores(p, log_expected if corrected else np.zeros(V), probabilities)
        learned = np.exp(b - b[1:].max())
        learned /= learned[1:].sum()
        error = np.mean(np.abs(np.log(learned[seen] / p[seen])))
        assert low < error < high, (corrected, error)


def small_model(implementation, bidirectional, num_layers=1):
    model = SentimentLSTM(vocab_size=7, embed_dim=3, units=4, mask_zero=True, dtype="float64", seed=0,
                          implementation=implementation, bidirectional=bidirectional, num_layers=num_layers,
                          pooling="max" if bidirectional else "last")
    rng = np.random.default_rng(100)
    for w in model.weights:
        if w.ndim == 1:                                   # biases: away from Keras's zeros and ones
            w[:] = rng.normal(size=w.shape)
    predictor = WordPredictor(IDS, 7, 4, 2 if bidirectional else 1, np.float64)
    for w in predictor.weights:
        w[:] = rng.normal(size=w.shape)
    return model, predictor


@pytest.mark.parametrize("implementation", ["reference", "fast"])
@pytest.mark.parametrize("bidirectional, num_layers", [(False, 1), (True, 1), (False, 2)])
def test_gradients_of_the_language_model_pass(implementation, bidirectional, num_layers):
    """Every weight the pass reads (the embedding, each LSTM, the word predictors), through
    padding at the start of some reviews and none in others."""
    model, predictor = small_model(implementation, bidirectional, num_layers)
    negatives = np.array([1, 2, 4, 4, 5, 6])
    log_expected = np.log(np.linspace(0.2, 1.5, 7))
    loss, grads = language_model_pass(model, predictor, IDS, negatives, log_expected)
    weights = model.weights[:-2] + predictor.weights
    assert len(grads) == len(weights)
    f = lambda: np.array(language_model_pass(model, predictor, IDS, negatives, log_expected)[0])  # noqa: E731
    errors = [check_gradient(f, w, np.array(1.0), g) for w, g in zip(weights, grads)]
    assert max(errors) < 1e-6, errors
    assert not model.rnns[-1].return_sequences or num_layers > 1 or bidirectional   # put back as it was


def test_every_state_puts_the_layers_back():
    model, _ = small_model("fast", True)
    rnn = model.rnns[0]
    rnn.return_sequences = rnn.forward_layer.return_sequences = rnn.backward_layer.return_sequences = False
    with pytest.raises(RuntimeError), every_state(rnn):
        assert rnn.return_sequences and rnn.backward_layer.return_sequences
        raise RuntimeError
    assert not (rnn.return_sequences or rnn.forward_layer.return_sequences or rnn.backward_layer.return_sequences)


def test_pretraining_learns_a_text_whose_next_word_is_known():
    """Each review counts up (w, w + 1, ...): a unigram model cannot do better than log(V - 1)
    per word, an LSTM that reads the word before can approach 0."""
    V = 12
    starts = np.random.default_rng(3).integers(1, V, 64)
    ids = (starts[:, None] + np.arange(16)[None, :]) % (V - 1) + 1
    model = SentimentLSTM(vocab_size=V, embed_dim=8, units=16, mask_zero=True, seed=0)
    config = types.SimpleNamespace(pretrain_epochs=30, vocab_size=V, units=16, pretrain_samples=8, lr=0.02,
                                   batch_size=16)
    before = [w.copy() for w in model.weights]
    seconds, losses = language_model.pretrain(model, ids, config, np.random.default_rng(0), log=lambda *a: None)
    assert len(losses) == 30 and seconds > 0
    assert losses[0] > 1.5 and losses[-1] < 0.3, losses
    assert np.array_equal(model.weights[-1], before[-1])   # the readout is not pretrained


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("imdb"), per_class=40)


def pretrain_args(tree):
    return ["train", "--data", str(tree), "--epochs", "3", "--seed", "5", "--pretrain-epochs", "2",
            "--bidirectional", "--pooling", "max", "--mask", "--dropout", "0.2", *TINY]


@pytest.fixture(scope="module")
def straight(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    code, _, err = run_cli(*pretrain_args(tree), "--out", out)
    assert code == 0, err
    return out


def test_a_run_with_pretraining_reports_it(straight):
    metrics = json.loads((straight / "metrics.json").read_text())
    assert 0 < metrics["pretrain_seconds"] <= metrics["train_seconds"]
    assert json.loads((straight / "config.json").read_text())["pretrain_epochs"] == 2


@pytest.mark.parametrize("when", ["during pretraining", "after pretraining"])
def test_a_run_stopped_during_or_after_pretraining_resumes_to_the_same_end(when, tree, straight, tmp_path,
                                                                          monkeypatch, capsys):
    """SIGTERM in pretraining's second batch (no checkpoint yet: it starts again), or in the first
    epoch of training (the checkpoint after pretraining is resumed, not pretraining again)."""
    if when == "during pretraining":
        clip, calls = language_model.clip_by_global_norm, []

        def signal_in_batch_2(grads, norm):
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            return clip(grads, norm)
        monkeypatch.setattr(language_model, "clip_by_global_norm", signal_in_batch_2)
    else:
        signal_at_batch(monkeypatch, signal.SIGTERM, epoch=1, batch=2)
    out = tmp_path / "run"
    assert main([*pretrain_args(tree), "--out", str(out)]) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--resume {out}" in err[0], err
    assert (out / "checkpoint.npz").exists() == (when == "after pretraining")
    monkeypatch.undo()
    pretrained = []
    monkeypatch.setattr(train, "pretrain", lambda *a, **k: pretrained.append(1) or language_model.pretrain(*a, **k))
    assert main(["train", "--resume", str(out)]) == 0
    assert len(pretrained) == (when == "during pretraining")
    assert_same_run(straight, out)


def test_the_command_line_refuses_a_negative_count(tmp_path):
    code, _, err = run_cli("train", "--data", tmp_path, "--out", tmp_path / "bad", "--pretrain-epochs", "-1")
    assert code == 2 and "pretrain" in err and err.count("\n") == 1, err


def test_the_memory_estimate_counts_the_word_predictors():
    plain = recipe_config("full")
    pretrained = recipe_config("full", pretrain_epochs=2)
    added = estimate_bytes(pretrained) - estimate_bytes(plain)
    predictors = 4 * 4 * 2 * plain.vocab_size * (plain.units + 1)     # two directions, with Adam's moments
    assert predictors < added < predictors + 4 * 64 * 1000 * 257 * 3 + 1
    assert estimate_bytes(pretrained) < 1e9


def test_a_batch_of_one_word_reviews_scores_nothing():
    model, predictor = small_model("fast", True)
    ids = np.array([[0, 0, 3], [0, 0, 5]])
    loss, grads = language_model_pass(model, predictor, ids, np.array([1, 2, 4]), np.zeros(7))
    assert loss == 0.0 and not any(g.any() for g in grads)


def test_a_language_model_that_diverges_is_one_line(tree, tmp_path, monkeypatch, capsys):
    def diverge(*args, **kwargs):
        raise FloatingPointError("the language model's loss became nan at pretraining epoch 1")
    monkeypatch.setattr(train, "pretrain", diverge)
    assert main([*pretrain_args(tree), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loss became nan" in err[0] and "--lr" in err[0], err
