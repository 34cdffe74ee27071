"""Training a run: the loop, evaluation, early stopping, resume and the final metrics.

`fit` trains on the data of numpy_lstm/prepare.py into a run directory (numpy_lstm/rundir.py)
and, with resume=True, continues from the last checkpoint to exactly the weights and metrics an
uninterrupted run ends with. It survives a dying worker process (the pass runs again with the same
dropout masks), SIGTERM or Ctrl-C (the place in the epoch is saved; numpy_lstm/stopping.py) and a
refused write (one line, the last checkpoint intact); a second `train` on its directory is refused.
"""
import dataclasses
import math
import os
import time

import numpy as np

from .checkpoint import load_checkpoint, save_checkpoint
from .config import STUDENT
from .engine import WorkerLost
from .errors import NumpyLSTMError
from .fileio import WriteError
from .losses import binary_crossentropy
from .memory import check_fits
from .model import Ensemble, SentimentLSTM
from .ngrams import TwoViews, accuracy, fit_view, mix_views, save_ngrams, self_train, spread, vote, vote_share
from .optimizers import Adam, clip_by_global_norm, learning_rate
from .prepare import batch_order, load_test_set, prepare_data
from .progress import ProgressBar, counting_bar, format_metrics
from .rundir import RunDir, plot_curves, write_history
from .stopping import Stopped, StopSignals, redo_if_workers_die
from .text import Vocabulary
from .wordvectors import init_embedding, scaled_word_vectors


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


def build_model(config, rng):
    return SentimentLSTM(vocab_size=config.vocab_size, embed_dim=config.embed_dim, units=config.units,
                         mask_zero=config.mask, dropout=config.dropout, pooling=config.pooling,
                         num_layers=config.num_layers, bidirectional=config.bidirectional, seed=rng,
                         recurrent_dropout=config.recurrent_dropout, word_dropout=config.word_dropout,
                         implementation=config.implementation)


def batch_pass(model, ids, labels, rng):
    """Forward and backward on one batch, dropout drawn from rng: (logits, loss, grads)."""
    # Overflow shows up as a non-finite loss, reported in one line instead of warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        logits, cache = model.forward(ids, rng)
        loss, dlogits = binary_crossentropy(logits, labels)
        return logits, loss, model.backward(dlogits, cache)


def epoch_start(rng):
    """The place at the start of an epoch whose batch order is drawn from rng's current state."""
    return {"batch": 0, "loss_sum": 0.0, "correct": 0, "seen": 0, "order_rng": rng.bit_generator.state}


def train_epoch(model, optimizer, x, y, batches, config, epoch, rng, bar=None, place=None, stop=None):
    """Optimisation passes over the batches (index arrays); returns (mean loss, accuracy).

    place: where the epoch is (epoch_start, then updated after every batch): the batches done and
    their running sums. A resumed epoch goes on from there. With stop.requested, the epoch ends
    after the batch in hand; the caller sees it in place["batch"].
    Raises FloatingPointError when the loss stops being finite, WorkerLost when worker processes
    keep dying (place is then that of the batches done, rng as it was after them).
    """
    place = epoch_start(rng) if place is None else place
    for b in range(place["batch"] + 1, len(batches) + 1):
        idx = batches[b - 1]
        logits, loss, grads = redo_if_workers_die(lambda: batch_pass(model, x[idx], y[idx], rng),
                                                  f"epoch {epoch}, batch {b}", rng)
        if not np.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} at epoch {epoch}, batch {b}")
        if config.clipnorm is not None:
            grads, _ = clip_by_global_norm(grads, config.clipnorm)
        optimizer.learning_rate = learning_rate(config, epoch, b, len(batches))
        optimizer.step(model.weights, grads)
        place.update(batch=b, loss_sum=place["loss_sum"] + loss * len(idx), seen=place["seen"] + len(idx),
                     correct=place["correct"] + int(np.sum((logits > 0) == (y[idx] == 1))))
        if bar:
            bar.update(b, {"loss": place["loss_sum"] / place["seen"], "accuracy": place["correct"] / place["seen"]})
        if stop is not None and stop.requested:
            break
    return place["loss_sum"] / place["seen"], place["correct"] / place["seen"]


