"""The tutorial's experiment end to end: data -> vocabulary -> padded ids -> training -> metrics.

A run lives in one directory:

    config.json      every setting of the run (enough to rebuild the model and the data)
    vocab.json       the vocabulary fitted on the training part
    checkpoint.npz   after every epoch: weights, optimizer state, RNG state, history
    model.npz        the final model (the best epoch's weights with early stopping)
    history.csv      loss and accuracy per epoch, training and held-out
    metrics.json     held-out and official-test accuracy, timings, seed, recipe
    curves.png       loss and accuracy curves (when matplotlib is installed)

Every file is written atomically, and `fit(..., resume=True)` continues from the last
checkpoint to exactly the weights and metrics an uninterrupted run ends with.
"""
import csv
import dataclasses
import io
import json
import os
import time
from typing import Optional

import numpy as np

from .data import load_imdb, train_test_split
from .errors import MissingSplitError, NumpyLSTMError
from .fileio import atomic_path, write_text
from .losses import binary_crossentropy
from .model import Ensemble, SentimentLSTM
from .optimizers import Adam, clip_by_global_norm
from .progress import ProgressBar, format_metrics
from .text import Vocabulary, pad_sequences, preprocess_reviews
from .wordvectors import ppmi_svd_vectors


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a run. Recipes (RECIPES) fill these in; flags override them."""

    recipe: str = "tutorial"
    data: Optional[str] = None          # dataset path; None: NUMPY_LSTM_DATA, then the cache
    per_class: Optional[int] = 500      # first N positive and N negative training reviews
    val_split: float = 0.2              # held-out fraction of those reviews
    keep_negations: bool = False        # keep not/no/nor and n't forms through stopword removal
    keep_stopwords: bool = False        # no stopword removal at all
    vocab_size: int = 500               # embedding rows, counting padding (0) and OOV (1)
    maxlen: int = 500                   # pad / truncate to this many tokens (Keras "pre")
    oov: str = "keep"                   # unknown words: "keep" as id 1, or "skip" them
    min_films: int = 1                  # vocabulary words must occur in reviews of this many films (a film
                                        # name or plot word is not sentiment on other films)
    embed_dim: int = 32
    nb_init: float = 0.0                # > 0: embedding column 0 starts as this times log_count_ratio
    ppmi_init: float = 0.0              # > 0: the other columns start as PPMI-SVD word vectors of this std
    units: int = 100
    mask: bool = False                  # mask padding (Keras mask_zero) and bucket batches by length
    dropout: float = 0.0                # LSTM input dropout, one mask per sequence
    recurrent_dropout: float = 0.0      # dropout on h_{t-1} in the recurrent matmul, one mask per sequence
    word_dropout: float = 0.0           # drop whole tokens' embeddings
    pooling: str = "last"               # Dense reads the last state, or the mean / max over time
    num_layers: int = 1                 # stacked LSTMs
    bidirectional: bool = False         # each LSTM reads forward and backward
    implementation: str = "fast"        # the LSTM's "fast" engine or the plain "reference"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "constant"       # or "linear": warm up over epoch 1, decay to 0 at the end
    clipnorm: Optional[float] = None    # clip gradients by global norm
    patience: Optional[int] = None      # early stopping on held-out loss, restoring the best epoch
    seed: int = 0
    ensemble: int = 1                   # train this many models (seeds differ) and average their logits
    test_limit: Optional[int] = None    # evaluate on a seeded, balanced subset of the test set

    def validate(self):
        positive = {"vocab_size": self.vocab_size, "maxlen": self.maxlen, "embed_dim": self.embed_dim,
                    "units": self.units, "epochs": self.epochs, "batch_size": self.batch_size,
                    "num_layers": self.num_layers, "min_films": self.min_films,
                    "ensemble": self.ensemble}
        for name in ("per_class", "patience", "test_limit"):
            if getattr(self, name) is not None:
                positive[name] = getattr(self, name)
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise NumpyLSTMError(f"{name} must be a positive integer, got {value!r}")
        if self.vocab_size < 3:
            raise NumpyLSTMError(f"vocab_size must be at least 3 (ids 0 and 1 are reserved), got {self.vocab_size}")
        if not self.lr > 0:
            raise NumpyLSTMError(f"lr must be positive, got {self.lr!r}")
        if self.oov not in ("keep", "skip"):
            raise NumpyLSTMError(f"oov must be keep or skip, got {self.oov!r}")
        if self.lr_schedule not in ("constant", "linear"):
            raise NumpyLSTMError(f"lr_schedule must be constant or linear, got {self.lr_schedule!r}")
        if self.clipnorm is not None and not self.clipnorm > 0:
            raise NumpyLSTMError(f"clipnorm must be positive, got {self.clipnorm!r}")
        if not 0.0 < self.val_split < 1.0:
            raise NumpyLSTMError(f"val_split must be between 0 and 1, got {self.val_split!r}")
        if not self.ppmi_init >= 0:
            raise NumpyLSTMError(f"ppmi_init must be 0 (off) or positive, got {self.ppmi_init!r}")
        if self.ppmi_init and not 1 <= self.embed_dim - bool(self.nb_init) <= self.vocab_size:
            raise NumpyLSTMError("ppmi_init needs embedding columns besides the naive Bayes one, "
                                 "and no more of them than vocabulary ids")
        for name in ("dropout", "recurrent_dropout", "word_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise NumpyLSTMError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.pooling not in ("last", "mean", "max"):
            raise NumpyLSTMError(f"pooling must be last, mean or max, got {self.pooling!r}")
        if self.implementation not in ("fast", "reference"):
            raise NumpyLSTMError(f"implementation must be fast or reference, got {self.implementation!r}")
        return self


# The tutorial as written, our best recipe on the same 1,000 reviews, and the recipe for all 25,000
# training reviews (README: Results).
RECIPES = {
    "tutorial": {},
    "tuned": {"val_split": 0.1, "keep_negations": True, "vocab_size": 2000, "min_films": 5, "oov": "skip",
              "mask": True, "nb_init": 4.0, "embed_dim": 64, "units": 64, "dropout": 0.3, "epochs": 30, "lr": 1e-3,
              "patience": 4},
    "full": {"per_class": None, "val_split": 0.1, "keep_negations": True, "vocab_size": 20000, "min_films": 5,
             "oov": "skip", "mask": True, "nb_init": 4.0, "ppmi_init": 0.2, "embed_dim": 64, "units": 64,
             "bidirectional": True, "pooling": "max", "dropout": 0.5, "epochs": 3, "lr": 2e-3,
             "lr_schedule": "linear", "patience": 2},
}


def recipe_config(recipe, **overrides):
    """TrainConfig of a named recipe, with the non-None overrides applied."""
    if recipe not in RECIPES:
        raise NumpyLSTMError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    settings = {**RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(recipe=recipe, **settings).validate()


def encode(texts, vocab, config):
    """Raw reviews -> padded ids (N, maxlen) int32, with the run's preprocessing."""
    return encode_cleaned(preprocess_reviews(texts, config.keep_negations, config.keep_stopwords), vocab, config)


