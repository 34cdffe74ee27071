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
    train.lock       locked by the `train` command working in the directory (its pid inside),
                     removed when it ends
    .numpy-lstm-run  the marker of a folder numpy-lstm made its own (RUN_MARKER)

Every file is written atomically. `train` writes only in a folder it made, an empty one, or one
that is ours: it carries the marker, or (a run made before the marker existed) holds a
config.json that this version reads as a run config. Any other folder is refused, so that no
file of the user's that happens to be called config.json or metrics.json is replaced. A link in
a run folder is never followed: train.lock is opened with O_NOFOLLOW, the files are replaced by
a rename (which replaces a link, not what it points to), and model-K/ or student/ must be real
folders. `predict`, `evaluate` and `inspect` only read: any run folder will do.
"""
import contextlib
import csv
import dataclasses
import errno
import glob
import io
import os
import stat

from . import __version__
from .config import FIRST_SETTINGS, TrainConfig
from .errors import NumpyLSTMError
from .fileio import WriteError, atomic_path, make_dirs, refused_as_write_error, write_text
from .model import Ensemble, SentimentLSTM
from .ngrams import TwoViews, load_ngrams
from .safe_files import KB, MB, read_json, to_json
from .text import Vocabulary

try:
    import fcntl
except ImportError:        # not POSIX: runs are not locked
    fcntl = None

_held_locks = set()        # descriptors of the run locks this process holds
RUN_MARKER = ".numpy-lstm-run"
MARKER_FORMAT = "numpy-lstm run folder"


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

    def __init__(self, path, inside=False):
        self.path = os.fspath(path)
        self.inside = inside       # a folder in a run (model-K/, student/), which must not be a link

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

    def marked(self):
        """True when the folder carries our marker (a regular file, not a link, that says so)."""
        path = self.file(RUN_MARKER)
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return False
            return read_json(path, "run marker", 4 * KB).get("format") == MARKER_FORMAT
        except (OSError, NumpyLSTMError, AttributeError):
            return False

    def ours(self):
        """True when the folder is a run of ours: marked, or an older run whose config.json reads."""
        if self.marked():
            return True
        try:
            self.load_config()
        except NumpyLSTMError:
            return False
        return True

    def mark(self):
        """Write our marker, unless the folder has it."""
        if not self.marked():
            write_text(self.file(RUN_MARKER), to_json({"format": MARKER_FORMAT, "version": __version__}) + "\n")

    def claim(self):
        """Make the folder ours for a new run: create it, or take it if it is empty or ours (and
        mark it); refuse any other folder in one line naming it."""
        if os.path.islink(os.path.normpath(self.path)):
            raise NumpyLSTMError(f"{self.path} is a symbolic link, which numpy-lstm does not follow: "
                                 "choose another --out")
        if not os.path.lexists(self.path):
            make_dirs(self.path)
        elif not os.path.isdir(self.path):
            raise NumpyLSTMError(f"{self.path} exists and is not a folder: choose another --out")
        else:
            with refused_as_write_error(self.path):
                empty = not os.listdir(self.path)
            if not empty and not self.ours():
                raise NumpyLSTMError(f"{self.path} is not empty and is not a numpy-lstm run folder (no {RUN_MARKER}): "
                                     "train writes only in a new or empty folder or its own run: choose another --out")
        self.mark()

    def make(self):
        """Create the folder (model-K/ or student/ in a run), refusing a link in its place."""
        if self.inside and os.path.islink(self.path):
            raise NumpyLSTMError(f"{self.path} is a symbolic link, which numpy-lstm does not follow: remove it")
        make_dirs(self.path)

    def unfinished(self):
        """The one-line error for a run folder without the model files of a finished run."""
        return NumpyLSTMError(f"{self.path} is an unfinished run: its training "
                              + ("stopped before it wrote the model" if self.trained() else "never started")
                              + f" (it failed, was stopped, or is still going); {self.how_to_continue()}")

    def how_to_continue(self):
        """The command that continues an unfinished run here."""
        if os.path.exists(self.file("config.json")):
            return f"continue with: numpy-lstm train --resume {self.path}"
        return "run the same command again"

    @contextlib.contextmanager
    def locked(self):
        """Hold the directory's lock for the block: a second `train` on it is refused at once.

        An flock on train.lock: the kernel releases it when the holder's process ends, however it
        ends, so the lock of a killed run is free for its --resume. The file is removed when the
        block ends, so a run that ended leaves none.
        """
        if fcntl is None:
            yield
            return
        fd = self._take_lock(self.file("train.lock"))
        _held_locks.add(fd)
        try:
            yield
        finally:
            _held_locks.discard(fd)
            with contextlib.suppress(OSError):
                if _same_file(os.lstat(self.file("train.lock")), os.fstat(fd)):
                    os.unlink(self.file("train.lock"))
            os.close(fd)

    def _take_lock(self, path):
        """A descriptor of train.lock, locked, the pid written in it.

        Opened with O_NOFOLLOW (a link there, to a file of the user's, is refused, never
        truncated) and refused unless it is a regular file with no other name. A lock taken on a
        file its last holder had just removed is let go and taken again on the new file.
        """
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        while True:
            try:
                fd = os.open(path, flags, 0o644)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise NumpyLSTMError(f"{path} is a symbolic link, which numpy-lstm never follows: "
                                         f"remove it") from None
                raise WriteError(path, e) from None
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
                    raise NumpyLSTMError(f"{path} is not a lock file numpy-lstm made (not a regular file, or one "
                                         f"with other names): remove it")
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    raise NumpyLSTMError(f"{self.path} is in use by another numpy-lstm train (pid {holder}); "
                                         f"wait for it to end, or choose another --out") from None
                with contextlib.suppress(FileNotFoundError):
                    if _same_file(os.lstat(path), info):
                        with refused_as_write_error(path):
                            os.ftruncate(fd, 0)
                            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                        return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)            # removed by its last holder meanwhile: take the new one

    def save_config(self, config):
        write_text(self.file("config.json"), to_json(dataclasses.asdict(config), indent=2) + "\n")

    def save_metrics(self, metrics):
        """metrics.json, strict JSON: a metric that is not a number (no reviews to measure) is null."""
        write_text(self.file("metrics.json"), to_json(metrics, indent=2) + "\n")

    def load_config(self):
        """The run's TrainConfig. A setting missing from an older run's config.json takes its default,
        which is what runs did before the setting existed; one of FIRST_SETTINGS missing, or a
        setting this version does not know, is a one-line error."""
        self.require("config.json")
        path = self.file("config.json")
        settings = read_json(path, "run config", 1 * MB)
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
        try:
            return TrainConfig(**settings).validate()
        except NumpyLSTMError as e:
            raise NumpyLSTMError(f"{path}: {e}") from None

    @staticmethod
    def member_dir(k, ensemble):
        """Subdirectory of model k of an ensemble of `ensemble`: none when it is the only model."""
        return "" if ensemble == 1 else f"model-{k + 1}"

    def member(self, k, ensemble):
        return self if ensemble == 1 else RunDir(self.file(self.member_dir(k, ensemble)), inside=True)

    def student(self):
        return RunDir(self.file("student"), inside=True)

    def load_model(self):
        """(model, vocab, config) of a finished run; an Ensemble when it trained several models, and
        a TwoViews when it has an n-gram view (ngrams.npz), its LSTM the student with --student."""
        config = self.load_config()
        names = ([os.path.join("student", "model.npz")] if config.student else
                 [os.path.join(self.member_dir(k, config.ensemble), "model.npz") for k in range(config.ensemble)])
        if not all(os.path.exists(self.file(name)) for name in names) and not os.path.exists(self.file("metrics.json")):
            raise self.unfinished()
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


def _same_file(a, b):
    """Whether two stat results are of one file."""
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


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
