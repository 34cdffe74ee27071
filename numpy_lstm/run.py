"""A training run from start to end: `fit`, behind `numpy-lstm train`.

`fit` trains on the data of numpy_lstm/prepare.py into a run directory (numpy_lstm/rundir.py):
its models (numpy_lstm/train.py), an ensemble's members one after another, and with --ngrams the
second view beside them (numpy_lstm/second_view.py), then its metrics. With resume=True it
continues from the last checkpoint to exactly the weights and metrics an uninterrupted run ends
with. A refused write is one line, the last checkpoint intact; a second `train` on its directory
is refused.
"""
import dataclasses
import os

from .config import STUDENT
from .engine import WorkerLost
from .errors import NumpyLSTMError
from .fileio import WriteError
from .memory import check_fits
from .model import Ensemble
from .ngrams import save_ngrams
from .prepare import prepare_run_data
from .rundir import RunDir
from .second_view import add_second_view
from .stopping import StopSignals
from .text import Vocabulary
from .train import finish, train_model


def fit(config, out, resume=False, quiet=False, log=print):
    """Run (or with resume=True, continue) a training run into directory `out`; returns metrics.

    The directory is locked for the run's life. A directory where a run started but wrote no
    checkpoint or model (its start failed: missing data, a bad file) is used again, with the
    settings given now. SIGTERM and Ctrl-C raise Stopped once the run's position is saved.
    """
    run = RunDir(out)
    log = (lambda *a, **k: None) if quiet else log
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
                log(f"{out} holds a run that stopped before training: starting it again")
            run.save_config(config)
        try:
            return train_run(config, run, resume, stop, quiet, log)
        except WriteError as e:
            raise NumpyLSTMError(f"{e} (the file it was to replace is intact); once that is fixed, "
                                 f"{run.how_to_continue()}") from None
        except WorkerLost as e:
            raise NumpyLSTMError(f"{e}; {run.how_to_continue()}") from None


def train_run(config, run, resume, stop, quiet, log):
    """fit's work in the locked run directory `run`: data, each model, metrics."""
    vocab, data, x_unlabeled, word_vectors = prepare_run_data(config, log)
    x_val, y_val = data[2:]
    if resume and os.path.exists(run.file("vocab.json")):
        if Vocabulary.load(run.file("vocab.json")).word_index != vocab.word_index:
            raise NumpyLSTMError(f"the data no longer gives the vocabulary saved in {run.path}; "
                                 f"resume with the same --data")
    else:
        vocab.save(run.file("vocab.json"))
    models, states = [], []
    for member in range(config.ensemble):
        if config.ensemble > 1:
            log(f"Model {member + 1}/{config.ensemble}")
        model, state = train_model(config, member, run.member(member, config.ensemble), data, word_vectors,
                                   resume, quiet, log, stop)
        models.append(model)
        states.append(state)
    model = models[0] if config.ensemble == 1 else Ensemble(models)
    extra = {}
    if config.ngrams:
        def train_student(x, y):
            """The LSTM of --student on reviews x labeled y: the run's settings with STUDENT's, and as
            member `ensemble`, one past the run's last model, random streams of its own."""
            return train_model(dataclasses.replace(config, **STUDENT), config.ensemble, run.student(),
                               (x, y, x_val, y_val), word_vectors, resume, quiet, log, stop)

        model, extra, student_state = add_second_view(config, model, data, x_unlabeled, train_student, log)
        if student_state is not None:
            states.append(student_state)
        save_ngrams(run.file("ngrams.npz"), model.view, model.mix)
    return finish(run, config, model, vocab, x_val, y_val, states, log, extra, quiet)