def encode_cleaned(cleaned, vocab, config):
    """Cleaned reviews -> padded ids (N, maxlen) int32; with oov="skip" unknown words are dropped."""
    ids = vocab.encode(cleaned)
    if config.oov == "skip":
        ids = [s[s != vocab.OOV] for s in ids]
    return pad_sequences(ids, maxlen=config.maxlen)


def log_count_ratio(x, y, vocab_size, alpha=1.0):
    """Naive Bayes log-count ratio of every word id in reviews x (N, T) with labels y (N,): (V,).

    r_w = log((p_w / sum p) / (q_w / sum q)), where p_w (q_w) is alpha plus the number of
    positive (negative) reviews that contain w (Wang & Manning, 2012): > 0 for words of praise,
    < 0 for words of blame. Padding and OOV get 0.
    """
    rows = np.repeat(np.arange(len(x)), x.shape[1])
    review, word = np.divmod(np.unique(rows * vocab_size + x.ravel()), vocab_size)  # each pair once
    positive = y[review] == 1
    p = alpha + np.bincount(word[positive], minlength=vocab_size)
    q = alpha + np.bincount(word[~positive], minlength=vocab_size)
    p[:2] = q[:2] = 0  # padding and OOV are not words: no share of the counts, no polarity
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log((p / p.sum()) / (q / q.sum()))
    r[:2] = 0.0
    return r