def fit(config, out, resume=False, quiet=False, log=print):
    """Run (or with resume=True, continue) a training run into directory `out`; returns metrics.

    The directory is locked for the run's life. A directory where a run started but wrote no
    checkpoint or model (its start failed: missing data, a bad file) is used again, with the
    settings given now. SIGTERM and Ctrl-C raise Stopped once the run's place is saved.
    """
    run = RunDir(out)
    say = (lambda *a, **k: None) if quiet else log
    if resume:
        run.require("config.json")
    else:
        check_fits(config)      # before anything is written or read
        run.claim()
    with run.locked(), StopSignals() as stop:
        if resume:
            config = run.load_config()
            check_fits(config)
            run.mark()          # a run of ours from before the marker existed
        elif run.trained():
            raise NumpyLSTMError(f"{out} already holds a run; use --resume {out} to continue it, "
                                 f"or choose another --out")
        else:
            if os.path.exists(run.file("config.json")):
                say(f"{out} holds a run that stopped before training: starting it again")
            run.save_config(config)
        try:
            return train_run(config, run, resume, stop, quiet, say)
        except WriteError as e:
            raise NumpyLSTMError(f"{e} (the file it was to replace is intact); once that is fixed, "
                                 f"{run.how_to_continue()}") from None
        except WorkerLost as e:
            raise NumpyLSTMError(f"{e}; {run.how_to_continue()}") from None


def train_run(config, run, resume, stop, quiet, say):
    """fit's work in the locked run directory `run`: data, each model, metrics."""
    out = run.path
    t0 = time.perf_counter()
    vocab, x_train, y_train, x_val, y_val, x_unlabeled = prepare_data(config)
    if resume and os.path.exists(run.file("vocab.json")):
        if Vocabulary.load(run.file("vocab.json")).word_index != vocab.word_index:
            raise NumpyLSTMError(f"the data no longer gives the vocabulary saved in {out}; "
                                 f"resume with the same --data")
    else:
        vocab.save(run.file("vocab.json"))
    say(f"{len(x_train)} training and {len(x_val)} held-out reviews"
        + (f" and {len(x_unlabeled)} unlabeled ones" if config.unlabeled else "")
        + f", {len(vocab)} ids in the vocabulary, padded to {config.maxlen} ({time.perf_counter() - t0:.1f}s)")

    word_vectors = None
    if config.ppmi_init:
        t0 = time.perf_counter()
        word_vectors = scaled_word_vectors(config, np.concatenate([x_train, x_unlabeled]))
        say(f"word vectors from the training reviews' co-occurrences ({time.perf_counter() - t0:.1f}s)")

    models, states = [], []
    for member in range(config.ensemble):
        if config.ensemble > 1:
            say(f"Model {member + 1}/{config.ensemble}")
        model, state = train_model(config, member, run.member(member, config.ensemble),
                                   (x_train, y_train, x_val, y_val), word_vectors, resume, quiet, say, stop)
        models.append(model)
        states.append(state)
    model = models[0] if config.ensemble == 1 else Ensemble(models)
    extra = {}
    if config.ngrams:     # seconds long: a resumed run fits it again
        t0 = time.perf_counter()
        partner = model_logits(model, x_unlabeled) if config.self_train else None
        view = fit_view(config, x_train, y_train, x_unlabeled, partner)
        say(f"{config.ngrams}-gram view fitted" + (f", {config.self_train} rounds of co-training with the LSTM"
                                                   if config.self_train else "")
            + f" ({time.perf_counter() - t0:.1f}s)")
        if config.student:
            extra["val_accuracy_teacher"] = evaluate(model, x_val, y_val)[1]
            share = vote_share(config, y_train)
            pseudo = vote(partner, view.logits(x_unlabeled), share=share)
            model, state = train_student(config, run, (x_train, y_train, x_val, y_val), x_unlabeled, pseudo,
                                         word_vectors, resume, quiet, say, stop)
            states.append(state)
            # The student errs less than the first LSTM: a better partner for the view's co-training.
            partner = model_logits(model, x_unlabeled)
            self_train(view, x_train, y_train, x_unlabeled, config.self_train, partner, share)
            extra.update(student_epochs_run=state["epoch"], student_best_epoch=state["best_epoch"],
                         vote_positive_share=float(pseudo.mean()))
        z_view = view.logits(x_unlabeled) if config.self_train else None
        spreads = (spread(partner), spread(z_view)) if config.mix == "vote" else None
        model, mixed = mix_views(model, view, model_logits(model, x_val), x_val, y_val, say, spreads)
        extra.update(mixed)
        if config.self_train:
            # Needs no label: the unlabeled reviews are as balanced as the labeled ones (half positive
            # here), so a share far from that says which way the model leans on reviews like the test's.
            extra["unlabeled_positive_share"] = float(np.mean(model.mixed(partner, z_view) > 0))
        save_ngrams(run.file("ngrams.npz"), model.view, model.mix)
    return finish(run, config, model, vocab, x_val, y_val, states, say, extra, quiet)


