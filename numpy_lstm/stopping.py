"""Stopping a training run on SIGTERM or Ctrl-C without losing the epoch in progress, and
running a pass again when an LSTM worker process dies under it (`redo_if_workers_die`).

A job scheduler ends a job with SIGTERM, a user with Ctrl-C (SIGINT). While a `StopSignals` is
installed, either signal inside a `deferred()` block (the training loop) only records the request:
the loop finishes the batch in hand, writes a checkpoint of its position in the epoch and raises
`Stopped`. Outside such a block (loading the data, the final evaluation) `Stopped` is raised at
once, which loses nothing either: every file is written atomically and the run resumes from its
last checkpoint. A second signal while a stop is pending raises `Stopped` at once too.
"""
import contextlib
import signal
import sys
import threading

from .engine import WorkerLost

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """The run was stopped by signal `signum`: exit status 128 + signum (130 for Ctrl-C, 143 for SIGTERM).

    A KeyboardInterrupt, so that `except Exception` does not swallow it and callers see Ctrl-C as usual.
    """

    def __init__(self, signum, where=None):
        self.signum, self.where = signum, where
        name = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        super().__init__(name + (f" {where}" if where else ""))

    @property
    def exit_status(self):
        return 128 + self.signum


class StopSignals:
    """SIGINT and SIGTERM handlers for the life of a `with` block (in the main thread only; elsewhere
    the signals keep their handlers and nothing is deferred)."""

    def __init__(self):
        self.requested = None      # the signal number of a pending stop
        self._deferring = False
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in SIGNALS}
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        if self._deferring and self.requested is None:
            self.requested = signum
        else:
            raise Stopped(signum)

    @contextlib.contextmanager
    def deferred(self):
        """Inside the block a signal sets `requested` instead of raising; the block's code is to
        check it and stop (raise Stopped) at a point it can resume from. A request it left
        unanswered is raised on leaving the block."""
        self._deferring = True
        try:
            yield self
        finally:
            self._deferring = False
        if self.requested is not None:
            raise Stopped(self.requested)


WORKER_ATTEMPTS = 3   # tries of one pass before worker processes that keep dying stop the run


def warn(message):
    """One line on standard error, which --quiet does not silence: a fault that was repaired."""
    print(f"numpy-lstm: {message}", file=sys.stderr, flush=True)


def redo_if_workers_die(step, what, rng=None):
    """step(), run again when an LSTM worker process dies during it (killed, out of memory).

    The dropout generator `rng` goes back to its state before the first try, so a redo draws the
    same masks, and the fresh workers get the same rows: the result is bit-identical to that of an
    undisturbed pass. After WORKER_ATTEMPTS tries, WorkerLost is raised with rng at that state.
    """
    before = None if rng is None else rng.bit_generator.state
    for attempt in range(1, WORKER_ATTEMPTS + 1):
        try:
            return step()
        except WorkerLost as e:
            if rng is not None:
                rng.bit_generator.state = before
            if attempt == WORKER_ATTEMPTS:
                raise WorkerLost(f"LSTM worker processes died {attempt} times in {what} (out of memory?)") from None
            warn(f"{e} in {what}; running it again with a fresh worker")
