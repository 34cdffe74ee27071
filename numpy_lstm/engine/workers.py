"""How the LSTM uses several cores: batch rows shared out to worker processes, or BLAS's threads.

The recurrence is a chain of matmuls and element-wise ops. At few units (H up to about 200) they
are small: BLAS's threads do not pay on them (they often make them slower, and much slower on a
busy machine), while the rows of a batch are independent. So when the batch is large enough,
the engine cuts it into parts (`split_rows`), runs the
first part itself and sends each other part, with the layer's weights, to a worker process, which
runs the whole time loop on those rows (`loops.forward_rows`) and keeps their cache until the
backward pass (`forward_parts`, `backward_parts`).
Processes, not threads: at the tutorial's shapes most NumPy calls take a few microseconds, and
two threads spend much of that waiting for each other's interpreter lock (measured: 1.1-1.2x
with two threads, against 1.6x and more with two processes). A batch too small to split keeps
a thread for the matmuls that run a block of steps at a time, which hold the lock only to start
(`side_thread`, `sidethread`). While parts run, BLAS is held
at one thread so that its threads and our processes do not fight over the cores, and subnormal
numbers are flushed to zero (`fpu`: the gradients of a long backward pass decay through
the subnormal range, where Intel CPUs take a slow path for every operation).

At many units (H >= 256) the rows are split too when each part gets at least
`MIN_ROWS_PER_PART_MANY_UNITS`: BLAS's threads share only the matmuls (the element-wise work, a
third of the time at H = 256, stays on one core) and, on a machine whose other jobs keep a core
busy, they wait for each other on every call. With fewer rows per part the step's matmul is
bound by reading the recurrent weights, which every part would read again: one process runs the
batch with BLAS's threads. A batch of fewer than 2 * MIN_ROWS_PER_PART rows and few units runs in
one process, BLAS at one thread, its block matmuls on a side thread where `side_thread` says so.
`plan_cores` chooses (and has the measurements).

Workers are forked on first use or by `start_workers` (Linux only; elsewhere every part runs in
the calling process), ignore Ctrl-C and SIGTERM (the parent handles them) and exit when the parent
goes. A worker that dies (killed, out of memory) is a `WorkerLost` for the caller, after every
worker has been stopped; the next pass forks fresh ones, and where fork is refused a part runs in
the calling process instead (`_InProcess`), with the same split and so the same sums. A
part costs one message each way per pass: its inputs and weights out, its outputs back, the
large arrays among them through memory shared with that worker (`mailbox.Mailbox`). The pipes serve
one caller at a time: run LSTMs from one thread of a process.

The core count is `set_num_threads(n)` (the name PyTorch uses), else the environment variable
NUMPY_LSTM_THREADS, else the number of CPUs this process may use, capped at
`MAX_DEFAULT_THREADS`. n cores means the calling process and up to n - 1 workers, or BLAS at n
threads (`plan_cores`). A count above `THREADS_PER_CPU` times the CPUs is refused: each core
beyond the first is a process, which `start_workers` forks up front.

The BLAS that NumPy loaded is reached through threadpoolctl (OpenBLAS, MKL or BLIS). Where it
finds none, the helpers do nothing and `blas_thread_control()` is False; results are the same,
only the timings differ.
"""
import atexit
import contextlib
import itertools
import multiprocessing
import multiprocessing.reduction
import multiprocessing.util  # noqa: F401  (registers its exit handler before ours: see _reset_workers)
import os
import pickle
import signal
import sys
import threading
import weakref

import numpy as np
from threadpoolctl import ThreadpoolController

from ..errors import NumpyLSTMError
from . import loops
from .fpu import flush_subnormals
from .mailbox import Mailbox, is_large, room

MAX_DEFAULT_THREADS = 4
THREADS_PER_CPU = 4     # more processes than this per CPU only wait for each other
MIN_ROWS_PER_PART = 8     # fewer rows than this per part and the split costs more than it gains
BLAS_THREADS_MIN_UNITS = 256   # from this many units on, BLAS's threads unless parts get enough rows
MIN_ROWS_PER_PART_MANY_UNITS = 32   # rows per part for a split at BLAS_THREADS_MIN_UNITS or more
# NumPy lets go of the interpreter lock in an element-wise call on more elements than this
# (NPY_BEGIN_THREADS_THRESHOLDED in numpy/ndarraytypes.h): see side_thread
GIL_FREE_ELEMENTS = 500

