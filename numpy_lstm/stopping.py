"""Stopping a training run on SIGTERM or Ctrl-C without losing the epoch in progress.

A job scheduler ends a job with SIGTERM, a user with Ctrl-C (SIGINT). While a `StopSignals` is
installed, either signal inside a `deferred()` block (the training loop) only records the request:
the loop finishes the batch in hand, writes a checkpoint of its place in the epoch and raises
`Stopped`. Outside such a block (loading the data, the final evaluation) `Stopped` is raised at
once, which loses nothing either: every file is written atomically and the run resumes from its
last checkpoint. A second signal while a stop is pending raises `Stopped` at once too.
"""
import contextlib
import signal
import threading

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
