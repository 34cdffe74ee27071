"""Compare ways of mixing a two-view run's LSTM and n-gram view, on its held-out reviews only.

    python tools/mix_cv.py runs/semi-0 runs/semi-1 runs/semi-2

A mix fitted on the held-out reviews and scored on them flatters itself, so each rule is scored by
leave-one-film-out cross-validation: its weights are fitted on the held-out reviews of the other
films and score the left-out film's. Rules: `fit` (--mix fit: two weights and an intercept),
`fit, no intercept`, and `vote` (--mix vote: co-training's vote, one scale fitted). Prints, per
run and pooled, each rule's accuracy and log-loss, and the share of the unlabeled reviews it calls
positive (rules fitted on all the held-out reviews). Reads the training data (never the test set):
set NUMPY_LSTM_DATA as for training.
"""
import sys

import numpy as np

from numpy_lstm.data import load_imdb
from numpy_lstm.evaluation import model_logits
from numpy_lstm.losses import binary_crossentropy
from numpy_lstm.ngrams import TwoViews, accuracy, fit_logistic, fit_mix, fit_vote_mix, spread
from numpy_lstm.prepare import held_out_split, prepare_data
from numpy_lstm.rundir import RunDir


def held_out_films(config):
    """The film (N,) str of each held-out review of a run, in prepare_data's order."""
    _, val, films = held_out_split(config, load_imdb(config.data, split="train", per_class=config.per_class))
    return films[val]


def rules(spreads):
    """name -> fit(z_lstm (N,), z_view (N,), y (N,)) -> mix [a, c, b]."""
    return {"fit": fit_mix,
            "fit, no intercept": lambda zl, zv, y: [*fit_logistic(np.stack([zl, zv], axis=1), y, [1e-4, 1e-4]), 0.0],
            "vote": lambda zl, zv, y: fit_vote_mix(zl, zv, y, spreads)}


def score(run_path):
    """(films (N,), y (N,), {rule: out-of-film logits (N,)}, {rule: positive share on the unlabeled
    reviews}) of a run's held-out reviews; each view alone as a rule that fits nothing."""
    run = RunDir(run_path)
    model, _, config = run.load_model()
    _, _, _, x_val, y_val, x_unlabeled = prepare_data(config)
    films, y = held_out_films(config), np.asarray(y_val, np.float64)
    z_lstm, z_view = model_logits(model.model, x_val), model.view.logits(x_val)
    zu_lstm, zu_view = model_logits(model.model, x_unlabeled), model.view.logits(x_unlabeled)
    out, share = {}, {}

    def with_mix(mix):
        return TwoViews(model.model, model.view, mix)

    for name, fit in rules((spread(zu_lstm), spread(zu_view))).items():
        out[name] = np.zeros(len(y))
        for film in np.unique(films):
            left = films == film
            out[name][left] = with_mix(fit(z_lstm[~left], z_view[~left], y[~left])).mixed(z_lstm[left], z_view[left])
        share[name] = float(np.mean(with_mix(fit(z_lstm, z_view, y)).mixed(zu_lstm, zu_view) > 0))
    out["LSTM alone"], out["view alone"] = z_lstm, z_view
    share["LSTM alone"], share["view alone"] = float(np.mean(zu_lstm > 0)), float(np.mean(zu_view > 0))
    return films, y, out, share


def main(run_paths):
    pooled_y, pooled = [], {}
    print("| run | held-out reviews (films) | rule | accuracy | log-loss | unlabeled called positive |")
    print("|---|---|---|---|---|---|")
    for path in run_paths:
        films, y, out, share = score(path)
        pooled_y.append(y)
        for name, z in out.items():
            pooled.setdefault(name, []).append(z)
            print(f"| {path} | {len(y)} ({len(np.unique(films))}) | {name} | {accuracy(z, y):.3f} "
                  f"| {binary_crossentropy(z, y)[0]:.3f} | {share[name]:.3f} |", flush=True)
    y = np.concatenate(pooled_y)
    for name, parts in pooled.items():
        z = np.concatenate(parts)
        print(f"| all | {len(y)} | {name} | {accuracy(z, y):.4f} | {binary_crossentropy(z, y)[0]:.5f} | |")


if __name__ == "__main__":
    main(sys.argv[1:])