_num_threads = None          # set by set_num_threads; None means "from the environment"
_blas = ThreadpoolController().select(user_api="blas").lib_controllers   # NumPy's, loaded above
_blas_lock = threading.Lock()
_blas_holders = 0            # how many callers currently hold BLAS at a fixed count
_blas_saved = None           # BLAS's thread count before the first of them


def blas_thread_control():
    """True when BLAS's thread count can be read and set from here."""
    return bool(_blas)


def get_blas_threads():
    """BLAS's current thread count, or None when it cannot be read."""
    return _blas[0].get_num_threads() if _blas else None


def _set_blas_threads(n):
    for lib in _blas:
        lib.set_num_threads(n)


def _usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _thread_count_problem(n):
    """Why n cores cannot be used, or None."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        return "must be a positive integer"
    cpus = _usable_cpus()
    if n > THREADS_PER_CPU * cpus:
        return f"must be at most {THREADS_PER_CPU * cpus} ({THREADS_PER_CPU} per usable CPU; this machine has {cpus})"
    return None


def _default_threads():
    env = os.environ.get("NUMPY_LSTM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = None
        problem = _thread_count_problem(n)
        if problem:
            raise NumpyLSTMError(f"NUMPY_LSTM_THREADS {problem}, got {env!r}")
        return n
    return max(1, min(_usable_cpus(), MAX_DEFAULT_THREADS))


def get_num_threads():
    """Cores the LSTM uses: the calling process and get_num_threads() - 1 worker processes."""
    return _num_threads if _num_threads is not None else _default_threads()


def set_num_threads(n):
    """Set the LSTM's core count; None goes back to NUMPY_LSTM_THREADS / the CPU count.

    Outputs and input gradients do not depend on it: every row of the batch is computed the same
    way whatever the split. The weight gradients are sums of one per part, so they change with
    it by float rounding only; for a given count, results are repeatable.
    """
    global _num_threads
    problem = None if n is None else _thread_count_problem(n)
    if problem:
        raise ValueError(f"the number of threads {problem}, got {n!r}")
    _num_threads = n


@contextlib.contextmanager
def blas_threads(n):
    """Hold BLAS at n threads inside the block, then restore the count found at entry.

    Nested or concurrent blocks share one saved value: the first to enter saves it and the last
    to leave restores it (a nested block's own count holds until then). BLAS's setting is
    process-wide.
    """
    global _blas_holders, _blas_saved
    if not _blas:
        yield
        return
    with _blas_lock:
        if _blas_holders == 0:
            _blas_saved = get_blas_threads()
        _blas_holders += 1
        _set_blas_threads(n)
    try:
        yield
    finally:
        with _blas_lock:
            _blas_holders -= 1
            if _blas_holders == 0:
                _set_blas_threads(_blas_saved)


def plan_cores(rows, units, cores=None):
    """(parts, blas_threads): how an LSTM of `units` H runs a batch of `rows` B on `cores`.

    - H < BLAS_THREADS_MIN_UNITS, or parts of at least MIN_ROWS_PER_PART_MANY_UNITS rows: the
      rows cut into up to `cores` parts of at least MIN_ROWS_PER_PART, one process each, BLAS at
      one thread (its threads would fight the processes for the cores); a batch of fewer than
      2 * MIN_ROWS_PER_PART rows is one part, and no worker is forked for it.
    - otherwise (many units, few rows a part): one part, BLAS on every core.
    cores: default get_num_threads().

    Measured on the AMD EPYC host here, forward + backward on 2 cores, BLAS's 2 threads against
    rows over 2 processes, interleaved runs. With another job keeping a core busy (load 4-5 on 2
    CPUs): (64, 100, 32, 256) 1.59-1.86 s against 0.37-0.68 s, (64, 100, 256, 512) 6.6-10.2 s
    against 1.6-2.5 s, (16, 100, 512, 1024) 4.2-7.8 s against 3.7-4.5 s (one core: 0.45-0.54,
    2.0-2.2, 2.4-2.8 s). At load 1.7-2.9, when the second core was mostly free: 0.15-0.22 s
    against 0.18-0.23 s, 0.72-0.89 s against 0.74-1.01 s, and 1.08-1.22 s against 1.34-1.53 s
    (8 rows a part; one core 1.48-1.72 s).
    """
    cores = get_num_threads() if cores is None else cores
    parts = max(1, min(cores, rows // MIN_ROWS_PER_PART))
    if units < BLAS_THREADS_MIN_UNITS or rows // parts >= MIN_ROWS_PER_PART_MANY_UNITS:
        return parts, 1
    return 1, cores


def side_thread(rows, units, cores=None):
    """Whether the part run here computes its block matmuls (the forward's input part, the
    backward's dx and weight gradients) on a `sidethread.SideThread`, beside the steps: when
    `plan_cores` leaves a core idle (one part, BLAS at one thread, two cores or more) and the
    step's element-wise calls, on (H, B) blocks, exceed GIL_FREE_ELEMENTS, so that the two
    threads seldom wait for each other's interpreter lock.

    Measured with `bench/side_thread.py` (2026-11-30 12:20 UTC, AMD EPYC, 2 vCPUs; forward +
    backward, medians of 15, with / without, the same bits): (B, T, E, H) = (8, 500, 32, 100)
    95.4 -> 75.3 ms (0.79; the backward 54 -> 37), (12, 500, 32, 100) 0.81, (4, 500, 32, 200)
    0.85, (8, 200, 32, 100) 0.90; at (8, 100, 32, 100), two blocks, 1.04, and at 50 steps, one
    block, where no thread is started, 1.00. Below the lock's threshold the side thread waits
    for the lock: a prototype that ran the backward's block matmuls on a side thread at any size
    took the backward at (4, 500, 32, 100) from 21.7 to 21.2 ms and at (1, 500, 32, 100) from
    11.2 to 11.0, against 43 -> 32 at (8, 500, 32, 100) in the same session; at
    (2, 500, 32, 255), 510 elements a step, 90.8 -> 91.2.
    """
    cores = get_num_threads() if cores is None else cores
    return cores >= 2 and plan_cores(rows, units, cores) == (1, 1) and rows * units > GIL_FREE_ELEMENTS


def split_rows(rows, parts=None):
    """Cut range(rows) into contiguous (start, stop) slices, up to `parts` (default one per
    core) of at least MIN_ROWS_PER_PART rows, sizes within one."""
    parts = get_num_threads() if parts is None else parts
    parts = max(1, min(parts, rows // MIN_ROWS_PER_PART))
    parts = 1 + len(_usable_workers(parts - 1))
    bounds = [rows * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


# ----------------------------------------------------------------------------- worker processes

class WorkerLost(NumpyLSTMError, RuntimeError):
    """A worker process vanished mid-pass (killed, out of memory): the pass can be run again."""


@contextlib.contextmanager
def _lost_if_closed():
    """A pipe that breaks (EOFError, BrokenPipeError, ConnectionResetError, "got end of file during
    message") means the process at the other end is gone."""
    try:
        yield
    except (EOFError, OSError):
        raise WorkerLost("an LSTM worker process died (out of memory?)") from None


class _Worker:
    """One worker process, our end of its pipe, and the mailbox we share with it."""

    def __init__(self):
        here, there = multiprocessing.get_context("fork").Pipe()
        self.process = multiprocessing.get_context("fork").Process(
            target=_serve, args=(there, here), daemon=True, name="numpy_lstm-worker")
        self.process.start()
        there.close()
        self.conn = here
        self.mailbox = Mailbox()
        # What the worker may forget, sent along with the next request: caches whose handle has
        # gone (by token) and the spare arrays of layers that have gone (by key).
        self.dropped = []
        self.dropped_layers = []

    def request(self, op, key, token, payload, arrays=()):
        """Send a request; `arrays`, a tuple, goes through the mailbox, grown to fit it."""
        if room(arrays) > self.mailbox.size:
            self._grow(room(arrays))
        with _lost_if_closed():
            self.conn.send((op, key, token, payload, self.mailbox.pack(arrays), np.geterr(),
                            self.dropped[:], self.dropped_layers[:]))
        self.dropped.clear()
        self.dropped_layers.clear()

    def reply(self):
        """The worker's answer, a tuple; its large arrays are views into the mailbox."""
        with _lost_if_closed():
            status, value = self.conn.recv()
        if status == "error":
            raise value
        arrays = self.mailbox.unpack(value)
        if any(is_large(a) for a in value):   # one did not fit: make room for the next reply
            self._grow(room(arrays))           # (these views keep the old mailbox alive)
        return arrays

    def _grow(self, size):
        """Replace the mailbox with a larger one, in both processes (no request in flight).

        Where memfd_create is missing or refused, the mailbox stays as it is and large arrays
        keep travelling in the pipe: slower, same results.
        """
        try:
            fd = os.memfd_create("numpy_lstm-mailbox")
        except (AttributeError, OSError):
            return
        try:
            os.ftruncate(fd, size)
            self.mailbox = Mailbox(fd, size)
            with _lost_if_closed():
                self.conn.send(("mailbox", None, None, size, (), {}, [], []))
                multiprocessing.reduction.send_handle(self.conn, fd, self.process.pid)
        finally:
            os.close(fd)
        self.reply()

    def close(self):
        self.conn.close()
        self.process.kill()       # not terminate(): workers ignore SIGTERM
        self.process.join()


class _InProcess:
    """Stands in for a worker that could not be forked: runs its parts here, one after another.

    It gets what a worker gets (a copy of the weights, the same rows) and runs the same code, so
    the results are those of a worker, bit for bit; only the time differs.
    """

    def __init__(self):
        self.spares, self.caches, self.dropped, self.dropped_layers = {}, {}, [], []
        self.pending = None

    def request(self, op, key, token, payload, arrays=()):
        for t in self.dropped:
            self.caches.pop(t, None)
        for k in self.dropped_layers:
            self.spares.pop(k, None)
        self.dropped.clear()
        self.dropped_layers.clear()
        payload = pickle.loads(pickle.dumps(payload))   # a copy, as a worker receives
        self.pending = (op, key, token, payload, arrays)

    def reply(self):
        with blas_threads(1), flush_subnormals():
            return _run_part(*self.pending, self.spares, self.caches)

    def close(self):
        pass


_workers = []
_layer_keys = itertools.count()


def _usable_workers(n):
    """The first n workers, started as needed; none where fork is unavailable."""
    if n <= 0 or not sys.platform.startswith("linux"):
        return []
    while len(_workers) < n:
        try:
            _workers.append(_Worker())
        except OSError:        # fork refused (out of memory, process limit): run the part here
            _workers.append(_InProcess())
    return _workers[:n]


def start_workers():
    """Fork the workers now, for get_num_threads() cores, rather than at the first LSTM pass.

    A worker is a copy of its parent at the fork: what the parent holds then stays shared until
    written, but counts in the worker's resident size too. Forked before the data is loaded, a
    worker holds only the code and its own buffers.
    """
    _usable_workers(get_num_threads() - 1)


def _reset_workers():
    """Stop every worker (after an interruption leaves a pipe mid-message); new ones start on demand."""
    while _workers:
        _workers.pop().close()


# At exit, before multiprocessing's own handler (registered earlier, so run later), which would
# stop the workers with SIGTERM and wait for them.
atexit.register(_reset_workers)


def new_layer_key(owner):
    """A key that names a layer to the workers; they drop its spare arrays when `owner` goes."""
    key = next(_layer_keys)
    weakref.finalize(owner, _forget_layer, key)
    return key


def _forget_layer(key):
    for worker in _workers:
        worker.dropped_layers.append(key)


class RemoteCache:
    """The cache of a part that a worker keeps; the worker forgets it when this handle goes."""

    def __init__(self, worker, token):
        self.worker, self.token = worker, token
        self._finalizer = weakref.finalize(self, worker.dropped.append, token)

    def spend(self):
        self._finalizer.detach()          # the worker drops it itself after backward


_tokens = itertools.count()


def forward_parts(weights, return_sequences, inputs, key, spare, blas=1, side=False):
    """loops.forward_rows on each part: the first here, the others in workers.

    weights: [kernel, recurrent_kernel, bias]; inputs: one (x, mask, initial_state, keep) per
    part; key: the layer's `new_layer_key`; spare: its SpareArrays, for the part run here;
    blas: BLAS's threads for that part (workers run theirs at one); side: whether that part
    uses a side thread (`side_thread`).
    Returns [(out, cache)]: the caches of the workers' parts are RemoteCache handles.
    """
    workers = _usable_workers(len(inputs) - 1)
    sent = []
    try:
        for worker, (x, mask, state, keep) in zip(workers, inputs[1:]):
            token = next(_tokens)
            # Arrays side by side, not in tuples, so that the large ones, today's weights among
            # them, go through the mailbox rather than pickled through the pipe
            h0, c0 = (None, None) if state is None else state
            worker.request("forward", key, token, return_sequences, (x, mask, h0, c0, keep, *weights))
            sent.append((worker, token))
        with blas_threads(blas), flush_subnormals():
            results = [loops.forward_rows(weights, *inputs[0], return_sequences, spare, side)]
        results += [(worker.reply()[0], RemoteCache(worker, token)) for worker, token in sent]
    except BaseException:      # replies may be left in a pipe: start afresh
        _reset_workers()
        raise
    return results


def backward_parts(douts, caches, blas=1, side=False):
    """loops.backward_rows(dout, cache) for each part, each where its forward ran; blas: BLAS's
    threads for the part run here, side: whether it uses a side thread (`side_thread`)."""
    remote = list(zip(douts[1:], caches[1:]))
    if any(cache.worker not in _workers for _, cache in remote):
        raise ValueError("this LSTM cache was lost when its worker restarted: run forward again")
    try:
        for dout, cache in remote:
            cache.worker.request("backward", None, cache.token, None, (dout,))
            cache.spend()
        with blas_threads(blas), flush_subnormals():
            results = [loops.backward_rows(douts[0], caches[0], side)]
        for _, cache in remote:
            dx, dh0, dc0, *grads = cache.worker.reply()   # flat, as `_run_part` sends it
            results.append((dx, (dh0, dc0), grads))
    except BaseException:      # replies may be left in a pipe: start afresh
        _reset_workers()
        raise
    return results


def _serve(conn, parents_end):
    """A worker's loop: run the LSTM parts the parent sends, keep their caches until backward."""
    parents_end.close()
    for sibling in _workers:     # inherited by fork: closed, so that they see the parent go
        sibling.conn.close()
    _workers.clear()
    for signum in (signal.SIGINT, signal.SIGTERM):     # sent to the whole group: the parent's to handle
        signal.signal(signum, signal.SIG_IGN)
    _set_blas_threads(1)
    spares, caches = {}, {}      # each layer's spare arrays (by key), each part's cache (by token)
    mailbox = Mailbox()
    while True:
        try:
            op, key, token, payload, arrays, errors, dropped, dropped_layers = conn.recv()
        except (EOFError, OSError):                # the parent has gone
            return
        for t in dropped:
            caches.pop(t, None)
        for k in dropped_layers:
            spares.pop(k, None)
        try:
            if op == "mailbox":                        # a larger one: its memfd follows
                fd = multiprocessing.reduction.recv_handle(conn)
                try:
                    mailbox = Mailbox(fd, payload)
                finally:
                    os.close(fd)
                reply = ("ok", ())
            else:
                with np.errstate(**errors), flush_subnormals():
                    reply = ("ok", mailbox.pack(_run_part(op, key, token, payload,
                                                          mailbox.unpack(arrays), spares, caches)))
        except Exception as e:
            reply = ("error", e.with_traceback(None))  # its frames would hold the part's arrays
        try:
            conn.send(reply)
        except OSError:                            # the parent has gone
            return
        except Exception as e:                     # an exception that does not pickle
            conn.send(("error", RuntimeError(f"in an LSTM worker: {type(e).__name__}: {e}")))


def _run_part(op, key, token, payload, arrays, spares, caches):
    """A worker's forward or backward of one part: the tuple of arrays to answer with.

    A function of its own so that no local variable of the loop holds a part's cache past its
    request: when the parent drops a cache (a forward with no backward, in evaluation), its
    buffers must be free for the next forward to reuse. (They were not, once: that forward then
    paid for fresh pages, and the bench's 2-core forward + backward took 160 ms instead of 95.)
    """
    if op == "forward":
        return_sequences = payload
        x, mask, h0, c0, keep, *weights = arrays
        # forward_rows copies x, mask, state and keep into its own arrays, but its cache keeps
        # the weights, and the next message overwrites the mailbox: copies of them
        weights = [np.array(w) for w in weights]
        spare = spares.setdefault(key, loops.SpareArrays())   # the layer's buffers in this worker
        out, cache = loops.forward_rows(weights, x, mask, None if h0 is None else (h0, c0), keep,
                                        return_sequences, spare)
        caches[token] = cache
        return (out,)
    if token not in caches:
        raise ValueError("this LSTM cache was used by an earlier backward: run forward again")
    dx, (dh0, dc0), grads = loops.backward_rows(arrays[0], caches.pop(token))
    return (dx, dh0, dc0, *grads)    # flat, so that every large array goes through the mailbox
