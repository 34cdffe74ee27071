"""The n-gram view beside the LSTM (numpy_lstm/ngrams.py): its keys, its loss's gradients, what it can
learn, self-training, the mix, saving, and the `train --ngrams` run end to end."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from numpy_lstm import SentimentLSTM, check_gradient
from numpy_lstm.cli import main
from numpy_lstm.config import STUDENT
from numpy_lstm.evaluation import model_logits
from numpy_lstm.ngrams import (
    NgramView,
    TwoViews,
    accuracy,
    fit_mix,
    fit_vote_mix,
    load_ngrams,
    ngram_keys,
    save_ngrams,
    self_train,
    spread,
    view_loss,
    vote,
)
from numpy_lstm.prepare import encode, load_test_set, prepare_data
from numpy_lstm.rundir import RunDir
from numpy_lstm.text import pad_sequences
from tests.test_cli import TINY, write_tree

V = 10


def test_keys_are_the_distinct_grams_and_padding_never_forms_one():
    ids = np.array([[0, 0, 3, 4, 3, 4],      # the bigram 3 4 twice: counted once
                    [0, 5, 0, 6, 7, 7],      # 5 and 6 are not neighbours: padding between them
                    [0, 0, 0, 0, 0, 0]])     # an empty review has no grams
    doc, key = ngram_keys(ids, V, 3)
    assert doc.dtype == key.dtype == np.int64
    bigram = lambda a, b: V + a * V + b                       # noqa: E731
    trigram = lambda a, b, c: V + V * V + (a * V + b) * V + c  # noqa: E731
    expected = {(0, 3), (0, 4), (0, bigram(3, 4)), (0, bigram(4, 3)), (0, trigram(3, 4, 3)), (0, trigram(4, 3, 4)),
                (1, 5), (1, 6), (1, 7), (1, bigram(6, 7)), (1, bigram(7, 7)), (1, trigram(6, 7, 7))}
    pairs = list(zip(doc.tolist(), key.tolist()))
    assert len(pairs) == len(set(pairs)) and set(pairs) == expected
    doc, key = ngram_keys(ids, V, 1)
    assert set(zip(doc.tolist(), key.tolist())) == {(0, 3), (0, 4), (1, 5), (1, 6), (1, 7)}
    doc, key = ngram_keys(ids, V, 2)
    assert set(zip(doc.tolist(), key.tolist())) == {p for p in expected if p[1] < V + V * V}
    # a few reviews at a time (to bound memory), the same pairs in the same order
    for chunk in (1, 2):
        for a, b in zip(ngram_keys(ids, V, 3, chunk=chunk), ngram_keys(ids, V, 3)):
            np.testing.assert_array_equal(a, b)


def random_problem(seed=0, N=7, F=9, M=30):
    rng = np.random.default_rng(seed)
    pairs = np.unique(np.stack([rng.integers(0, N, M), rng.integers(0, F, M)], axis=1), axis=0)
    return (rng.normal(size=F), rng.normal(size=F), pairs[:, 0], pairs[:, 1],
            rng.integers(0, 2, N).astype(float), rng.uniform(0.5, 2.0, N))


def test_view_loss_gradients_by_central_differences():
    w, r, doc, feature, y, s = random_problem()
    b = np.array([0.3])
    l2 = 0.2
    f = lambda: view_loss(w, b[0], r, doc, feature, y, s, l2)[0]   # noqa: E731
    _, dw, db = view_loss(w, b[0], r, doc, feature, y, s, l2)
    assert check_gradient(f, w, 1.0, dw) < 1e-6
    assert check_gradient(f, b, 1.0, np.array([db])) < 1e-6
    # The check catches a gradient that forgets the penalty or the sample weights.
    assert check_gradient(f, w, 1.0, dw - l2 * w) > 1e-3
    _, dw_unweighted, _ = view_loss(w, b[0], r, doc, feature, y, np.ones_like(s), l2)
    assert check_gradient(f, w, 1.0, dw_unweighted) > 1e-3


GOOD, NOT, FILLER = 2, 3, range(4, 20)


def negation_reviews(n, rng):
    """Positive reviews say "good" and, elsewhere, "not"; negative ones say "not good". Every review
    has both words, so only the bigram tells the classes apart."""
    reviews, labels = [], []
    for i in range(n):
        words = list(rng.choice(FILLER, rng.integers(4, 10)))
        if i % 2:
            parts = [[GOOD], [NOT, int(rng.choice(FILLER))]]
            rng.shuffle(parts)
            chunks = parts[0] + list(rng.choice(FILLER, 2)) + parts[1]
        else:
            chunks = [NOT, GOOD]
        at = rng.integers(0, len(words) + 1)
        reviews.append(words[:at] + chunks + words[at:])
        labels.append(i % 2)
    return pad_sequences(reviews, maxlen=20), np.array(labels)


def test_the_negation_rule_needs_bigrams():
    rng = np.random.default_rng(0)
    x, y = negation_reviews(200, rng)
    x_test, y_test = negation_reviews(200, rng)
    bigrams = NgramView(20, n=2).fit(x, y)
    unigrams = NgramView(20, n=1).fit(x, y)
    assert accuracy(bigrams.logits(x_test), y_test) >= 0.95
    assert accuracy(unigrams.logits(x_test), y_test) <= 0.7
    # a few reviews at a time (to bound memory), the very same logits
    np.testing.assert_array_equal(bigrams.logits(x_test, chunk=7), bigrams.logits(x_test))


def class_word_reviews(n, rng, words_per_class=10):
    """Label 1 reviews carry four words of ids 2..11, label 0 four of 12..21, among six filler words."""
    reviews, labels = [], []
    for i in range(n):
        label = i % 2
        first = 2 if label else 2 + words_per_class
        words = list(rng.choice(np.arange(first, first + words_per_class), 4)) + list(rng.choice(np.arange(22, 40), 6))
        rng.shuffle(words)
        reviews.append(words)
        labels.append(label)
    return pad_sequences(reviews, maxlen=12), np.array(labels)


def few_label_tasks(count=6):
    """`count` seeded tasks: (x, y) 4 labeled reviews, (unlabeled, their true labels) 600, and
    (x_test, y_test) 400, all from class_word_reviews."""
    for seed in range(count):
        rng = np.random.default_rng(seed)
        yield (*class_word_reviews(4, rng), *class_word_reviews(600, rng), *class_word_reviews(400, rng))


def test_self_training_moves_a_view_from_few_labels_toward_the_truth():
    """Four labels show a few of the class words; the unlabeled reviews, labeled by the view, show the
    rest beside them. Self-training does not always help, so the gain is averaged over six tasks."""
    gains = []
    for seed, (x, y, unlabeled, _, x_test, y_test) in enumerate(few_label_tasks()):
        view = NgramView(40, n=1).fit(x, y, extra_ids=unlabeled)
        before = accuracy(view.logits(x_test), y_test)
        after = accuracy(self_train(view, x, y, unlabeled, rounds=3).logits(x_test), y_test)
        assert after >= before, (seed, before, after)
        gains.append(after - before)
    assert np.mean(gains) >= 0.03, gains


def test_another_model_votes_with_equal_weight_whatever_its_scale():
    """Another model that is the view itself, scaled, changes no pseudo-label; its vote does not
    grow with its scale; another model that knows the truth teaches the view more than the view
    teaches itself (co-training)."""
    gains = []
    for x, y, unlabeled, truth, x_test, y_test in few_label_tasks():
        fit = lambda: NgramView(40, n=1).fit(x, y, extra_ids=unlabeled)  # noqa: E731
        alone = self_train(fit(), x, y, unlabeled, rounds=1)
        view = fit()
        echo = self_train(view, x, y, unlabeled, rounds=1, other_logits=1e3 * view.logits(unlabeled))
        np.testing.assert_array_equal(echo.rw, alone.rw)
        taught = self_train(fit(), x, y, unlabeled, rounds=1, other_logits=2.0 * truth - 1)
        loud = self_train(fit(), x, y, unlabeled, rounds=1, other_logits=1e3 * (2.0 * truth - 1))
        np.testing.assert_array_equal(loud.rw, taught.rw)
        gains.append(accuracy(taught.logits(x_test), y_test) - accuracy(alone.logits(x_test), y_test))
    assert min(gains) >= 0 and np.mean(gains) > 0.02, gains


def test_a_balanced_vote_labels_the_share_asked_for_by_the_largest_sums():
    rng = np.random.default_rng(3)
    a, b = rng.normal(-1.0, 1.0, 101), rng.normal(-0.5, 3.0, 101)   # both lean negative
    total = a / a.std() + b / b.std()
    np.testing.assert_array_equal(vote(a, b), (total > 0).astype(float))
    assert vote(a, b).mean() < 0.4
    for share in (0.0, 0.3, 0.5, 1.0):
        labels = vote(a, b, share=share)
        assert labels.sum() == round(share * 101)
        if 0 < share < 1:     # every review labeled 1 outscores every review labeled 0
            assert total[labels == 1].min() > total[labels == 0].max()


def test_a_balanced_vote_keeps_a_leaning_voter_from_tilting_the_view():
    """Another model that knows the truth but leans negative (its logits shifted down) teaches the view
    to lean too: the view then calls fewer unlabeled reviews positive than there are. With the
    labeled reviews' share (half), the view's verdicts keep the balance, and it errs less."""
    tilted, kept, plain_acc, kept_acc, truth_shares = [], [], [], [], []
    for x, y, unlabeled, truth, x_test, y_test in few_label_tasks():
        truth_shares.append(np.mean(truth))
        leaning = (2.0 * truth - 1) + 0.3 * np.random.default_rng(0).normal(size=len(truth)) - 1.3
        fit = lambda: NgramView(40, n=1).fit(x, y, extra_ids=unlabeled)  # noqa: E731
        plain = self_train(fit(), x, y, unlabeled, rounds=1, other_logits=leaning)
        balanced = self_train(fit(), x, y, unlabeled, rounds=1, other_logits=leaning, share=np.mean(y))
        tilted.append(np.mean(plain.logits(unlabeled) > 0))
        kept.append(np.mean(balanced.logits(unlabeled) > 0))
        plain_acc.append(accuracy(plain.logits(x_test), y_test))
        kept_acc.append(accuracy(balanced.logits(x_test), y_test))
    truth_share = np.mean(truth_shares)
    assert np.mean(tilted) < truth_share - 0.05, (tilted, truth_share)
    assert abs(np.mean(kept) - truth_share) < 0.05, (kept, truth_share)
    assert np.mean(kept_acc) > np.mean(plain_acc) + 0.05, (kept_acc, plain_acc)


def test_the_mix_picks_the_view_that_knows_and_ignores_noise():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    knows = 2.0 * (2 * y - 1) + rng.normal(0, 1.5, 400)
    noise = rng.normal(0, 2.0, 400)
    a, c, _ = fit_mix(knows, noise, y)
    assert a > 0.5 and abs(c) < 0.1 * a
    a, c, _ = fit_mix(noise, knows, y)
    assert c > 0.5 and abs(a) < 0.1 * c


def test_the_vote_mix_is_the_vote_times_the_scale_that_fits_best():
    """fit_vote_mix: no intercept, each view weighted by 1 / its spread on the unlabeled reviews
    (so the mixed verdict on them is `vote`'s), and the common scale the one of least held-out loss."""
    rng = np.random.default_rng(4)
    y_unl = rng.integers(0, 2, 500)
    z_lstm, z_view = 3.0 * (2 * y_unl - 1) + rng.normal(0, 4, 500), 0.2 * (2 * y_unl - 1) + rng.normal(0, 0.3, 500)
    spreads = (spread(z_lstm), spread(z_view))
    y = rng.integers(0, 2, 80)
    zl_val, zv_val = 3.0 * (2 * y - 1) + rng.normal(0, 4, 80), 0.2 * (2 * y - 1) + rng.normal(0, 0.3, 80) - 0.5
    a, c, b = fit_vote_mix(zl_val, zv_val, y, spreads)
    assert b == 0 and a > 0 and a * spreads[0] == pytest.approx(c * spreads[1], rel=1e-12)
    mixed = a * z_lstm + c * z_view
    total = z_lstm / spreads[0] + z_view / spreads[1]
    assert np.array_equal((mixed > 0)[np.abs(total) > 1e-9], vote(z_lstm, z_view)[np.abs(total) > 1e-9] == 1)

    def loss(scale):
        z = scale * (zl_val * a + zv_val * c)
        return np.mean(np.logaddexp(0, z) - y * z) + 0.5e-4 * (scale * a * spreads[0]) ** 2

    assert loss(1.0) < min(loss(1.01), loss(0.99))
    # The fitted mix, free to, takes an intercept for these held-out reviews' offset; the vote's does not.
    assert abs(fit_mix(zl_val, zv_val, y)[2]) > 0.1


def test_two_views_round_trip_through_the_file(tmp_path):
    rng = np.random.default_rng(3)
    x, y = negation_reviews(60, rng)
    lstm = SentimentLSTM(vocab_size=20, embed_dim=4, units=5, mask_zero=True, seed=0)
    view = NgramView(20, n=3).fit(x, y)
    two = TwoViews(lstm, view, [0.7, 1.3, -0.2])
    save_ngrams(tmp_path / "ngrams.npz", view, two.mix)
    again = TwoViews(lstm, *load_ngrams(tmp_path / "ngrams.npz"))
    assert np.array_equal(two.forward(x)[0], again.forward(x)[0])
    assert np.array_equal(two.predict(x), again.predict(x))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(Exception, match="not a readable n-gram view file"):
        load_ngrams(tmp_path / "bad.npz")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("imdb"), per_class=60)