def prepare_data(config):
    """Load, clean, split (seeded, stratified) and encode the training reviews.

    The vocabulary is fitted on the training part only (the tutorial fitted it before the split,
    so its held-out reviews leaked into the word counts). Returns (vocab, x_train, y_train,
    x_val, y_val).
    """
    data = load_imdb(config.data, split="train", per_class=config.per_class)
    cleaned = preprocess_reviews(data.texts, config.keep_negations, config.keep_stopwords)
    # A review of unknown film (data without urls_pos.txt / urls_neg.txt) counts as a film of its own.
    films = np.where(data.films == "", np.char.add("review-", np.arange(len(cleaned)).astype(str)), data.films)
    train, val = train_test_split(np.arange(len(cleaned)), test_size=config.val_split, seed=config.seed,
                                  stratify=data.labels)
    train_texts, val_texts = [cleaned[i] for i in train], [cleaned[i] for i in val]
    y_train, y_val = data.labels[train], data.labels[val]
    vocab = Vocabulary(config.vocab_size).fit(train_texts, groups=films[train], min_groups=config.min_films)
    x_train = encode_cleaned(train_texts, vocab, config)
    x_val = encode_cleaned(val_texts, vocab, config)
    return vocab, x_train, np.asarray(y_train), x_val, np.asarray(y_val)


def batch_order(lengths, batch_size, rng, bucket):
    """Index arrays of one epoch's batches, shuffled by rng.

    With bucket, each batch holds reviews of similar length (sorted within windows of 32
    batches, then the batches shuffled), so under masking a batch runs only as many steps as
    its longest review instead of maxlen.
    """
    order = rng.permutation(len(lengths))
    if bucket:
        window = 32 * batch_size
        for start in range(0, len(order), window):
            chunk = order[start:start + window]
            order[start:start + window] = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if bucket:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def evaluate(model, x, y, batch_size=64):
    """(mean loss, accuracy) over (x, y).

    Rows run in length order, which the mask turns into speed; small batches keep the forward
    caches (about 1.5 MB per row at 500 steps and 100 units) from setting the peak memory.
    """
    if len(x) == 0:
        return float("nan"), float("nan")
    order = np.argsort((x != 0).sum(axis=1), kind="stable")
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        idx = order[start:start + batch_size]
        logits, _ = model.forward(x[idx])
        loss, _ = binary_crossentropy(logits, y[idx])
        loss_sum += loss * len(idx)
        correct += int(np.sum((logits > 0) == (y[idx] == 1)))
    return loss_sum / len(x), correct / len(x)


def load_test_set(config, vocab):
    """Official test reviews as (x, y), the seeded balanced subset with test_limit; None if absent."""
    try:
        data = load_imdb(config.data, split="test")
    except MissingSplitError:
        return None
    texts, labels = data.texts, np.asarray(data.labels)
    if config.test_limit is not None and config.test_limit < len(texts):
        _, texts, _, labels = train_test_split(texts, labels, test_size=config.test_limit,
                                               seed=config.seed, stratify=labels)
    return encode(texts, vocab, config), np.asarray(labels)


class RunDir:
    """Paths of a run directory, and its checks."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def file(self, name):
        return os.path.join(self.path, name)

    def require(self, *names):
        missing = [n for n in names if not os.path.exists(self.file(n))]
        if not os.path.isdir(self.path):
            raise NumpyLSTMError(f"{self.path} is not a directory (expected a numpy-lstm run directory)")
        if missing:
            raise NumpyLSTMError(f"{self.path} is not a numpy-lstm run directory (no {missing[0]})")

    def load_config(self):
        self.require("config.json")
        try:
            with open(self.file("config.json"), encoding="utf-8") as f:
                return TrainConfig(**json.load(f)).validate()
        except (ValueError, TypeError) as e:
            raise NumpyLSTMError(f"{self.file('config.json')} is not a valid run config: {e}") from None

    @staticmethod
    def member_dir(k, ensemble):
        """Subdirectory of model k of an ensemble of `ensemble`: none when it is the only model."""
        return "" if ensemble == 1 else f"model-{k + 1}"

    def member(self, k, ensemble):
        return self if ensemble == 1 else RunDir(self.file(self.member_dir(k, ensemble)))

    def load_model(self):
        """(model, vocab, config) of a finished run; an Ensemble when it trained several models."""
        config = self.load_config()
        names = [os.path.join(self.member_dir(k, config.ensemble), "model.npz") for k in range(config.ensemble)]
        self.require("vocab.json", *names)
        models = [SentimentLSTM.load(self.file(name)) for name in names]
        model = models[0] if config.ensemble == 1 else Ensemble(models)
        return model, Vocabulary.load(self.file("vocab.json")), config


def build_model(config, rng):
    return SentimentLSTM(vocab_size=config.vocab_size, embed_dim=config.embed_dim, units=config.units,
                         mask_zero=config.mask, dropout=config.dropout, pooling=config.pooling,
                         num_layers=config.num_layers, bidirectional=config.bidirectional, seed=rng,
                         recurrent_dropout=config.recurrent_dropout, word_dropout=config.word_dropout,
                         implementation=config.implementation)


def save_checkpoint(path, model, optimizer, rng, state, best_weights):
    """Everything needed to continue exactly: weights, Adam's moments, RNG state, history."""
    arrays = {f"weights/{i}": w for i, w in enumerate(model.weights)}
    opt = optimizer.state()
    if opt["m"] is not None:
        arrays.update({f"adam_m/{i}": a for i, a in enumerate(opt["m"])})
        arrays.update({f"adam_v/{i}": a for i, a in enumerate(opt["v"])})
    if best_weights is not None:
        arrays.update({f"best/{i}": w for i, w in enumerate(best_weights)})
    state = {**state, "iterations": opt["iterations"], "rng": rng.bit_generator.state}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, state=np.array(json.dumps(state)), **arrays)


