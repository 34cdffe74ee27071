"""`numpy-lstm inspect`: attributions, the running verdict, the internals, the page and the command."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from numpy_lstm import SentimentLSTM, TrainConfig, Vocabulary, check_gradient
from numpy_lstm.attribution import integrated_gradients
from numpy_lstm.cli import main
from numpy_lstm.inspection import STATES, inspect_review, lstm_internals
from numpy_lstm.layers import bigram_buckets
from numpy_lstm.model import Ensemble
from numpy_lstm.prepare import encode
from numpy_lstm.reading import CUT, READ, SKIPPED, STOPWORD, UNKNOWN, read_review
from numpy_lstm.reference import lstm_forward, lstm_step_forward
from numpy_lstm.rundir import RunDir

FILLER = "movie film plot actor scene story director camera music ending character script".split()
KEYS = {"text", "tokens", "ids", "probability", "logit", "baseline_logit", "attributions",
        "running_probability", "completeness_error", "states"}
TINY = ["--per-class", "60", "--vocab-size", "30", "--maxlen", "20", "--embed-dim", "8", "--units", "8",
        "--batch-size", "16", "--quiet", "--seed", "0"]
# One small model of each kind the CLI trains: (extra flags, epochs).
KINDS = {
    "last": (["--lr", "0.01"], 15),                                       # tuned: masked, last state
    "tutorial": (["--recipe", "tutorial", "--lr", "0.01"], 6),             # unmasked, pre-padded
    "bidirectional-max": (["--bidirectional", "--pooling", "max", "--layers", "2", "--lr", "0.01"], 6),
    "ensemble-stacked": (["--ensemble", "2", "--layers", "2", "--lr", "0.01"], 6),
    "mean": (["--pooling", "mean", "--recipe", "tutorial", "--lr", "0.01"], 4),
    "bigram": (["--bigram-buckets", "64", "--lr", "0.01"], 10),           # x_t = E[w_t] + G[pair]
}


def write_one_token_tree(root, per_class=60, seed=0):
    """aclImdb/{train,test}/{pos,neg}: filler words and one word that decides, "great" or "awful"."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for label, word, rating in (("pos", "great", 9), ("neg", "awful", 2)):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                tokens = list(rng.choice(FILLER, rng.integers(4, 14)))
                tokens.insert(rng.integers(0, len(tokens) + 1), word)
                (folder / f"{i}_{rating}.txt").write_text("The " + " ".join(tokens) + ".")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_one_token_tree(tmp_path_factory.mktemp("imdb"))


