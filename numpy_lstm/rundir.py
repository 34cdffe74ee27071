"""A run directory on disk: its files, checkpoints, history and curves.

    config.json      every setting of the run (enough to rebuild the model and the data)
    vocab.json       the vocabulary fitted on the training part
    checkpoint.npz   after every epoch: weights, optimizer state, RNG state, history
    model.npz        the final model (the best epoch's weights with early stopping)
    history.csv      loss and accuracy per epoch, training and held-out
    metrics.json     held-out and official-test accuracy, timings, seed, recipe
    curves.png       loss and accuracy curves (when matplotlib is installed)
    model-K/         with --ensemble N > 1: checkpoint, model, history and curves of model K

Every file is written atomically.
"""
import csv
import dataclasses
import io
import json
import os

import numpy as np

from .config import TrainConfig
from .errors import NumpyLSTMError
from .fileio import atomic_path, write_text
from .model import Ensemble, SentimentLSTM
from .text import Vocabulary


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

    def save_config(self, config):
        write_text(self.file("config.json"), json.dumps(dataclasses.asdict(config), indent=2) + "\n")

    def save_metrics(self, metrics):
        write_text(self.file("metrics.json"), json.dumps(metrics, indent=2) + "\n")

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
