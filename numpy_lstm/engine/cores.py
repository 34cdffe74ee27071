"""How the LSTM uses the cores for a shape: rows over processes, BLAS's threads, or a side thread.

The recurrence is a chain of matmuls and element-wise ops. At few units (H below
BLAS_THREADS_MIN_UNITS) they are small: BLAS's threads do not pay on them (they often make them
slower, and much slower on a busy machine), while the rows of a batch are independent. So a batch
large enough is cut into parts of rows, one per process (`plan_cores`; numpy_lstm/engine/workers.py
runs them), each the whole time loop on its own rows. Processes, not threads: at such shapes most
NumPy calls take a few microseconds, and two threads of one process would spend much of that
waiting for each other's interpreter lock. While parts run, BLAS is held at one thread
(`blas_threads`), so that its threads and our processes do not fight over the cores.

At many units the step's matmul is large enough for BLAS's threads, and with few rows per part
it is bound by reading the recurrent weights, which every part would read again: one process
runs the batch with BLAS on every core, unless each part would get MIN_ROWS_PER_PART_MANY_UNITS
rows. A batch too small to split keeps the second core for the matmuls that run a block of steps
at a time (`side_thread`). docs/engine.md has the measurements behind each threshold.

The core count is `set_num_processes(n)`, else the environment variable NUMPY_LSTM_PROCESSES,
else the number of CPUs this process may use, capped at MAX_DEFAULT_PROCESSES. n cores means
the calling process and up to n - 1 worker processes, or BLAS at n threads. A count above
PROCESSES_PER_CPU times the CPUs is refused: each core beyond the first is a process, which
`start_workers` forks up front. The older names, NUMPY_LSTM_THREADS and set_num_threads /
get_num_threads, still work, with a deprecation notice.

The BLAS that NumPy loaded is reached through threadpoolctl (OpenBLAS, MKL or BLIS). Where it
finds none, the BLAS helpers do nothing and `blas_thread_control()` is False; results are the
same, only the timings differ.
"""
import contextlib
import os
import sys
import threading
import warnings

from threadpoolctl import ThreadpoolController

from ..errors import NumpyLSTMError

MAX_DEFAULT_PROCESSES = 4
PROCESSES_PER_CPU = 4     # more processes than this per CPU only wait for each other
MIN_ROWS_PER_PART = 8     # fewer rows than this per part and the split costs more than it gains
BLAS_THREADS_MIN_UNITS = 256   # from this many units on, BLAS's threads unless parts get enough rows
MIN_ROWS_PER_PART_MANY_UNITS = 32   # rows per part for a split at BLAS_THREADS_MIN_UNITS or more
# NumPy lets go of the interpreter lock in an element-wise call on more elements than this
# (NPY_BEGIN_THREADS_THRESHOLDED in numpy/ndarraytypes.h): see side_thread
GIL_FREE_ELEMENTS = 500

_num_processes = None        # set by set_num_processes; None means "from the environment"
_old_variable_reported = False
_blas = ThreadpoolController().select(user_api="blas").lib_controllers   # NumPy's, loaded above
_blas_lock = threading.Lock()
_blas_holders = 0            # how many callers currently hold BLAS at a fixed count
_blas_saved = None           # BLAS's thread count before the first of them


# ----------------------------------------------------------------------------- the core count

def _usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _process_count_problem(n):
    """Why n cores cannot be used, or None."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        return "must be a positive integer"
    cpus = _usable_cpus()
    if n > PROCESSES_PER_CPU * cpus:
        return (f"must be at most {PROCESSES_PER_CPU * cpus} ({PROCESSES_PER_CPU} per usable CPU; "
                f"this machine has {cpus})")
    return None


def _environment_count():
    """(variable, its value) of the core count set in the environment, or (None, "")."""
    global _old_variable_reported
    for name in ("NUMPY_LSTM_PROCESSES", "NUMPY_LSTM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value:
            if name == "NUMPY_LSTM_THREADS" and not _old_variable_reported:
                _old_variable_reported = True
                print("numpy-lstm: NUMPY_LSTM_THREADS is deprecated: it counts processes, "
                      "set NUMPY_LSTM_PROCESSES instead", file=sys.stderr)
            return name, value
    return None, ""


def _default_processes():
    name, value = _environment_count()
    if not name:
        return max(1, min(_usable_cpus(), MAX_DEFAULT_PROCESSES))
    try:
        n = int(value)
    except ValueError:
        n = None
    problem = _process_count_problem(n)
    if problem:
        raise NumpyLSTMError(f"{name} {problem}, got {value!r}")
    return n


def get_num_processes():
    """Cores the LSTM uses: the calling process and get_num_processes() - 1 worker processes."""
    return _num_processes if _num_processes is not None else _default_processes()


def set_num_processes(n):
    """Set the LSTM's core count; None goes back to NUMPY_LSTM_PROCESSES / the CPU count.

    Outputs and input gradients do not depend on it: every row of the batch is computed the same
    way whatever the split. The weight gradients are sums of one per part, so they change with
    it by float rounding only; for a given count, results are repeatable.
    """
    global _num_processes
    problem = None if n is None else _process_count_problem(n)
    if problem:
        raise ValueError(f"the number of processes {problem}, got {n!r}")
    _num_processes = n


def get_num_threads():
    """Deprecated: get_num_processes (the count was always one of processes)."""
    warnings.warn("get_num_threads is deprecated: use get_num_processes", DeprecationWarning, stacklevel=2)
    return get_num_processes()


def set_num_threads(n):
    """Deprecated: set_num_processes (the count was always one of processes)."""
    warnings.warn("set_num_threads is deprecated: use set_num_processes", DeprecationWarning, stacklevel=2)
    set_num_processes(n)


# ----------------------------------------------------------------------------- BLAS's threads

def blas_thread_control():
    """True when BLAS's thread count can be read and set from here."""
    return bool(_blas)


