"""A Keras-style progress line: `13/13 [=====>....] - ETA: 3s - loss: 0.6931 - accuracy: 0.5000`."""
import sys
import time


def format_metrics(metrics):
    return "".join(f" - {name}: {value:.4f}" for name, value in metrics.items())


class ProgressBar:
    """Redraws one line per batch on a terminal; elsewhere (logs, CI) prints only the final line."""

    def __init__(self, total, stream=None, width=30):
        self.total = total
        self.stream = stream or sys.stdout
        self.width = width
        self.live = self.stream.isatty()
        self.start = time.perf_counter()

    def _bar(self, done):
        filled = self.width * done // max(self.total, 1)
        arrow = ">" if done < self.total else "="
        return f"{done}/{self.total} [" + "=" * max(filled - 1, 0) + arrow * (filled > 0) + "." * (self.width - filled) + "]"

    def update(self, done, metrics):
        if not self.live:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / max(done, 1) * (self.total - done)
        self.stream.write("\r" + self._bar(done) + f" - ETA: {eta:.0f}s" + format_metrics(metrics) + "\033[K")
        self.stream.flush()

    def close(self, metrics):
        elapsed = time.perf_counter() - self.start
        per_step = 1000 * elapsed / max(self.total, 1)
        line = self._bar(self.total) + f" - {elapsed:.0f}s {per_step:.0f}ms/step" + format_metrics(metrics)
        self.stream.write(("\r" if self.live else "") + line + ("\033[K" if self.live else "") + "\n")
        self.stream.flush()
