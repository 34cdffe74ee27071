"""A second thread for the loops' block matmuls, while the calling thread runs the steps.

Within one process, the steps of the recurrence hold a core, and the matmuls that are not part of
it, a block of steps at a time (the forward's input part, the backward's dx and weight
gradients), can run beside them on a core that would otherwise idle. Threads of one process
share the interpreter lock, but BLAS and NumPy's element-wise calls on more than 500 elements
let go of it while they run (`cores.side_thread` says when that pays). A `SideThread` is
started by a pass and ended by it: started there, it inherits the pass's floating-point
environment (POSIX pthread_create), subnormals flushed or not, so its calls compute the same
bits as they would in the calling thread, and no thread is left running when a worker process
is forked between passes (`running`).
"""
import contextlib
import queue
import threading


@contextlib.contextmanager
def running(wanted):
    """A `SideThread` for the block (None when not wanted), ended on leaving it: after the calls
    queued have run, or, when the block raises, after the one under way (the others are
    skipped, their results unwanted: an interrupted forward does not first compute the input
    part of every step left)."""
    side = SideThread() if wanted else None
    try:
        yield side
    except BaseException:
        if side is not None:
            side.cancel()
        raise
    finally:
        if side is not None:
            side.finish()


class SideThread:
    """Calls run one after another on a second thread, in the order they were given."""

    NAME = "numpy-lstm-side"

    def __init__(self):
        self._calls = queue.SimpleQueue()
        self._done = 0                     # calls completed
        self._error = None                 # what a call raised; later calls are skipped
        self._cancelled = False            # later calls are skipped
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._serve, name=self.NAME, daemon=True)
        self._thread.start()

    def call(self, fn, *args):
        """Queue fn(*args); the arrays it touches must be left alone until `wait` says it ran."""
        self._calls.put((fn, args))

    def wait(self, n):
        """Return once the first n calls have run; raise what a call raised."""
        with self._changed:
            self._changed.wait_for(lambda: self._done >= n or self._error is not None)
        if self._error is not None:
            raise self._error

    def cancel(self):
        """Skip the calls not yet started."""
        self._cancelled = True

    def finish(self):
        """Wait for every call queued and end the thread; raise what a call raised."""
        self._calls.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _serve(self):
        for fn, args in iter(self._calls.get, None):
            if self._error is None and not self._cancelled:
                try:
                    fn(*args)
                except BaseException as error:
                    self._error = error
            with self._changed:
                self._done += 1
                self._changed.notify_all()
