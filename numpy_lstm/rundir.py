"""A run directory on disk: its files, checkpoints, history and curves.

    config.json      every setting of the run (enough to rebuild the model and the data)
    vocab.json       the vocabulary fitted on the training part
    checkpoint.npz   after every epoch: weights, optimizer state, RNG state, history; written mid-epoch
                     too when the run is stopped (SIGTERM, Ctrl-C) or its worker processes keep
                     dying, with its place in the epoch
    model.npz        the final model (the best epoch's weights with early stopping)
    ngrams.npz       with --ngrams N: the n-gram view and its mix with the LSTM (numpy_lstm/ngrams.py)
    history.csv      loss and accuracy per epoch, training and held-out
    metrics.json     held-out and official-test accuracy, timings, seed, recipe
    curves.png       loss and accuracy curves (when matplotlib is installed)
    model-K/         with --ensemble N > 1: checkpoint, model, history and curves of model K
    student/         with --student: checkpoint, model, history and curves of the student LSTM (the
                     LSTM beside the n-gram view in the final model)
    train.lock       locked by the `train` command working in the directory (its pid inside)

Every file is written atomically.
"""
import contextlib
import csv
import dataclasses
import glob
import io
import json
import os
import zipfile

import numpy as np

from .config import FIRST_SETTINGS, TrainConfig
from .errors import NumpyLSTMError
from .fileio import atomic_path, refused_as_write_error, write_text
from .model import Ensemble, SentimentLSTM
from .ngrams import TwoViews, load_ngrams
from .text import Vocabulary

try:
    import fcntl
except ImportError:        # not POSIX: runs are not locked
    fcntl = None

_held_locks = set()        # descriptors of the run locks this process holds


def _close_held_locks():
    """In a forked child (an LSTM worker): close the inherited lock descriptors, so that the lock
    goes with the process that took it (closing, unlike unlocking, leaves the parent's lock held)."""
    for fd in _held_locks:
        os.close(fd)
    _held_locks.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_locks)


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

    def trained(self):
        """True when training has written a checkpoint or a model here (in any model-K/)."""
        return any(glob.glob(self.file(os.path.join(member, name)))
                   for member in ("", "model-*") for name in ("checkpoint.npz", "model.npz"))

    def how_to_continue(self):
        """The command that continues an unfinished run here."""
        if os.path.exists(self.file("config.json")):
            return f"continue with: numpy-lstm train --resume {self.path}"
        return "run the same command again"

    @contextlib.contextmanager
    def locked(self):
        """Hold the directory's lock for the block: a second `train` on it is refused at once.

        An flock on train.lock: the kernel releases it when the holder's process ends, however it
        ends, so the lock of a killed run is free for its --resume.
        """
        path = self.file("train.lock")
        if fcntl is None:
            yield
            return
        with refused_as_write_error(path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise NumpyLSTMError(f"{self.path} is in use by another numpy-lstm train (pid {holder}); "
                                     f"wait for it to end, or choose another --out") from None
            with refused_as_write_error(path):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            _held_locks.add(fd)
            yield
        finally:
            _held_locks.discard(fd)
            os.close(fd)

    def save_config(self, config):
        write_text(self.file("config.json"), json.dumps(dataclasses.asdict(config), indent=2) + "\n")

    def save_metrics(self, metrics):
        write_text(self.file("metrics.json"), json.dumps(metrics, indent=2) + "\n")

    def load_config(self):
        """The run's TrainConfig. A setting missing from an older run's config.json takes its default,
        which is what runs did before the setting existed; one of FIRST_SETTINGS missing, or a
        setting this version does not know, is a one-line error."""
        self.require("config.json")
        path = self.file("config.json")
        try:
            with open(path, encoding="utf-8") as f:
                settings = json.load(f)
        except (OSError, ValueError) as e:
            raise NumpyLSTMError(f"{path} is not a readable run config: {e}") from None
        if not isinstance(settings, dict):
            raise NumpyLSTMError(f"{path} is not a run config (not a JSON object)")
        known = {field.name for field in dataclasses.fields(TrainConfig)}
        missing = [name for name in FIRST_SETTINGS if name not in settings]
        unknown = sorted(set(settings) - known)
        if missing or unknown:
            problem = (f"lacks {', '.join(missing)}" if missing else "") + ("; " if missing and unknown else "") + \
                (f"has settings this version does not know: {', '.join(unknown)}" if unknown else "")
            raise NumpyLSTMError(f"{path} {problem} (written by another version of numpy-lstm, or edited?); "
                                 f"this version cannot tell how the run was made")
        return TrainConfig(**settings).validate()

    @staticmethod
    def member_dir(k, ensemble):
        """Subdirectory of model k of an ensemble of `ensemble`: none when it is the only model."""
        return "" if ensemble == 1 else f"model-{k + 1}"

    def member(self, k, ensemble):
        return self if ensemble == 1 else RunDir(self.file(self.member_dir(k, ensemble)))

    def student(self):
        return RunDir(self.file("student"))

    def load_model(self):
        """(model, vocab, config) of a finished run; an Ensemble when it trained several models, and
        a TwoViews when it has an n-gram view (ngrams.npz), its LSTM the student with --student."""
        config = self.load_config()
        names = ([os.path.join("student", "model.npz")] if config.student else
                 [os.path.join(self.member_dir(k, config.ensemble), "model.npz") for k in range(config.ensemble)])
        self.require("vocab.json", *names)
        models = [SentimentLSTM.load(self.file(name)) for name in names]
        vocab = Vocabulary.load(self.file("vocab.json"))
        for name, m in zip(names, models):
            rows = len(m.embedding.embeddings)
            if len(vocab) > rows:
                raise NumpyLSTMError(f"{self.file('vocab.json')} has {len(vocab)} ids but {self.file(name)} "
                                     f"embeds {rows}: the two are not from the same run")
        model = models[0] if len(models) == 1 else Ensemble(models)
        if config.ngrams:
            self.require("ngrams.npz")
            model = TwoViews(model, *load_ngrams(self.file("ngrams.npz")))
        return model, vocab, config


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
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise NumpyLSTMError(f"{path} is not a readable checkpoint (truncated or corrupt?): "
                             f"{type(e).__name__}") from None
    model.set_weights(weights)  # a shape mismatch with the run's config is a NumpyLSTMError
    try:
        optimizer.load_state({"iterations": state["iterations"], "m": m, "v": v})
        rng.bit_generator.state = state["rng"]
    except (KeyError, TypeError, ValueError) as e:
        raise NumpyLSTMError(f"{path} is not a readable checkpoint (its state is damaged): "
                             f"{type(e).__name__}") from None
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