def get_blas_threads():
    """BLAS's current thread count, or None when it cannot be read."""
    return _blas[0].get_num_threads() if _blas else None


def blas_architecture():
    """The CPU family whose kernels BLAS runs (OpenBLAS's "Haswell", "SkylakeX", "Zen", ...), or
    None when BLAS does not say: which orientation of a matmul is faster depends on it."""
    return getattr(_blas[0], "architecture", None) if _blas else None


def set_blas_threads(n):
    """Set BLAS's thread count for the whole process (blas_threads, for a block)."""
    for lib in _blas:
        lib.set_num_threads(n)


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
        set_blas_threads(n)
    try:
        yield
    finally:
        with _blas_lock:
            _blas_holders -= 1
            if _blas_holders == 0:
                set_blas_threads(_blas_saved)


# ----------------------------------------------------------------------------- the plan for a shape

def plan_cores(rows, units, cores=None):
    """(parts, blas_threads): how an LSTM of `units` H runs a batch of `rows` B on `cores`.

    - H < BLAS_THREADS_MIN_UNITS, or parts of at least MIN_ROWS_PER_PART_MANY_UNITS rows: the
      rows cut into up to `cores` parts of at least MIN_ROWS_PER_PART, one process each, BLAS at
      one thread (its threads would fight the processes for the cores); a batch of fewer than
      2 * MIN_ROWS_PER_PART rows is one part, and no worker is forked for it.
    - otherwise (many units, few rows a part): one part, BLAS on every core.
    cores: default get_num_processes().

    BLAS's threads share only the matmuls (the element-wise work, a third of the time at
    H = 256, stays on one core) and, on a machine whose other jobs keep a core busy, they wait
    for each other on every call; parts of rows run whole steps on their own core.
    """
    cores = get_num_processes() if cores is None else cores
    parts = max(1, min(cores, rows // MIN_ROWS_PER_PART))
    if units < BLAS_THREADS_MIN_UNITS or rows // parts >= MIN_ROWS_PER_PART_MANY_UNITS:
        return parts, 1
    return 1, cores


def side_thread(rows, units, cores=None):
    """Whether the part run here computes its block matmuls (the forward's input part, the
    backward's dx and weight gradients) on a `sidethread.SideThread`, beside the steps: when
    `plan_cores` leaves a core idle (one part, BLAS at one thread, two cores or more) and the
    step's element-wise calls, on (H, B) blocks, exceed GIL_FREE_ELEMENTS, so that the two
    threads seldom wait for each other's interpreter lock. Below that size the side thread
    would wait for the lock while the steps hold it, and gain nothing.
    """
    cores = get_num_processes() if cores is None else cores
    return cores >= 2 and plan_cores(rows, units, cores) == (1, 1) and rows * units > GIL_FREE_ELEMENTS


def strategy(B, H, cores=None):
    """How a batch of B rows and H units runs on `cores` (default get_num_processes()), in words:
    "rows split over n processes", "one process, BLAS n threads", "one process, block matmuls on
    a side thread" (`side_thread`) or "one process, one thread" (`plan_cores`; where fork is
    refused, the parts run one after another in this process, split the same way; off Linux, in
    one part)."""
    parts, blas = plan_cores(B, H, cores)
    if parts > 1:
        return f"rows split over {parts} processes"
    if blas > 1:
        return f"one process, BLAS {blas} threads"
    if side_thread(B, H, cores):
        return "one process, block matmuls on a side thread"
    return "one process, one thread"