def train_student(config, run, data, x_unlabeled, pseudo, word_vectors, resume, quiet, say, stop):
    """The student LSTM of config.student, trained in run's student/ folder: (model, state).

    Its settings are the run's with STUDENT's, its reviews the labeled ones (data: x_train, y_train,
    x_val, y_val as train_model's) and the unlabeled ones x_unlabeled (K, T) labeled `pseudo` (K,),
    the first LSTM's and the view's vote. A student needs more room than a teacher that learned
    from 1,000 reviews: it reads 25 times as many, and fits the vote's mistakes less than it
    learns the rules the vote got right.
    """
    x_train, y_train, x_val, y_val = data
    say(f"Student LSTM on {len(x_train)} labeled and {len(x_unlabeled)} vote-labeled reviews")
    student_data = (np.concatenate([x_train, x_unlabeled]), np.concatenate([y_train, pseudo.astype(y_train.dtype)]),
                    x_val, y_val)
    # Member index `ensemble`, one past the last model of the run: random streams of its own.
    return train_model(dataclasses.replace(config, **STUDENT), config.ensemble, run.student(), student_data,
                       word_vectors, resume, quiet, say, stop)


def train_model(config, member, run, data, word_vectors, resume, quiet, say, stop=None):
    """Train one model (member `member` of the ensemble) into `run`; returns (model, state).

    word_vectors: None, or (V, columns) starting values of the embedding's columns after the naive
    Bayes one, for the ids that have them (the others, padding and OOV among them, are zero rows).
    Every epoch ends with an atomic checkpoint, so an interrupted model resumes where it stopped.
    stop: the run's StopSignals. On a stop request the model's place inside the epoch is saved
    too (state["position"], where a resumed run goes on from) and Stopped is raised; when worker
    processes keep dying, the place is saved the same way and WorkerLost raised.
    """
    x_train, y_train, x_val, y_val = data
    run.make()
    stop = stop or StopSignals()
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
        batches = math.ceil(len(x_train) / config.batch_size)
        state, best_weights = load_checkpoint(run.file("checkpoint.npz"), model, optimizer, rng, config.epochs, batches)
        place = state.get("position")    # counted as the message of the stop that saved it
        say(f"resuming {run.path} " + (f"in epoch {state['epoch'] + 1} after batch {place['batch']} of {batches}"
                                       if place else f"after epoch {state['epoch']}"))
    elif resume and os.path.exists(run.file("model.npz")):
        # A model without its checkpoint (deleted?) cannot be continued, and starting over would
        # replace it
        raise NumpyLSTMError(f"{run.file('model.npz')} has no checkpoint.npz beside it to continue from; "
                             "train into a new --out to start over")
    elif resume:
        say(f"{run.path} stopped before its first checkpoint: starting it from the beginning")

    def save_place(place, seconds):
        """Checkpoint the model in the middle of an epoch: `place` tells where."""
        save_checkpoint(run.file("checkpoint.npz"), model, optimizer, rng,
                        {**state, "position": place, "train_seconds": state["train_seconds"] + seconds}, best_weights)

    lengths = (x_train != 0).sum(axis=1)
    with stop.deferred():
        while state["epoch"] < config.epochs and not state["stopped_early"]:
            epoch = state["epoch"] + 1
            say(f"Epoch {epoch}/{config.epochs}")
            start = time.perf_counter()
            place = state.pop("position", None)
            if place is None:
                place = epoch_start(rng)
                batches = batch_order(lengths, config.batch_size, rng, bucket=config.mask)
            else:   # the order drawn when the epoch began
                batches = batch_order(lengths, config.batch_size, generator_at(place["order_rng"]), bucket=config.mask)
            bar = ProgressBar(len(batches)) if not quiet else None
            try:
                loss, accuracy = train_epoch(model, optimizer, x_train, y_train, batches, config, epoch, rng, bar,
                                             place, stop)
            except FloatingPointError as e:
                kept = (f"the last good checkpoint (epoch {state['epoch']}) is in {run.path}" if state["epoch"]
                        else "no epoch had finished, so there is no checkpoint")
                raise NumpyLSTMError(f"{e}: training stopped; {kept}; try a smaller --lr or --clipnorm") from None
            except WorkerLost as e:
                save_place(place, time.perf_counter() - start)
                raise WorkerLost(f"{e}; saved after batch {place['batch']} of epoch {epoch}") from None
            if place["batch"] < len(batches):
                save_place(place, time.perf_counter() - start)
                raise Stopped(stop.requested, f"in epoch {epoch} after batch {place['batch']} of {len(batches)}, "
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
                    best_weights = model.get_weights()
                else:
                    state["wait"] += 1
                    if state["wait"] >= config.patience:
                        state["stopped_early"] = True
                        say(f"early stopping: no better held-out loss for {config.patience} epochs; "
                            f"restoring epoch {state['best_epoch']}")
            save_checkpoint(run.file("checkpoint.npz"), model, optimizer, rng, state, best_weights)
            write_history(run.file("history.csv"), state["history"])
            if stop.requested:
                raise Stopped(stop.requested, f"after epoch {epoch}, saved in {run.path}")

    if best_weights is not None:
        model.set_weights(best_weights)
    model.save(run.file("model.npz"))
    state["plotted"] = bool(state["history"]) and plot_curves(run.file("curves.png"), state["history"])
    return model, state


def generator_at(state):
    """A Generator whose bit generator is in `state` (a bit_generator.state dict)."""
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng


def finish(run, config, model, vocab, x_val, y_val, states, say, extra, quiet=False):
    """Evaluate on the held-out part and the official test set (a progress bar on a terminal
    unless quiet); write metrics.

    states: each model's training state, a student's last. An ensemble's metrics list its models'
    epochs. extra: further metrics (the n-gram view's, the student's epochs).
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
    metrics = {
        "recipe": config.recipe, "seed": config.seed,
        "val_accuracy": val_accuracy, "val_loss": val_loss, "val_n": int(len(y_val)),
        "test_accuracy": test_accuracy, "test_loss": test_loss,
        "test_n": int(len(test[1])) if test is not None else 0,
        "epochs_run": per_model([state["epoch"] for state in states]),
        "best_epoch": per_model([state["best_epoch"] for state in states]),
        "train_seconds": round(sum(state["train_seconds"] for state in states), 2),
        "eval_seconds": round(time.perf_counter() - start, 2),
        **extra,
    }
    run.save_metrics(metrics)
    say("held-out" + format_metrics({"loss": val_loss, "accuracy": val_accuracy}) + f" ({len(y_val)} reviews)")
    if config.test_limit == 0:
        say("official test set: not read (test_limit 0)")
    elif test is None:
        say("official test set: not in the data, skipped")
    else:
        say("official test" + format_metrics({"loss": test_loss, "accuracy": test_accuracy})
            + f" ({metrics['test_n']} reviews)")
    if not all(state["plotted"] for state in states):
        say("curves.png not written: matplotlib is not installed (pip install 'numpy-lstm[plot]')")
    say(f"run saved in {run.path}")
    return metrics
