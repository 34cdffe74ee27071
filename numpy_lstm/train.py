"""Training a run's models: the epoch loop, early stopping, checkpoints, resume, and the run's end.

`train_model` trains one model into its folder of the run directory (numpy_lstm/rundir.py), with
an atomic checkpoint after every epoch, and with resume=True continues from the last one to
exactly the weights an uninterrupted run ends with. It survives a dying worker process (the pass
runs again with the same dropout masks) and SIGTERM or Ctrl-C (the position in the epoch is
saved; numpy_lstm/stopping.py). `finish` evaluates the run's final model and writes its metrics.
numpy_lstm/run.py runs the whole run, from its directory and data to `finish`.
"""
import math
import os
import time

import numpy as np

from .checkpoint import ON_DISK, load_checkpoint, save_checkpoint, saved_best
from .engine import WorkerLost
from .errors import NumpyLSTMError
from .evaluation import evaluate, run_metrics
from .language_model import pretrain
from .model import build_model
from .optimizers import Adam, clip_by_global_norm, learning_rate
from .prepare import batch_order
from .progress import ProgressBar, format_metrics
from .rundir import plot_curves, write_history
from .stopping import Stopped, StopSignals, redo_if_workers_die
from .wordvectors import init_embedding


def batch_pass(model, ids, labels, rng, adversarial=0.0):
    """Forward and backward on one batch, dropout drawn from rng: (logits, loss, grads)."""
    # Overflow shows up as a non-finite loss, reported in one line instead of warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        return model.training_pass(ids, labels, rng, adversarial)


def epoch_start(rng):
    """The position at the start of an epoch whose batch order is drawn from rng's current state."""
    return {"batch": 0, "loss_sum": 0.0, "correct": 0, "seen": 0, "order_rng": rng.bit_generator.state}


def epoch_batches(lengths, config, rng, position=None):
    """(position, batches) of an epoch: a new one's (position None), its batch order drawn from
    rng, or a resumed one's, in the order drawn from rng's state when it began."""
    if position is None:
        return epoch_start(rng), batch_order(lengths, config.batch_size, rng, bucket=config.mask)
    order_rng = np.random.default_rng()
    order_rng.bit_generator.state = position["order_rng"]
    return position, batch_order(lengths, config.batch_size, order_rng, bucket=config.mask)


def train_epoch(model, optimizer, x, y, batches, config, epoch, rng, bar=None, position=None, stop=None):
    """Optimisation passes over the batches (index arrays); returns (mean loss, accuracy).

    position: where the epoch is (epoch_start, then updated after every batch): the batches done and
    their running sums. A resumed epoch goes on from there. With stop.requested, the epoch ends
    after the batch in hand; the caller sees it in position["batch"].
    Raises FloatingPointError when the loss stops being finite, WorkerLost when worker processes
    keep dying (position is then that of the batches done, rng as it was after them).
    """
    position = epoch_start(rng) if position is None else position
    for b in range(position["batch"] + 1, len(batches) + 1):
        idx = batches[b - 1]
        logits, loss, grads = redo_if_workers_die(lambda: batch_pass(model, x[idx], y[idx], rng, config.adversarial),
                                                  f"epoch {epoch}, batch {b}", rng)
        if not np.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} at epoch {epoch}, batch {b}")
        if config.clipnorm is not None:
            grads, _ = clip_by_global_norm(grads, config.clipnorm)
        optimizer.learning_rate = learning_rate(config, epoch, b, len(batches))
        optimizer.step(model.weights, grads)
        position.update(batch=b, loss_sum=position["loss_sum"] + loss * len(idx), seen=position["seen"] + len(idx),
                        correct=position["correct"] + int(np.sum((logits > 0) == (y[idx] == 1))))
        if bar:
            bar.update(b, {"loss": position["loss_sum"] / position["seen"],
                           "accuracy": position["correct"] / position["seen"]})
        if stop is not None and stop.requested:
            break
    return position["loss_sum"] / position["seen"], position["correct"] / position["seen"]