@pytest.fixture(scope="module")
def runs(tree, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, (flags, epochs) in KINDS.items():
        args = ["train", "--data", str(tree), "--out", str(root / name), "--epochs", str(epochs), *TINY, *flags]
        assert main(args) == 0, name
    return root


def run_cli(*args, stdin=None):
    proc = subprocess.run([sys.executable, "-m", "numpy_lstm", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def embedded(model, ids):
    """The vectors x (T, E) a model reads for ids (T,), written out: each step's row of the word
    table and, at a word (not padding) of a model with a pair table, the row of its pair's bucket."""
    emb = model.embedding
    x = emb.embeddings[ids].copy()
    if emb.bigrams:
        words = ids != 0
        x[words] += emb.bigram_table[bigram_buckets(ids[None], emb.bigrams)[0][words]]
    return x


def random_model(seed=0, **kwargs):
    """A float64 model with every weight random (biases included: zeros hide bugs)."""
    model = SentimentLSTM(vocab_size=12, embed_dim=4, units=5, dtype="float64", seed=seed, **kwargs)
    rng = np.random.default_rng(seed + 50)
    for w in model.weights:
        w[...] = rng.normal(0.0, 0.6, w.shape)
    return model


@pytest.mark.parametrize("kind", list(KINDS))
def test_json_and_page_on_every_kind_of_trained_model(kind, runs, tmp_path, capsys):
    run = runs / kind
    text = "The film had a great story, and the camera work... well. Zebra!"
    assert main(["inspect", str(run), text, "--json", "--out", str(tmp_path / "page")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == KEYS
    model, vocab, config = RunDir(run).load_model()
    words = ["film", "great", "story", "camera", "work", "well", "zebra"]
    assert out["tokens"] == [w for w in words if w in vocab.word_index or config.oov == "keep"]
    n = len(out["tokens"])
    assert len(out["ids"]) == len(out["attributions"]) == n
    padded = encode([text], vocab, config)[0]
    assert out["ids"] == padded[padded != 0].tolist()
    # The probability is predict's, and the attributions add up to logit - baseline logit.
    assert main(["predict", str(run), text]) == 0
    assert capsys.readouterr().out.split("\t")[0] == f"{out['probability']:.4f}"
    np.testing.assert_allclose(out["probability"], model.predict(padded[None])[0], rtol=1e-5)
    change = out["logit"] - out["baseline_logit"]
    error = abs(sum(out["attributions"]) - change) / abs(change)
    assert error == pytest.approx(out["completeness_error"], rel=1e-6, abs=1e-9)
    assert out["completeness_error"] < 0.01
    if kind in ("bidirectional-max", "mean"):
        assert out["running_probability"] is None
    else:
        assert len(out["running_probability"]) == n
        assert out["running_probability"][-1] == pytest.approx(out["probability"], abs=1e-5)
    check_states(out, model, vocab, config)
    # One self-contained file: nothing linked or fetched, the figures' numbers inside it.
    assert os.listdir(tmp_path / "page") == ["report.html"]
    page = (tmp_path / "page" / "report.html").read_text()
    assert not re.search(r"<link|<img|<iframe|\bsrc=|https?://", page)
    data = page_data(page)
    assert data["words"] == out["tokens"] and (data["running"] is None) == (out["running_probability"] is None)
    assert len(data["views"]) == len(out["states"])
    assert "great" in page and "Completeness" in page


def page_data(page):
    """The JSON of the numbers a report.html draws."""
    match = re.search(r"<script type='application/json' id='inspect-data'>(.*?)</script>", page, re.S)
    return json.loads(match.group(1))


def check_states(out, model, vocab, config):
    """`inspect --json`'s "states": one object per layer and direction of the first model, each
    quantity n rows of H floats aligned with "ids", equal to the reference LSTM's own steps."""
    first = getattr(model, "members", [model])[0]
    cfg = first.config
    directions = ["forward", "backward"] if cfg["bidirectional"] else ["forward"]
    states = out["states"]
    assert [(s["layer"], s["direction"]) for s in states] == [
        (k, d) for k in range(cfg["num_layers"]) for d in directions]
    n, H = len(out["ids"]), cfg["units"]
    for s in states:
        assert set(s) == {"layer", "direction", *STATES}
        for name in STATES:
            assert np.shape(s[name]) == (n, H), name
        # In the direction's own reading order: the backward one reads the steps from the last.
        i, f, g, o, c, h = (np.array(s[name])[::1 if s["direction"] == "forward" else -1] for name in STATES)
        assert np.all((0 < i) & (i < 1)) and np.all((0 < f) & (f < 1)) and np.all(np.abs(g) < 1)
        np.testing.assert_allclose(h, o * np.tanh(c), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(c[1:], f[1:] * c[:-1] + i[1:] * g[1:], rtol=1e-12, atol=1e-15)
    # The first layer's forward direction, run again step by step on the words' own vectors.
    ids = np.asarray(out["ids"])
    if not cfg["mask_zero"]:
        ids = np.concatenate([np.zeros(config.maxlen - len(ids), int), ids])
    x = embedded(first, ids).astype(np.float64)[None]
    hs, cache = lstm_forward(x, *(w.astype(np.float64) for w in first.rnns[0].weights[:3]))
    np.testing.assert_allclose(states[0]["h"], hs[0, -n:], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(states[0]["f"], np.stack([s.f[0] for s in cache.steps])[-n:], rtol=1e-12)


@pytest.mark.parametrize("kind", ["last", "tutorial", "bidirectional-max", "bigram"])
def test_the_word_that_decides_gets_the_largest_attribution(kind, runs):
    model, vocab, config = RunDir(runs / kind).load_model()
    for word, sign in (("great", 1), ("awful", -1)):
        text = f"the movie plot {word} scene story actor music"
        ins = inspect_review(model, vocab, config, text)
        assert sign * ins.logit > 0, (word, ins.probability)
        tokens = ins.reading.tokens
        top = int(np.argmax(np.abs(ins.attributions)))
        assert tokens[top] == word, (tokens, ins.attributions)
        assert np.sign(ins.attributions[top]) == sign == np.sign(ins.occlusion[top])


def test_the_attributions_account_for_the_pair_table(runs):
    """A model trained with --bigram-buckets reads x_t = E[w_t] + G[bucket(w_{t-1}, w_t)]: the
    words' attributions are over the whole x_t, so zeroing G (the model it started as, in that
    part) changes them; both add up to their own model's logit change."""
    model, vocab, config = RunDir(runs / "bigram").load_model()
    assert np.abs(model.embedding.bigram_table).max() > 0.01          # training moved the table
    text = "the movie plot great scene story actor music"
    with_pairs = inspect_review(model, vocab, config, text)
    ids = with_pairs.ids
    np.testing.assert_allclose(with_pairs.logit, model.forward(ids[None])[0][0], rtol=1e-6)
    assert lstm_internals(model, ids).logit == pytest.approx(with_pairs.logit, rel=1e-5, abs=1e-6)
    model.embedding.bigram_table[...] = 0.0
    without = inspect_review(model, vocab, config, text)
    assert without.reading.tokens == with_pairs.reading.tokens
    for ins in (with_pairs, without):
        assert ins.completeness_error < 0.01
    assert abs(without.logit - with_pairs.logit) > 1e-3
    assert np.abs(without.attributions - with_pairs.attributions).max() > 1e-3
    np.testing.assert_allclose(with_pairs.attributions.sum(), with_pairs.logit - with_pairs.baseline_logit,
                               rtol=0.01)


def test_reading_shows_what_the_preprocessing_did():
    vocab = Vocabulary(6).fit(["good film good plot film bad"])     # good film bad plot
    config = TrainConfig(vocab_size=6, maxlen=3, oov="skip")
    reading = read_review("The good film is not bad, zebra plot-good!", vocab, config)
    assert reading.words == ["the", "good", "film", "is", "not", "bad", "zebra", "plot", "good"]
    assert reading.status == [STOPWORD, CUT, CUT, STOPWORD, STOPWORD, READ, SKIPPED, READ, READ]
    assert reading.tokens == ["bad", "plot", "good"]
    assert reading.ids.tolist() == encode(["The good film is not bad, zebra plot-good!"], vocab, config)[0].tolist()
    config = TrainConfig(vocab_size=6, maxlen=10, oov="keep", keep_negations=True)
    reading = read_review("The good film is not bad, zebra", vocab, config)
    assert reading.status == [STOPWORD, READ, READ, STOPWORD, UNKNOWN, READ, UNKNOWN]
    padded = encode(["The good film is not bad, zebra"], vocab, config)[0]
    assert reading.ids.tolist() == padded[padded != 0].tolist()


@pytest.mark.parametrize("kwargs", [dict(), dict(mask_zero=True, num_layers=2),
                                    dict(bidirectional=True, pooling="max", num_layers=2, mask_zero=True),
                                    dict(bidirectional=True, pooling="mean"), dict(bidirectional=True),
                                    dict(bigram_buckets=5), dict(mask_zero=True, bigram_buckets=5)])
def test_the_reference_internals_agree_with_the_model(kwargs):
    """The reference run layer by layer gives the model's logit, and its backward, chained through
    the layers and directions, the model's own d logit / d x (backward_vectors)."""
    model = random_model(**kwargs)
    ids = np.array([0, 0, 3, 7, 1, 11, 4]) if not model.config["mask_zero"] else np.array([3, 7, 1, 11, 4])
    x = embedded(model, ids)[None]
    mask = ids[None] != 0 if model.config["mask_zero"] else None
    logits, cache = model.forward_vectors(x, mask)
    dx, _ = model.backward_vectors(np.ones(1), cache)
    internals = lstm_internals(model, ids)
    assert internals.logit == pytest.approx(float(logits[0]), rel=1e-12)
    np.testing.assert_allclose(internals.dx, dx[0], rtol=1e-9, atol=1e-12)
    if internals.step_logits is not None:
        assert internals.step_logits[-1] == pytest.approx(internals.logit, rel=1e-12)
    views = [(v.layer, v.direction) for v in internals.views]
    directions = ["forward", "backward"] if model.config["bidirectional"] else ["forward"]
    assert views == [(k, d) for k in range(model.config["num_layers"]) for d in directions]


def test_backward_vectors_is_the_gradient_of_forward_vectors():
    model = random_model(mask_zero=True, pooling="mean", num_layers=2)
    ids = np.array([[0, 0, 3, 5], [2, 7, 1, 4]])
    x = model.embedding.embeddings[ids]
    dlogits = np.array([0.7, -1.3])
    _, cache = model.forward_vectors(x, ids != 0)
    dx, _ = model.backward_vectors(dlogits, cache)
    f = lambda: model.forward_vectors(x, ids != 0)[0]  # noqa: E731
    assert check_gradient(f, x, dlogits, dx) < 1e-6


@pytest.mark.parametrize("pooling", ["last", "max"])
def test_cell_state_gradient_by_central_differences(pooling):
    """d logit / d c_t of the internals against perturbing c_t and running the later steps again."""
    model = random_model(pooling=pooling)
    ids = np.array([3, 7, 1, 11, 4, 2])
    view = lstm_internals(model, ids).views[0]
    kernel, recurrent_kernel, bias = model.rnns[0].weights
    x = model.embedding.embeddings[ids][None]
    _, cache = lstm_forward(x, kernel, recurrent_kernel, bias)
    hs_before = np.stack([s.o * s.tanh_c for s in cache.steps], axis=1)    # (1, T, H)

    for t in range(len(ids)):
        c_t = cache.steps[t].c.copy()

        def logit():
            h, c = cache.steps[t].o * np.tanh(c_t), c_t
            hs = [hs_before[:, s] for s in range(t)] + [h]
            for s in range(t + 1, len(ids)):
                h, c, _ = lstm_step_forward(x[:, s], h, c, kernel, recurrent_kernel, bias)
                hs.append(h)
            hs = np.stack(hs, axis=1)
            pooled = hs[:, -1] if pooling == "last" else hs.max(axis=1)
            return model.dense.forward(pooled)[0][:, 0]

        assert check_gradient(logit, c_t, np.ones(1), view.dc[t][None]) < 1e-6, t


def test_integrated_gradients_are_complete_and_zero_on_padding():
    model = random_model()
    ids = np.array([0, 0, 3, 7, 1, 11, 4])
    ig = integrated_gradients(model, ids, steps=64)
    assert ig.completeness_error < 1e-3
    assert np.all(ig.attributions[:2] == 0)
    logits = model.forward(np.stack([ids, np.zeros_like(ids)]))[0]
    assert ig.logit == pytest.approx(float(logits[0]), rel=1e-12)
    # The baseline zeroes the words' vectors; padding (id 0) keeps its own.
    x = model.embedding.embeddings[ids].copy()
    x[2:] = 0.0
    assert ig.baseline_logit == pytest.approx(float(model.forward_vectors(x[None])[0][0]), rel=1e-12)
    # An ensemble's attributions are the mean of its members'.
    other = random_model(seed=1)
    both = integrated_gradients(Ensemble([model, other]), ids, steps=64)
    alone = integrated_gradients(other, ids, steps=64)
    np.testing.assert_allclose(both.attributions, (ig.attributions + alone.attributions) / 2, rtol=1e-9)
    assert both.logit == pytest.approx((ig.logit + alone.logit) / 2, rel=1e-12)


def test_steps_double_until_the_error_is_small():
    model = random_model(pooling="max", bidirectional=True)
    ids = np.array([3, 7, 1, 11, 4, 9, 2, 5])
    coarse = integrated_gradients(model, ids, steps=2, tolerance=0.0, max_steps=2)
    fine = integrated_gradients(model, ids, steps=2, tolerance=1e-4)
    assert fine.completeness_error < 1e-4 < coarse.completeness_error
    assert fine.steps > 2


def test_errors_page_lists_the_most_confident_mistakes(tree, tmp_path):
    run = tmp_path / "weak"                     # one epoch: it makes mistakes
    assert main(["train", "--data", str(tree), "--out", str(run), "--epochs", "1", *TINY]) == 0
    code, stdout, err = run_cli("inspect", run, "--errors", "3", "--json", "--out", tmp_path / "page")
    assert code == 0, err
    errors = json.loads(stdout)["errors"]
    assert 1 <= len(errors) <= 3
    confidence = [abs(e["probability"] - 0.5) for e in errors]
    assert confidence == sorted(confidence, reverse=True)
    model, vocab, config = RunDir(run).load_model()
    from numpy_lstm.data import load_imdb
    test = load_imdb(str(tree), split="test")
    p = model.predict(encode(test.texts, vocab, config))
    wrong = (p > 0.5) != (test.labels == 1)
    assert np.sort(np.abs(p[wrong] - 0.5))[::-1][:len(errors)] == pytest.approx(confidence, abs=1e-6)
    for e in errors:
        assert set(e) == KEYS | {"label", "index"}
        assert (e["probability"] > 0.5) != (e["label"] == 1)
        assert e["text"] == test.texts[e["index"]]
    page = (tmp_path / "page" / "errors.html").read_text()
    truth = "positive" if errors[0]["label"] == 1 else "negative"
    p = errors[0]["probability"]
    shown = f"{p:.2f}" if 0.01 <= p <= 0.99 else f"{p:.4f}"
    assert f"Test review {errors[0]['index']}: true label: {truth}; the model: P(positive) = {shown}</h2>" in page


def test_text_from_standard_input(runs, tmp_path):
    code, stdout, err = run_cli("inspect", runs / "last", "--out", tmp_path, stdin="a great\nmovie\n")
    assert code == 0, err
    assert stdout.split("\t")[1] == "positive" and stdout.strip().endswith("report.html")


@pytest.mark.parametrize("args, message", [
    (["{empty}", "great film"], "not a numpy-lstm run directory"),
    (["{run}", ""], "the review text is empty"),
    (["{run}", "the and of it"], "no word of the review reaches the model"),
    (["{run}", "great", "--errors", "2"], "not both"),
    (["{run}", "--errors", "0"], "--errors must be a positive integer"),
    (["{run}", "--errors", "1001"], "--errors must be a positive integer, at most 1,000, got 1001"),
])
def test_bad_input_gets_one_line(args, message, runs, tmp_path):
    (tmp_path / "empty").mkdir()
    args = [a.format(empty=tmp_path / "empty", run=runs / "last") for a in args]
    code, _, err = run_cli("inspect", *args, "--out", tmp_path / "page")
    assert code == 2 and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("out", ["notes.txt", "notes.txt/sub", "link", "link/sub"])
@pytest.mark.parametrize("errors", [False, True])
def test_out_at_a_file_of_the_users_is_one_line(out, errors, runs, tmp_path):
    """--out naming a file of the user's (or a path under one, or a link to one): refused in one
    line before any work, and the file is as it was."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    (tmp_path / "link").symlink_to(notes)
    args = ["--errors", "2"] if errors else ["great film"]
    code, _, err = run_cli("inspect", runs / "last", *args, "--out", tmp_path / out)
    refusal = "is a symbolic link, which numpy-lstm does not follow" if out == "link" else "is not a folder"
    assert code == 2 and f"{refusal}: choose another --out" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert notes.read_text() == "mine\n" and (tmp_path / "link").is_symlink()


@pytest.mark.parametrize("kind", ["file", "link", "folder"])
@pytest.mark.parametrize("errors", [False, True])
def test_a_page_of_the_users_is_never_replaced(kind, errors, runs, tmp_path):
    """--out on a folder of the user's: a report.html (errors.html) there that numpy-lstm did not
    write, or a link or folder by that name, is left as it was, in one line; a page of ours is
    written again."""
    out = tmp_path / "mine"
    out.mkdir()
    name = "errors.html" if errors else "report.html"
    target = tmp_path / "notes.txt"
    target.write_text("my notes")
    {"file": lambda: (out / name).write_text("<html>my own page</html>"),
     "link": lambda: (out / name).symlink_to(target),
     "folder": lambda: (out / name).mkdir()}[kind]()
    before = sorted(os.listdir(out))
    args = ["inspect", runs / "last", *(["--errors", "2"] if errors else ["a great movie"]), "--out", out]
    code, _, err = run_cli(*args)
    assert code == 2 and f"{out / name} exists and is not a page numpy-lstm wrote" in err, err
    assert err.count("\n") == 1 and sorted(os.listdir(out)) == before and target.read_text() == "my notes"
    if kind == "file":
        assert (out / name).read_text() == "<html>my own page</html>"
        (out / name).unlink()
        assert run_cli(*args)[0] == 0 and "numpy-lstm" in (out / name).read_text()
        code, _, err = run_cli(*args)                     # our own page: written again
        assert code == 0, err


def test_the_page_needs_no_matplotlib(runs, tmp_path, monkeypatch, capsys):
    """The README's plain install has no matplotlib: the page is whole without it."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)       # import matplotlib now fails
    assert main(["inspect", str(runs / "tutorial"), "great movie", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("\n") == 1            # the verdict's line, and nothing left out
    page = (tmp_path / "report.html").read_text()
    assert "matplotlib" not in page and os.listdir(tmp_path) == ["report.html"]
    for figure in ("running", "attributions", "occlusion", "gradients", "states-0"):
        assert f"id='{figure}'" in page
    data = page_data(page)
    assert data["running"] and data["attributions"] and data["views"][0]["states"]["g"]


@pytest.mark.parametrize("punctuation", [False, True])
def test_word_spans_trace_the_cleaning(punctuation):
    """Each word the cleaning makes, with the characters of the text as written it came from."""
    from numpy_lstm.text import preprocess_reviews, word_spans

    texts = ["Don't stop -- it's GREAT!<br /><br />Well-known.", "one<br  /><br\t/>two", "good\tfilm  ",
             "a & b &amp; -- // (the) [best]", "end.Next cash$$ $_$ {x} \\back 100% snake_case", "", "İstanbul"]
    for text in texts:
        spans = word_spans(text, punctuation)
        cleaned = preprocess_reviews([text], keep_stopwords=True, punctuation=punctuation)[0]
        assert [w for w, _, _ in spans] == (cleaned.split(" ") if cleaned else [])
        for word, start, end in spans:
            assert preprocess_reviews([text[start:end]], keep_stopwords=True, punctuation=punctuation)[0] == word
    assert [text[a:b] for text in ["It's GREAT-ish!"] for _, a, b in word_spans(text)] == ["It's", "GREAT", "ish"]