@pytest.fixture(scope="module")
def ngram_run(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--data", str(tree), "--out", str(out), "--epochs", "3", "--seed", "1", *TINY,
                 "--ngrams", "2"]) == 0
    return out


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "numpy_lstm", *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def test_train_with_ngrams_writes_the_view_and_its_metrics(ngram_run, tree):
    metrics = json.loads((ngram_run / "metrics.json").read_text())
    for key in ("val_accuracy", "val_loss", "test_accuracy", "test_n", "epochs_run", "best_epoch", "seed", "recipe",
                "val_accuracy_lstm", "val_accuracy_ngrams", "mix"):
        assert key in metrics, key
    assert len(metrics["mix"]) == 3 and metrics["val_accuracy_ngrams"] >= 0.9
    model, vocab, config = RunDir(ngram_run).load_model()
    assert isinstance(model, TwoViews) and model.view.n == 2
    assert list(model.mix) == metrics["mix"]
    x_test, y_test = load_test_set(config, vocab)   # each view alone, as reported
    assert metrics["test_accuracy_lstm"] == pytest.approx(np.mean((model.model.predict(x_test) > 0.5) == y_test))
    assert metrics["test_accuracy_ngrams"] == pytest.approx(np.mean((model.view.logits(x_test) > 0) == y_test))
    code, stdout, err = run_cli("predict", ngram_run, "a wonderful superb film", "an awful boring mess")
    assert code == 0, err
    assert [line.split("\t")[1] for line in stdout.strip().splitlines()] == ["positive", "negative"]
    code, stdout, err = run_cli("evaluate", ngram_run, "--data", tree)
    assert code == 0, err
    assert f"test accuracy {metrics['test_accuracy']:.4f}" in stdout