def train_model(config, member, run, data, word_vectors, resume, quiet, log, stop=None):
    """Train one model (member `member` of the ensemble) into `run`; returns (model, state).

    word_vectors: None, or (V, columns) starting values of the embedding's columns after the naive
    Bayes one, for the ids that have them (the others, padding and OOV among them, are zero rows).
    Every epoch ends with an atomic checkpoint, so an interrupted model resumes where it stopped.
    stop: the run's StopSignals. On a stop request the model's position inside the epoch is saved
    too (state["position"], where a resumed run goes on from) and Stopped is raised; when worker
    processes keep dying, the position is saved the same way and WorkerLost raised.
    """
    x_train, y_train, x_val, y_val = data
    run.make()
    stop = stop or StopSignals()
    # Random streams: member 0 keeps those of a single run, seed for the initialisation and
    # (seed, 1) for batch order and dropout; member k > 0 takes (seed, 3, k) and (seed, 1, k). The
    # word vectors use (seed, 2), language-model pretraining (seed, 4) and (seed, 4, k). No two uses
    # share a stream.
    model = build_model(config, np.random.default_rng(config.seed if member == 0 else [config.seed, 3, member]))
    init_embedding(model.embedding, config, x_train, y_train, word_vectors)
    optimizer = Adam(learning_rate=config.lr)
    rng = np.random.default_rng([config.seed, 1] + ([member] if member else []))
    state = {"epoch": 0, "history": [], "best_val_loss": None, "best_epoch": None, "wait": 0,
             "stopped_early": False, "train_seconds": 0.0}
    best = None     # the best epoch's weights: None, or ON_DISK once the checkpoint holds them
    if resume and os.path.exists(run.file("checkpoint.npz")):
        batches = math.ceil(len(x_train) / config.batch_size)
        state, best = load_checkpoint(run.file("checkpoint.npz"), model, optimizer, rng, config.epochs, batches)
        position = state.get("position")    # counted as the message of the stop that saved it
        log(f"resuming {run.path} " + (f"in epoch {state['epoch'] + 1} after batch {position['batch']} of {batches}"
                                       if position else f"after epoch {state['epoch']}"))
    elif resume and os.path.exists(run.file("model.npz")):
        # A model without its checkpoint (deleted?) cannot be continued, and starting over would
        # replace it
        raise NumpyLSTMError(f"{run.file('model.npz')} has no checkpoint.npz beside it to continue from; "
                             "train into a new --out to start over")
    elif resume:
        log(f"{run.path} stopped before its first checkpoint: starting it from the beginning")

    def save_position(position, seconds):
        """Checkpoint the model in the middle of an epoch: `position` tells where."""
        save_checkpoint(run.file("checkpoint.npz"), model, optimizer, rng,
                        {**state, "position": position, "train_seconds": state["train_seconds"] + seconds}, best)

    lengths = (x_train != 0).sum(axis=1)
    with stop.deferred():
        if config.pretrain_epochs and "pretrain_seconds" not in state:
            # Its end is checkpointed as epoch 0 with a fresh Adam, so a resumed run does not redo it
            pretrain_rng = np.random.default_rng([config.seed, 4] + ([member] if member else []))
            try:
                seconds, _ = pretrain(model, x_train, config, pretrain_rng, log, None if quiet else ProgressBar, stop)
            except FloatingPointError as e:
                raise NumpyLSTMError(f"{e}: pretraining stopped, nothing was saved; try a smaller --lr") from None
            state.update(pretrain_seconds=round(seconds, 2), train_seconds=seconds)
            save_checkpoint(run.file("checkpoint.npz"), model, optimizer, rng, state, best)
        while state["epoch"] < config.epochs and not state["stopped_early"]:
            epoch = state["epoch"] + 1
            log(f"Epoch {epoch}/{config.epochs}")
            start = time.perf_counter()
            position, batches = epoch_batches(lengths, config, rng, state.pop("position", None))
            bar = ProgressBar(len(batches)) if not quiet else None
            try:
                loss, accuracy = train_epoch(model, optimizer, x_train, y_train, batches, config, epoch, rng, bar,
                                             position, stop)
            except FloatingPointError as e:
                kept = (f"the last good checkpoint (epoch {state['epoch']}) is in {run.path}" if state["epoch"]
                        else "no epoch had finished, so there is no checkpoint")
                raise NumpyLSTMError(f"{e}: training stopped; {kept}; try a smaller --lr or --clipnorm") from None
            except WorkerLost as e:
                save_position(position, time.perf_counter() - start)
                raise WorkerLost(f"{e}; saved after batch {position['batch']} of epoch {epoch}") from None
            if position["batch"] < len(batches):
                save_position(position, time.perf_counter() - start)
                raise Stopped(stop.requested, f"in epoch {epoch} after batch {position['batch']} of {len(batches)}, "
                                              f"saved in {run.path}")
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
                    best = model.weights    # written as best/i by the checkpoint below, then left there
                else:
                    state["wait"] += 1
                    if state["wait"] >= config.patience:
                        state["stopped_early"] = True
                        log(f"early stopping: no better held-out loss for {config.patience} epochs; "
                            f"restoring epoch {state['best_epoch']}")
            save_checkpoint(run.file("checkpoint.npz"), model, optimizer, rng, state, best)
            best = None if best is None else ON_DISK
            write_history(run.file("history.csv"), state["history"])
            if stop.requested:
                raise Stopped(stop.requested, f"after epoch {epoch}, saved in {run.path}")

    if best is not None and state["best_epoch"] != state["epoch"]:
        model.set_weights(saved_best(run.file("checkpoint.npz"), model))
    model.save(run.file("model.npz"))
    state["plotted"] = bool(state["history"]) and plot_curves(run.file("curves.png"), state["history"])
    return model, state


def finish(run, config, model, vocab, x_val, y_val, states, log, extra, quiet=False):
    """Evaluate on the held-out part and the official test set (`run_metrics`); write metrics."""
    metrics = run_metrics(config, model, vocab, x_val, y_val, states, extra, quiet)
    run.save_metrics(metrics)
    log("held-out" + format_metrics({"loss": metrics["val_loss"], "accuracy": metrics["val_accuracy"]})
        + f" ({len(y_val)} reviews)")
    if config.test_limit == 0:
        log("official test set: not read (test_limit 0)")
    elif metrics["test_loss"] is None:
        log("official test set: not in the data, skipped")
    else:
        log("official test" + format_metrics({"loss": metrics["test_loss"], "accuracy": metrics["test_accuracy"]})
            + f" ({metrics['test_n']} reviews)")
    if not all(state["plotted"] for state in states):
        log("curves.png not written: matplotlib is not installed (pip install 'numpy-lstm[plot]')")
    log(f"run saved in {run.path}")
    return metrics
