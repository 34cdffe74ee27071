"""A run's second view of the reviews beside its LSTM (--ngrams): the n-gram view fitted, co-trained
with the LSTM (--self-train), a student LSTM taught by their vote (--student), and the two mixed.

numpy_lstm/ngrams.py has the view and the vote themselves; this module applies a run's settings to
them, in the order a run takes: the view is fitted on the labeled reviews (co-trained on the
unlabeled ones with the LSTM's logits of them); the student, if any, is trained on the labeled
reviews and the unlabeled ones labeled by the vote, and the view co-trained again with it; the mix
is fitted on the held-out reviews. Seconds long: a resumed run does it again.
"""
import time

import numpy as np

from .evaluation import evaluate, model_logits
from .ngrams import NgramView, TwoViews, accuracy, fit_mix, fit_vote_mix, self_train, spread, vote


def add_second_view(config, model, data, x_unlabeled, train_student, log):
    """The run's LSTM `model` with its n-gram view beside it: (TwoViews, extra metrics, student state or None).

    data: (x_train, y_train, x_val, y_val), the labeled reviews; x_unlabeled (K, T).
    train_student(x, y): trains config.student's LSTM on the reviews x (N + K, T) labeled y,
    returning (model, state); it takes the first LSTM's place beside the view.
    """
    x_train, y_train, x_val, y_val = data
    t0 = time.perf_counter()
    lstm_logits = model_logits(model, x_unlabeled) if config.self_train else None
    view = fit_view(config, x_train, y_train, x_unlabeled, lstm_logits)
    log(f"{config.ngrams}-gram view fitted" + (f", {config.self_train} rounds of co-training with the LSTM"
                                               if config.self_train else "")
        + f" ({time.perf_counter() - t0:.1f}s)")
    extra, student_state = {}, None
    if config.student:
        extra["val_accuracy_teacher"] = evaluate(model, x_val, y_val)[1]
        share = vote_share(config, y_train)
        pseudo = vote(lstm_logits, view.logits(x_unlabeled), share=share)
        log(f"Student LSTM on {len(x_train)} labeled and {len(x_unlabeled)} vote-labeled reviews")
        model, student_state = train_student(np.concatenate([x_train, x_unlabeled]),
                                             np.concatenate([y_train, pseudo.astype(y_train.dtype)]))
        # The student errs less than the first LSTM: a better voter for the view's co-training.
        lstm_logits = model_logits(model, x_unlabeled)
        self_train(view, x_train, y_train, x_unlabeled, config.self_train, lstm_logits, share)
        extra.update(student_epochs_run=student_state["epoch"], student_best_epoch=student_state["best_epoch"],
                     vote_positive_share=float(pseudo.mean()))
    z_view = view.logits(x_unlabeled) if config.self_train else None
    spreads = (spread(lstm_logits), spread(z_view)) if config.mix == "vote" else None
    model, mixed = mix_views(model, view, model_logits(model, x_val), x_val, y_val, log, spreads)
    extra.update(mixed)
    if config.self_train:
        # Needs no label: the unlabeled reviews are as balanced as the labeled ones (half positive
        # here), so a share far from that says which way the model leans on reviews like the test's.
        extra["unlabeled_positive_share"] = float(np.mean(model.mixed(lstm_logits, z_view) > 0))
    return model, extra, student_state


def fit_view(config, x_train, y_train, x_unlabeled, lstm_logits=None):
    """The n-gram view of config (ngrams, ngram_l2, self_train, balance_votes), fitted on the training reviews
    x_train (N, T), y_train (N,), with the unlabeled ones' grams (K, T) in its table; with
    config.self_train, co-trained on them for that many rounds with `lstm_logits`, the LSTM's
    logits of them (K,)."""
    view = NgramView(config.vocab_size, config.ngrams, config.ngram_l2).fit(x_train, y_train, extra_ids=x_unlabeled)
    if config.self_train:
        self_train(view, x_train, y_train, x_unlabeled, config.self_train, lstm_logits, vote_share(config, y_train))
    return view


def vote_share(config, y_train):
    """`vote`'s share for a run: the labeled reviews' share of positives y_train (N,) with
    config.balance_votes, else None (the sign decides)."""
    return float(np.mean(y_train)) if config.balance_votes else None


def mix_views(model, view, z_lstm, x_val, y_val, log, spreads=None):
    """The TwoViews of a trained LSTM `model` and `view`, mixed on the held-out reviews x_val (N, T),
    y_val (N,), of which z_lstm (N,) are the model's logits: by `fit_mix`, or given spreads (the
    two views' on the unlabeled reviews), by `fit_vote_mix`. Returns (TwoViews, metrics:
    val_accuracy_lstm, val_accuracy_ngrams, mix)."""
    z_view = view.logits(x_val)
    mix = fit_mix(z_lstm, z_view, y_val) if spreads is None else fit_vote_mix(z_lstm, z_view, y_val, spreads)
    extra = {"val_accuracy_lstm": accuracy(z_lstm, y_val), "val_accuracy_ngrams": accuracy(z_view, y_val),
             "mix": [float(v) for v in mix]}
    log(f"held-out accuracy of the LSTM view alone: {extra['val_accuracy_lstm']:.4f}")
    log(f"held-out accuracy of the {view.n}-gram view alone: {extra['val_accuracy_ngrams']:.4f} "
        f"({len(view.table)} grams); mix a={mix[0]:.3f} c={mix[1]:.3f} b={mix[2]:+.3f}")
    return TwoViews(model, view, mix), extra
