"""A trained model's logits, loss and accuracy on a set of reviews, and a run's final metrics."""
import time

import numpy as np

from .losses import binary_crossentropy
from .ngrams import TwoViews, accuracy
from .prepare import load_test_set
from .progress import counting_bar
from .stopping import redo_if_workers_die


def evaluate(model, x, y, batch_size=64, bar=None):
    """(mean loss, accuracy) over (x, y); bar: a progress bar told of each batch's reviews."""
    if len(x) == 0:
        return float("nan"), float("nan")
    loss_sum, correct = 0.0, 0
    for idx, logits in logit_batches(model, x, batch_size):
        loss, _ = binary_crossentropy(logits, y[idx])
        loss_sum += loss * len(idx)
        correct += int(np.sum((logits > 0) == (y[idx] == 1)))
        if bar is not None:
            bar.update(len(idx))
    return loss_sum / len(x), correct / len(x)


def model_logits(model, x, batch_size=64, bar=None):
    """The model's logits (N,) float64 of the reviews x (N, T); bar as evaluate's."""
    logits = np.empty(len(x))
    for idx, batch in logit_batches(model, x, batch_size):
        logits[idx] = batch
        if bar is not None:
            bar.update(len(idx))
    return logits


def logit_batches(model, x, batch_size):
    """(row indices, the model's logits of those rows) of x (N, T), batch after batch, in inference.

    Rows run in length order, which the mask turns into speed; small batches keep the forward
    caches (about 1.5 MB per row at 500 steps and 100 units) from setting the peak memory.
    """
    order = np.argsort((x != 0).sum(axis=1), kind="stable")
    for start in range(0, len(x), batch_size):
        idx = order[start:start + batch_size]
        yield idx, redo_if_workers_die(lambda: model.forward(x[idx])[0], "an evaluation pass")


def run_metrics(config, model, vocab, x_val, y_val, states, extra, quiet=False):
    """The metrics of a finished run: held-out and official test loss and accuracy, epochs, times.

    The official test set is scored under a progress bar on a terminal, unless quiet.

    states: each model's training state, a student's last. An ensemble's metrics list its models'
    epochs. extra: further metrics (the n-gram view's, the student's epochs). test_loss and
    test_accuracy are None when the test set is not read (test_limit 0) or not in the data.
    """
    start = time.perf_counter()
    per_model = (lambda values: values[0]) if config.ensemble == 1 else (lambda values: values[:config.ensemble])
    val_loss, val_accuracy = evaluate(model, x_val, y_val)
    test = load_test_set(config, vocab)
    bar = counting_bar(len(test[1]) if test is not None else 0, "official test set", quiet)
    if test is not None and isinstance(model, TwoViews):
        # Each view's logits once, for the mix and for what each gives alone (reported, not used).
        x_test, y_test = test
        z_lstm, z_view = model_logits(model.model, x_test, bar=bar), model.view.logits(x_test)
        z = model.mixed(z_lstm, z_view)
        test_loss, test_accuracy = binary_crossentropy(z, y_test)[0], accuracy(z, y_test)
        extra = {**extra, "test_accuracy_lstm": accuracy(z_lstm, y_test),
                 "test_accuracy_ngrams": accuracy(z_view, y_test)}
    else:
        test_loss, test_accuracy = evaluate(model, *test, bar=bar) if test is not None else (None, None)
    bar.close()
    return {
        "recipe": config.recipe, "seed": config.seed,
        "val_accuracy": val_accuracy, "val_loss": val_loss, "val_n": int(len(y_val)),
        "test_accuracy": test_accuracy, "test_loss": test_loss,
        "test_n": int(len(test[1])) if test is not None else 0,
        "epochs_run": per_model([state["epoch"] for state in states]),
        "best_epoch": per_model([state["best_epoch"] for state in states]),
        "train_seconds": round(sum(state["train_seconds"] for state in states), 2),
        "eval_seconds": round(time.perf_counter() - start, 2),
        # Part of train_seconds: the language-model pretraining of --pretrain-epochs
        **({"pretrain_seconds": round(sum(state.get("pretrain_seconds", 0.0) for state in states), 2)}
           if config.pretrain_epochs else {}),
        **extra,
    }