def load_checkpoint(path, model, optimizer, rng):
    """Restore what save_checkpoint wrote; returns (state, best_weights)."""
    n = len(model.weights)
    try:
        with np.load(path, allow_pickle=False) as data:
            state = json.loads(str(data["state"]))
            weights = [data[f"weights/{i}"] for i in range(n)]
            has_adam = "adam_m/0" in data
            m = [data[f"adam_m/{i}"] for i in range(n)] if has_adam else None
            v = [data[f"adam_v/{i}"] for i in range(n)] if has_adam else None
            best = [data[f"best/{i}"] for i in range(n)] if "best/0" in data else None
    except FileNotFoundError:
        raise NumpyLSTMError(f"no checkpoint at {path}: nothing to resume") from None
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise NumpyLSTMError(f"{path} is not a readable checkpoint (truncated or corrupt?): "
                             f"{type(e).__name__}") from None
    model.set_weights(weights)  # a shape mismatch with the run's config is a NumpyLSTMError
    optimizer.load_state({"iterations": state["iterations"], "m": m, "v": v})
    rng.bit_generator.state = state["rng"]
    return state, best


def write_history(path, history):
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(history[0]) if history else ["epoch"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_text(path, out.getvalue())


def plot_curves(path, history):
    """Loss and accuracy per epoch to a PNG; returns False when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, [row[metric] for row in history], "o-", label="training")
        ax.plot(epochs, [row["val_" + metric] for row in history], "o-", label="held-out")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return True


def learning_rate(config, epoch, step, steps_per_epoch):
    """The learning rate of one step (epoch and step count from 1).

    "constant": config.lr throughout. "linear": warm up from 0 over the first epoch, then decay
    linearly to 0 at the last epoch. A function of the step alone, so resuming needs no state.
    """
    if config.lr_schedule == "constant":
        return config.lr
    t = (epoch - 1) * steps_per_epoch + step
    warmup, total = steps_per_epoch, config.epochs * steps_per_epoch
    if t <= warmup:
        return config.lr * t / warmup
    return config.lr * (total - t + 1) / (total - warmup + 1)


def train_epoch(model, optimizer, x, y, batches, config, epoch, rng, bar=None):
    """One optimisation pass over the batches (index arrays); returns (mean loss, accuracy).

    Raises FloatingPointError when the loss stops being finite.
    """
    loss_sum, correct, seen = 0.0, 0, 0
    for b, idx in enumerate(batches, start=1):
        # Overflow shows up below as a non-finite loss, reported in one line instead of warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            logits, cache = model.forward(x[idx], rng)
            loss, dlogits = binary_crossentropy(logits, y[idx])
            grads = model.backward(dlogits, cache)
        if not np.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} at epoch {epoch}, batch {b}")
        if config.clipnorm is not None:
            grads, _ = clip_by_global_norm(grads, config.clipnorm)
        optimizer.learning_rate = learning_rate(config, epoch, b, len(batches))
        optimizer.step(model.weights, grads)
        loss_sum += loss * len(idx)
        correct += int(np.sum((logits > 0) == (y[idx] == 1)))
        seen += len(idx)
        if bar:
            bar.update(b, {"loss": loss_sum / seen, "accuracy": correct / seen})
    return loss_sum / seen, correct / seen


def fit(config, out, resume=False, quiet=False, log=print):
    """Run (or with resume=True, continue) a training run into directory `out`; returns metrics."""
    run = RunDir(out)
    say = (lambda *a, **k: None) if quiet else log
    if resume:
        config = run.load_config()
    else:
        if os.path.exists(run.file("config.json")):
            raise NumpyLSTMError(f"{out} already holds a run; use --resume {out} to continue it, "
                                 f"or choose another --out")
        os.makedirs(out, exist_ok=True)
        write_text(run.file("config.json"), json.dumps(dataclasses.asdict(config), indent=2) + "\n")

    t0 = time.perf_counter()
    vocab, x_train, y_train, x_val, y_val = prepare_data(config)
    if resume and os.path.exists(run.file("vocab.json")):
        if Vocabulary.load(run.file("vocab.json")).word_index != vocab.word_index:
            raise NumpyLSTMError(f"the data no longer gives the vocabulary saved in {out}; "
                                 f"resume with the same --data")
    vocab.save(run.file("vocab.json"))
    say(f"{len(x_train)} training and {len(x_val)} held-out reviews, {len(vocab)} ids in the "
        f"vocabulary, padded to {config.maxlen} ({time.perf_counter() - t0:.1f}s)")

    word_vectors = None
    if config.ppmi_init:
        t0 = time.perf_counter()
        word_vectors = scaled_word_vectors(config, x_train)
        say(f"word vectors from the training reviews' co-occurrences ({time.perf_counter() - t0:.1f}s)")

    models, states = [], []
    for member in range(config.ensemble):
        if config.ensemble > 1:
            say(f"Model {member + 1}/{config.ensemble}")
        model, state = train_model(config, member, run.member(member, config.ensemble),
                                   (x_train, y_train, x_val, y_val), word_vectors, resume, quiet, say)
        models.append(model)
        states.append(state)
    model = models[0] if config.ensemble == 1 else Ensemble(models)
    return finish(run, config, model, vocab, x_val, y_val, states, say)


def scaled_word_vectors(config, x_train):
    """PPMI-SVD vectors (V, embed_dim minus the naive Bayes column) of the training ids x_train,
    scaled to standard deviation config.ppmi_init over the ids that have one."""
    vectors = ppmi_svd_vectors(x_train, config.vocab_size, config.embed_dim - bool(config.nb_init),
                               np.random.default_rng([config.seed, 2]))
    return vectors * (config.ppmi_init / vectors[vectors.any(axis=1)].std())


def init_embedding(embeddings, config, x_train, y_train, word_vectors):
    """Informed starting values for the embedding (V, E), in place.

    With nb_init, column 0 is the naive Bayes log-count ratio times nb_init: one feature that
    already says how positive each word is, so the LSTM's first job is to add it up over the
    review rather than to discover it. With word_vectors, the other columns of the ids that have
    a vector take it (padding, OOV and unseen ids keep their random start).
    """
    if config.nb_init:
        embeddings[:, 0] = config.nb_init * log_count_ratio(x_train, y_train, config.vocab_size)
    if word_vectors is not None:
        known = word_vectors.any(axis=1)
        embeddings[known, int(bool(config.nb_init)):] = word_vectors[known]


def train_model(config, member, run, data, word_vectors, resume, quiet, say):
    """Train one model (member `member` of the ensemble) into `run`; returns (model, state).

    word_vectors: None, or (V, columns) starting values of the embedding's columns after the naive
    Bayes one, for the ids that have them (the others, padding and OOV among them, are zero rows).
    Every epoch ends with an atomic checkpoint, so an interrupted model resumes where it stopped.
    """
    x_train, y_train, x_val, y_val = data
    os.makedirs(run.path, exist_ok=True)
    # Random streams: member 0 keeps those of a single run, seed for the initialisation and
    # (seed, 1) for batch order and dropout; member k > 0 takes (seed, 3, k) and (seed, 1, k). The
    # word vectors use (seed, 2). No two uses share a stream.
    model = build_model(config, np.random.default_rng(config.seed if member == 0 else [config.seed, 3, member]))
    init_embedding(model.embedding.embeddings, config, x_train, y_train, word_vectors)
    optimizer = Adam(learning_rate=config.lr)
    rng = np.random.default_rng([config.seed, 1] + ([member] if member else []))
    state = {"epoch": 0, "history": [], "best_val_loss": None, "best_epoch": None, "wait": 0,
             "stopped_early": False, "train_seconds": 0.0}
    best_weights = None
    if resume and os.path.exists(run.file("checkpoint.npz")):
        state, best_weights = load_checkpoint(run.file("checkpoint.npz"), model, optimizer, rng)
        say(f"resuming {run.path} after epoch {state['epoch']}")
    elif resume:
        say(f"{run.path} stopped before its first checkpoint: starting it from the beginning")

    lengths = (x_train != 0).sum(axis=1)
    while state["epoch"] < config.epochs and not state["stopped_early"]:
        epoch = state["epoch"] + 1
        say(f"Epoch {epoch}/{config.epochs}")
        start = time.perf_counter()
        batches = batch_order(lengths, config.batch_size, rng, bucket=config.mask)
        bar = ProgressBar(len(batches)) if not quiet else None
        try:
            loss, accuracy = train_epoch(model, optimizer, x_train, y_train, batches, config, epoch, rng, bar)
        except FloatingPointError as e:
            kept = (f"the last good checkpoint (epoch {state['epoch']}) is in {run.path}" if state["epoch"]
                    else "no epoch had finished, so there is no checkpoint")
            raise NumpyLSTMError(f"{e}: training stopped; {kept}; try a smaller --lr or --clipnorm") from None
        val_loss, val_accuracy = evaluate(model, x_val, y_val)
        row = {"epoch": epoch, "loss": loss, "accuracy": accuracy, "val_loss": val_loss,
               "val_accuracy": val_accuracy}
        if bar:
            bar.close({k: v for k, v in row.items() if k != "epoch"})
        state["history"].append(row)
        state["train_seconds"] += time.perf_counter() - start
        state["epoch"] = epoch
        if config.patience is not None:
            if state["best_val_loss"] is None or val_loss < state["best_val_loss"]:
                state.update(best_val_loss=val_loss, best_epoch=epoch, wait=0)
                best_weights = model.get_weights()
            else:
                state["wait"] += 1
                if state["wait"] >= config.patience:
                    state["stopped_early"] = True
                    say(f"early stopping: no better held-out loss for {config.patience} epochs; "
                        f"restoring epoch {state['best_epoch']}")
        save_checkpoint(run.file("checkpoint.npz"), model, optimizer, rng, state, best_weights)
        write_history(run.file("history.csv"), state["history"])

    if best_weights is not None:
        model.set_weights(best_weights)
    model.save(run.file("model.npz"))
    state["plotted"] = bool(state["history"]) and plot_curves(run.file("curves.png"), state["history"])
    return model, state


def finish(run, config, model, vocab, x_val, y_val, states, say):
    """Evaluate on the held-out part and the official test set; write metrics.

    states: each model's training state. An ensemble's metrics list its models' epochs.
    """
    start = time.perf_counter()
    per_model = (lambda values: values[0]) if len(states) == 1 else (lambda values: values)
    val_loss, val_accuracy = evaluate(model, x_val, y_val)
    test = load_test_set(config, vocab)
    test_loss, test_accuracy = evaluate(model, *test) if test is not None else (None, None)
    metrics = {
        "recipe": config.recipe, "seed": config.seed,
        "val_accuracy": val_accuracy, "val_loss": val_loss, "val_n": int(len(y_val)),
        "test_accuracy": test_accuracy, "test_loss": test_loss,
        "test_n": int(len(test[1])) if test is not None else 0,
        "epochs_run": per_model([state["epoch"] for state in states]),
        "best_epoch": per_model([state["best_epoch"] for state in states]),
        "train_seconds": round(sum(state["train_seconds"] for state in states), 2),
        "eval_seconds": round(time.perf_counter() - start, 2),
    }
    write_text(run.file("metrics.json"), json.dumps(metrics, indent=2) + "\n")
    say("held-out" + format_metrics({"loss": val_loss, "accuracy": val_accuracy}) + f" ({len(y_val)} reviews)")
    if test is None:
        say("official test set: not in the data, skipped")
    else:
        say("official test" + format_metrics({"loss": test_loss, "accuracy": test_accuracy})
            + f" ({metrics['test_n']} reviews)")
    if not all(state["plotted"] for state in states):
        say("curves.png not written: matplotlib is not installed (pip install 'numpy-lstm[plot]')")
    say(f"run saved in {run.path}")
    return metrics
