"""Thread control for the LSTM's time loop: how many worker threads, and OpenBLAS's own threads.

The recurrence is a chain of small matmuls and element-wise ops. OpenBLAS's threads do not pay on
matrices that small (they often make them slower, and much slower on a busy machine), while the
rows of a batch are independent: `run_split` runs one function per slice of the batch rows, each
slice in its own Python thread. NumPy releases the GIL inside matmul and ufunc loops, so the
threads overlap; while they run, OpenBLAS is held at one thread so that the two kinds of thread
do not fight over the cores.

The worker count is `set_num_threads(n)`, else the environment variable NUMPY_LSTM_THREADS, else
the number of CPUs this process may use, capped at `MAX_DEFAULT_THREADS`. The same count is given
to OpenBLAS for the large matmuls outside the loop.

OpenBLAS is reached through ctypes, by the `*openblas_set_num_threads*` symbol of the copy that
NumPy has loaded. When none is found (another BLAS, or a renamed symbol) the helpers do nothing and
`blas_thread_control()` is False; results are the same, only the timings differ.
"""
import contextlib
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

MAX_DEFAULT_THREADS = 4
MIN_ROWS_PER_THREAD = 8   # fewer rows than this per thread and the split costs more than it gains
MIN_SPLIT_FLOPS = 1 << 22  # a matmul smaller than this runs whole in the calling thread
COLUMN_ALIGN = 16          # column blocks of a shared-out matmul start at multiples of this

_SET_NAMES = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
              "openblas_set_num_threads64_", "openblas_set_num_threads")
_GET_NAMES = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
              "openblas_get_num_threads64_", "openblas_get_num_threads")

_num_threads = None          # set by set_num_threads; None means "from the environment"
_pool = None
_pool_size = 0
_pool_lock = threading.Lock()
_blas_lock = threading.Lock()
_blas_holders = 0            # how many callers currently hold OpenBLAS at a fixed count
_blas_saved = None           # OpenBLAS's thread count before the first of them


def _find_openblas():
    """(set_num_threads, get_num_threads) of the OpenBLAS that NumPy loaded, or (None, None)."""
    import numpy  # noqa: F401  (make sure NumPy, and so its BLAS, is loaded)
    paths = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1]
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:  # not Linux: look the symbols up in what the process has already loaded
        paths = [None]
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(lib, n) for n in _SET_NAMES if hasattr(lib, n)), None)
        getter = next((getattr(lib, n) for n in _GET_NAMES if hasattr(lib, n)), None)
        if setter is not None and getter is not None:
            setter.argtypes, setter.restype = [ctypes.c_int], None
            getter.argtypes, getter.restype = [], ctypes.c_int
            return setter, getter
    return None, None


_blas_set, _blas_get = _find_openblas()


def blas_thread_control():
    """True when OpenBLAS's thread count can be read and set from here."""
    return _blas_set is not None


def get_blas_threads():
    """OpenBLAS's current thread count, or None when it cannot be read."""
    return _blas_get() if _blas_get is not None else None


def _default_threads():
    env = os.environ.get("NUMPY_LSTM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"NUMPY_LSTM_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"NUMPY_LSTM_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_THREADS))


def get_num_threads():
    """Worker threads the LSTM uses (and OpenBLAS's count for the matmuls outside the loop)."""
    return _num_threads if _num_threads is not None else _default_threads()


def set_num_threads(n):
    """Set the LSTM's worker thread count; None goes back to NUMPY_LSTM_THREADS / the CPU count.

    Results do not depend on it: every row of the batch is computed the same way whatever the
    split, and the weight gradients are summed over the whole batch after the threads join.
    """
    global _num_threads
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"the number of threads must be a positive integer, got {n!r}")
    _num_threads = n


@contextlib.contextmanager
def blas_threads(n):
    """Hold OpenBLAS at n threads inside the block, then restore the count found at entry.

    Nested or concurrent blocks share one saved value: the first to enter saves it and the last
    to leave restores it. OpenBLAS's setting is process-wide.
    """
    global _blas_holders, _blas_saved
    if _blas_set is None:
        yield
        return
    with _blas_lock:
        if _blas_holders == 0:
            _blas_saved = _blas_get()
        _blas_holders += 1
        _blas_set(n)
    try:
        yield
    finally:
        with _blas_lock:
            _blas_holders -= 1
            if _blas_holders == 0:
                _blas_set(_blas_saved)


def split_rows(rows, threads=None):
    """Cut range(rows) into contiguous (start, stop) slices, one per worker, sizes within one."""
    threads = get_num_threads() if threads is None else threads
    parts = max(1, min(threads, rows // MIN_ROWS_PER_THREAD))
    bounds = [rows * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _executor(workers):
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="numpy_lstm")
            _pool_size = workers
        return _pool


def run_split(fn, slices):
    """Call fn(start, stop) for every slice, concurrently, with OpenBLAS held at one thread.

    The calling thread takes the first slice itself. An exception in any slice is raised here,
    after all of them have finished.
    """
    with blas_threads(1):
        if len(slices) == 1:
            fn(*slices[0])
            return
        # np.errstate is per thread: the workers get the caller's settings so that, say, a
        # training loop that silences overflow (and reports a non-finite loss) is obeyed.
        errors = np.geterr()

        def in_callers_errstate(*s):
            with np.errstate(**errors):
                fn(*s)

        futures = [_executor(len(slices) - 1).submit(in_callers_errstate, *s) for s in slices[1:]]
        error = None
        try:
            fn(*slices[0])
        except BaseException as e:  # still wait for the others: they write into shared arrays
            error = e
        for future in futures:
            try:
                future.result()
            except BaseException as e:
                error = error or e
        if error is not None:
            raise error


def matmul_columns(a, b, threads=None):
    """a @ b, with the columns of b (and of the result) shared out among the worker threads.

    Used for the large matmuls outside the time loop instead of OpenBLAS's own threads, which
    we found to stall badly when the machine is busy. Each column block is its own BLAS call;
    the result equals a @ b up to float rounding (OpenBLAS may block a sub-matrix differently).
    """
    threads = get_num_threads() if threads is None else threads
    (M, K), N = a.shape, b.shape[1]
    out = np.empty((M, N), np.result_type(a, b))
    parts = max(1, min(threads, N // COLUMN_ALIGN))
    if 2 * M * K * N < MIN_SPLIT_FLOPS:
        parts = 1
    # Block k starts at k * N / parts, rounded down to a multiple of COLUMN_ALIGN.
    cuts = [(N * k // parts) // COLUMN_ALIGN * COLUMN_ALIGN for k in range(parts)] + [N]
    slices = [(c0, c1) for c0, c1 in zip(cuts[:-1], cuts[1:]) if c1 > c0]

    def block(c0, c1):
        np.matmul(a, b[:, c0:c1], out=out[:, c0:c1])

    run_split(block, slices)
    return out
