"""Progress on a terminal, all through tqdm: a training epoch's Keras-style line, reviews scored, a download's bytes.

An epoch redraws `8/13 [==================>...........] - ETA: 3s - loss: 0.6931 - accuracy: 0.5000`
per batch on a terminal and ends with one summary line, which is all a log (not a terminal) gets:
`13/13 [==============================] - 3s 250ms/step - loss: ... - val_accuracy: ...`.
"""
import sys
import time

from tqdm import tqdm


def format_metrics(metrics):
    return "".join(f" - {name}: {value:.4f}" for name, value in metrics.items())


class _KerasTqdm(tqdm):
    """tqdm whose bar_format may use {metrics} (format_metrics of the latest batch)."""

    metrics = ""

    @property
    def format_dict(self):
        return {**super().format_dict, "metrics": self.metrics}


class ProgressBar:
    """One epoch of `total` batches: a live bar on a terminal, then the Keras-style summary line."""

    def __init__(self, total, stream=None, width=30):
        self.total = total
        self.stream = stream or sys.stdout
        self.width = width
        self.start = time.perf_counter()
        # Redrawn after every batch (mininterval=0), as Keras does: a batch takes far longer than a redraw.
        self.bar = _KerasTqdm(total=total, file=self.stream, disable=not self.stream.isatty(), leave=False,
                              mininterval=0, ascii=".>=",
                              bar_format="{n_fmt}/{total_fmt} [{bar:%d}] - ETA: {remaining_s:.0f}s{metrics}" % width)

    def update(self, done, metrics):
        self.bar.metrics = format_metrics(metrics)
        self.bar.update(done - self.bar.n)

    def close(self, metrics):
        self.bar.close()  # leave=False: the live line is wiped, the summary takes its place
        elapsed = time.perf_counter() - self.start
        per_step = 1000 * elapsed / max(self.total, 1)
        self.stream.write(f"{self.total}/{self.total} [" + "=" * self.width + f"] - {elapsed:.0f}s "
                          f"{per_step:.0f}ms/step" + format_metrics(metrics) + "\n")
        self.stream.flush()


def counting_bar(total, desc, quiet=False):
    """A bar over `total` reviews on a terminal's standard output (as training's); nothing in a
    log or when quiet. It leaves no line behind."""
    return tqdm(total=total, desc=desc, unit=" reviews", file=sys.stdout, leave=False,
                disable=quiet or not sys.stdout.isatty())


def download_bar(total, desc):
    """A bar over `total` bytes (None if unknown) on a terminal's standard error; nothing in a log."""
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=None)
