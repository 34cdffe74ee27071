"""The worker processes that run parts of a batch's rows: forked, fed through pipes, replaced when lost.

`forward_parts` runs the first part of a batch in the calling process and sends each other part,
with the layer's weights, to a worker process, which runs the whole time loop on those rows
(`forward.forward_rows`) and keeps their cache until the backward pass (`backward_parts`). A part
costs one message each way per pass: its inputs and weights out, its outputs back, the large
arrays among them through memory shared with that worker (`mailbox.Mailbox`). The pipes serve one
caller at a time: run LSTMs from one thread of a process. While a part runs, BLAS is held at one
thread (`cores.blas_threads`) and subnormal numbers are flushed to zero (`fpu`).

Workers are forked on first use or by `start_workers` (Linux only; elsewhere every part runs in
the calling process), ignore Ctrl-C and SIGTERM (the parent handles them) and exit when the parent
goes. A worker that dies (killed, out of memory) is a `WorkerLost` for the caller, after every
worker has been stopped; the next pass forks fresh ones, and where fork is refused a part runs in
the calling process instead (`_InProcess`), with the same split and so the same sums.
"""
import atexit
import contextlib
import itertools
import multiprocessing
import multiprocessing.reduction
import multiprocessing.util  # noqa: F401  (registers its exit handler before ours: see reset_workers)
import os
import pickle
import signal
import sys
import weakref

import numpy as np

from ..errors import NumpyLSTMError
from .backward import backward_rows
from .cores import blas_threads, get_num_processes, set_blas_threads
from .forward import forward_rows
from .fpu import flush_subnormals
from .mailbox import Mailbox, is_large, room
from .spare import SpareArrays


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


def usable_workers(n):
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
    """Fork the workers now, for get_num_processes() cores, rather than at the first LSTM pass.

    A worker is a copy of its parent at the fork: what the parent holds then stays shared until
    written, but counts in the worker's resident size too. Forked before the data is loaded, a
    worker holds only the code and its own buffers.
    """
    usable_workers(get_num_processes() - 1)


def reset_workers():
    """Stop every worker (after an interruption leaves a pipe mid-message); new ones start on demand."""
    while _workers:
        _workers.pop().close()


# At exit, before multiprocessing's own handler (registered earlier, so run later), which would
# stop the workers with SIGTERM and wait for them.
atexit.register(reset_workers)


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

    def release(self):
        """Called once backward is sent: the worker drops the cache itself after it."""
        self._finalizer.detach()


_tokens = itertools.count()


def forward_parts(weights, return_sequences, inputs, key, spare, blas=1, side=False):
    """forward_rows on each part: the first here, the others in workers.

    weights: [kernel, recurrent_kernel, bias]; inputs: one (x, mask, initial_state, keep) per
    part; key: the layer's `new_layer_key`; spare: its SpareArrays, for the part run here;
    blas: BLAS's threads for that part (workers run theirs at one); side: whether that part
    uses a side thread (`cores.side_thread`).
    Returns [(out, cache)]: the caches of the workers' parts are RemoteCache handles.
    """
    workers = usable_workers(len(inputs) - 1)
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
            results = [forward_rows(weights, *inputs[0], return_sequences, spare, side)]
        results += [(worker.reply()[0], RemoteCache(worker, token)) for worker, token in sent]
    except BaseException:      # replies may be left in a pipe: start afresh
        reset_workers()
        raise
    return results


def backward_parts(douts, caches, blas=1, side=False):
    """backward_rows(dout, cache) for each part, each where its forward ran; blas: BLAS's
    threads for the part run here, side: whether it uses a side thread (`cores.side_thread`)."""
    remote = list(zip(douts[1:], caches[1:]))
    if any(cache.worker not in _workers for _, cache in remote):
        raise ValueError("this LSTM cache was lost when its worker restarted: run forward again")
    try:
        for dout, cache in remote:
            cache.worker.request("backward", None, cache.token, None, (dout,))
            cache.release()
        with blas_threads(blas), flush_subnormals():
            results = [backward_rows(douts[0], caches[0], side)]
        for _, cache in remote:
            dx, dh0, dc0, *grads = cache.worker.reply()   # flat, as `_run_part` sends it
            results.append((dx, (dh0, dc0), grads))
    except BaseException:      # replies may be left in a pipe: start afresh
        reset_workers()
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
    set_blas_threads(1)
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
    buffers must be free for the next forward to reuse, or it pays for fresh pages
    (docs/engine.md, "A worker frees a dropped forward's buffers").
    """
    if op == "forward":
        return_sequences = payload
        x, mask, h0, c0, keep, *weights = arrays
        # forward_rows copies x, mask, state and keep into its own arrays, but its cache keeps
        # the weights, and the next message overwrites the mailbox: copies of them
        weights = [np.array(w) for w in weights]
        spare = spares.setdefault(key, SpareArrays())   # the layer's buffers in this worker
        out, cache = forward_rows(weights, x, mask, None if h0 is None else (h0, c0), keep, return_sequences, spare)
        caches[token] = cache
        return (out,)
    if token not in caches:
        raise ValueError("this LSTM cache was used by an earlier backward: run forward again")
    dx, (dh0, dc0), grads = backward_rows(arrays[0], caches.pop(token))
    return (dx, dh0, dc0, *grads)    # flat, so that every large array goes through the mailbox