def test_resume_after_the_lstm_fits_the_same_view_again(ngram_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(ngram_run, copy)
    (copy / "ngrams.npz").unlink()
    assert main(["train", "--resume", str(copy), "--quiet"]) == 0
    assert (copy / "ngrams.npz").read_bytes() == (ngram_run / "ngrams.npz").read_bytes()


def test_self_training_runs_are_deterministic(tree, tmp_path):
    files = []
    for name in ("a", "b"):
        args = ["train", "--data", str(tree), "--out", str(tmp_path / name), "--epochs", "1", "--seed", "2", *TINY,
                "--ngrams", "3", "--unlabeled", "--self-train", "1"]
        assert main(args) == 0
        files.append((tmp_path / name / "ngrams.npz").read_bytes())
    assert files[0] == files[1]


@pytest.mark.parametrize("flags", [["--ngrams", "2", "--self-train", "1"], ["--unlabeled", "--self-train", "1"]])
def test_self_training_without_its_parts_is_a_one_line_error(flags, tree, tmp_path):
    code, _, err = run_cli("train", "--data", tree, "--out", tmp_path / "r", *TINY, *flags)
    assert code == 2 and "--self-train needs" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_balanced_votes_without_co_training_is_a_one_line_error(tree, tmp_path):
    code, _, err = run_cli("train", "--data", tree, "--out", tmp_path / "r", *TINY, "--balance-votes")
    assert code == 2 and "--balance-votes needs co-training" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_ngrams_out_of_range_is_refused(tree, tmp_path, capsys):
    assert main(["train", "--data", str(tree), "--out", str(tmp_path / "r"), *TINY, "--ngrams", "4"]) == 2
    assert "ngrams must be 0 (off), 1, 2 or 3" in capsys.readouterr().err


def test_inspect_a_two_view_run(ngram_run, tmp_path, capsys):
    text = "a wonderful film, not boring: a superb story and great music"
    assert main(["inspect", str(ngram_run), text, "--json", "--out", str(tmp_path / "page")]) == 0
    out = json.loads(capsys.readouterr().out)
    model, vocab, config = RunDir(ngram_run).load_model()
    padded = encode([text], vocab, config)
    np.testing.assert_allclose(out["probability"], model.predict(padded)[0], rtol=1e-6)
    change = out["logit"] - out["baseline_logit"]
    assert abs(sum(out["attributions"]) - change) / abs(change) < 0.01
    assert out["running_probability"][-1] == pytest.approx(out["probability"], abs=1e-6)
    page = (tmp_path / "page" / "report.html").read_text()
    assert "two views" in page and "of which the n-gram view" in page


def test_a_student_replaces_the_lstm_and_resumes_to_the_same_bytes(tree, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(tree), "--out", str(out), "--epochs", "1", "--seed", "3", *TINY,
                 "--ngrams", "2", "--unlabeled", "--self-train", "1", "--student", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and metrics["student_epochs_run"] == STUDENT["epochs"]
    assert 0 <= metrics["val_accuracy_teacher"] <= 1
    model, vocab, config = RunDir(out).load_model()
    student = SentimentLSTM.load(out / "student" / "model.npz")
    teacher = SentimentLSTM.load(out / "model.npz")
    assert isinstance(model, TwoViews) and student.config["bidirectional"] and not teacher.config["bidirectional"]
    assert model.model.weight_names == student.weight_names
    for a, b in zip(model.model.get_weights(), student.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Stopped after the student's training: the view, the vote and the mix are made again the same.
    for name in ("ngrams.npz", "student/model.npz"):
        (out / name).rename(out / (name.replace("/", "-") + ".done"))
    (out / "metrics.json").unlink()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    for name in ("ngrams.npz", "student/model.npz"):
        assert (out / name).read_bytes() == (out / (name.replace("/", "-") + ".done")).read_bytes(), name
    again = json.loads((out / "metrics.json").read_text())
    assert {k: v for k, v in again.items() if k != "eval_seconds"} == {
        k: v for k, v in metrics.items() if k != "eval_seconds"}


def co_trained_run(tree, out, seed, *flags):
    """Train a one-epoch co-training run (--self-train 1) with `flags` into `out`: (metrics, the
    saved model, y_train, x_unlabeled as the run prepared them)."""
    assert main(["train", "--data", str(tree), "--out", str(out), "--epochs", "1", "--seed", str(seed), *TINY,
                 "--ngrams", "2", "--unlabeled", "--self-train", "1", *flags, "--quiet"]) == 0
    model, _, config = RunDir(out).load_model()
    _, _, y_train, _, _, x_unlabeled = prepare_data(config)
    return json.loads((out / "metrics.json").read_text()), model, y_train, x_unlabeled


def test_balanced_votes_teach_the_student_the_labeled_share(tree, tmp_path):
    """With --balance-votes the vote that teaches the student labels positive the labeled reviews'
    share of the unlabeled ones; unlabeled_positive_share is the saved model's own share."""
    metrics, model, y_train, x_unlabeled = co_trained_run(tree, tmp_path / "run", 1, "--student", "--balance-votes")
    assert metrics["vote_positive_share"] == round(np.mean(y_train) * len(x_unlabeled)) / len(x_unlabeled)
    assert metrics["unlabeled_positive_share"] == np.mean(model.predict(x_unlabeled) > 0.5)


def test_a_vote_mixed_run_calls_the_unlabeled_reviews_as_its_vote_does(tree, tmp_path):
    metrics, model, _, x_unlabeled = co_trained_run(tree, tmp_path / "run", 2, "--mix", "vote")
    z_lstm, z_view = model_logits(model.model, x_unlabeled), model.view.logits(x_unlabeled)
    a, c, b = metrics["mix"]
    assert b == 0 and a * spread(z_lstm) == pytest.approx(c * spread(z_view), rel=1e-9)
    assert np.array_equal(model.predict(x_unlabeled) > 0.5, vote(z_lstm, z_view) == 1)
    assert metrics["unlabeled_positive_share"] == np.mean(vote(z_lstm, z_view))


def test_a_vote_mix_without_co_training_is_a_one_line_error(tree, tmp_path):
    code, _, err = run_cli("train", "--data", tree, "--out", tmp_path / "r", *TINY, "--ngrams", "2", "--mix", "vote")
    assert code == 2 and "--mix 'vote' needs co-training" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_student_without_co_training_is_a_one_line_error(tree, tmp_path):
    code, _, err = run_cli("train", "--data", tree, "--out", tmp_path / "r", *TINY, "--ngrams", "2", "--student")
    assert code == 2 and "student needs" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
