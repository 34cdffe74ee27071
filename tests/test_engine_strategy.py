"""How the engine uses the cores by shape (engine.cores.plan_cores, engine.strategy), and that each way
computes what reference.py computes in float64: rows over processes, one process with BLAS's
threads, one process on one core with no worker forked; and the loops' blocks of steps."""
import threading
import time

import numpy as np
import pytest

from numpy_lstm import LSTM, engine, set_num_processes
from numpy_lstm.engine import backward, forward, spare, workers
from numpy_lstm.engine.sidethread import SideThread

TOL = {"rtol": 1e-10, "atol": 1e-12}


@pytest.fixture
def fresh_workers():
    """No worker at the start of the test, none left after it, the default core count after it."""
    workers.reset_workers()
    yield
    workers.reset_workers()
    set_num_processes(None)


def twins(E, H, return_sequences=False, seed=0, recurrent_dropout=0.0):
    """LSTM(implementation="fast") and ("reference"), float64, equal random weights and biases."""
    fast, ref = (LSTM(E, H, np.random.default_rng(seed), return_sequences, np.float64, recurrent_dropout,
                      implementation=impl) for impl in ("fast", "reference"))
    rng = np.random.default_rng(seed + 1)
    for a, b in zip(fast.weights, ref.weights):
        a[...] = rng.normal(size=a.shape) * 0.3
        b[...] = a
    return fast, ref


def case(B, T, E, H, return_sequences, masked, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, E))
    state = (rng.normal(size=(B, H)), rng.normal(size=(B, H)))
    mask = None
    if masked:
        lengths = rng.integers(0, T + 1, B)
        lengths[0] = T
        mask = np.arange(T)[None, :] >= (T - lengths)[:, None]          # pre-padding
        mask[0, T // 2] = False                                           # and a hole
    dout = rng.normal(size=(B, T, H) if return_sequences else (B, H))
    return x, mask, state, dout


def both(fast, ref, x, mask, state, dout, dropout_seed=None):
    """[out, dx, dh0, dc0, dkernel, drecurrent, dbias] of each; with dropout_seed, the layers'
    recurrent dropout draws its keep mask from a generator of that seed, the same for both."""
    results = []
    for layer in (fast, ref):
        rng = None if dropout_seed is None else np.random.default_rng(dropout_seed)
        out, cache = layer.forward(x, mask, state, rng)
        dx, (dh0, dc0), grads = layer.backward(dout, cache)
        results.append([out, dx, dh0, dc0] + grads)
    return results


def assert_equal_to_reference(got, expected):
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, **TOL)


@pytest.mark.parametrize("B, H, cores, plan, words", [
    (1, 100, 2, (1, 1), "one process, one thread"),           # one review: no worker
    (4, 100, 2, (1, 1), "one process, one thread"),           # 400 elements a step: GIL held
    (7, 100, 2, (1, 1), "one process, block matmuls on a side thread"),
    (15, 100, 2, (1, 1), "one process, block matmuls on a side thread"),   # two parts: under 8 rows
    (15, 100, 1, (1, 1), "one process, one thread"),          # no second core
    (16, 100, 2, (2, 1), "rows split over 2 processes"),
    (256, 100, 2, (2, 1), "rows split over 2 processes"),
    (64, 100, 4, (4, 1), "rows split over 4 processes"),
    (64, 255, 2, (2, 1), "rows split over 2 processes"),
    (64, 256, 2, (2, 1), "rows split over 2 processes"),      # many units, 32 rows a part
    (63, 256, 2, (1, 2), "one process, BLAS 2 threads"),      # fewer: weights read once a step
    (16, 1024, 2, (1, 2), "one process, BLAS 2 threads"),
    (128, 1024, 4, (4, 1), "rows split over 4 processes"),
    (1, 1024, 2, (1, 2), "one process, BLAS 2 threads"),
    (256, 100, 1, (1, 1), "one process, one thread"),
    (16, 1024, 1, (1, 1), "one process, one thread"),
])
def test_the_strategy_for_a_shape_is_the_documented_one(fresh_workers, B, H, cores, plan, words):
    assert engine.cores.plan_cores(B, H, cores) == plan
    assert engine.strategy(B, H, cores) == words
    assert not workers._workers                     # choosing forks nothing


@pytest.mark.parametrize("B", [1, 3, 7])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_small_batch_runs_here_without_forking(fresh_workers, B, return_sequences):
    set_num_processes(2)
    fast, ref = twins(4, 5, return_sequences)
    got, expected = both(fast, ref, *case(B, 6, 4, 5, return_sequences, masked=True))
    assert_equal_to_reference(got, expected)
    assert not workers._workers


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_blas_threads_path_equals_reference(monkeypatch, fresh_workers, masked, return_sequences):
    B, T, E, H = 3, 5, 4, engine.cores.BLAS_THREADS_MIN_UNITS
    set_num_processes(2)
    seen = []
    run_rows = workers.forward_rows

    def watched(*args):                       # the BLAS threads that the part runs with
        seen.append(engine.cores.get_blas_threads())
        return run_rows(*args)

    monkeypatch.setattr(workers, "forward_rows", watched)
    fast, ref = twins(E, H, return_sequences)
    got, expected = both(fast, ref, *case(B, T, E, H, return_sequences, masked))
    assert_equal_to_reference(got, expected)
    assert not workers._workers               # one process
    if engine.cores.blas_thread_control():
        assert seen == [2]


def test_blas_threads_are_reached_through_threadpoolctl():
    """NumPy's BLAS is found (this project's wheels bundle OpenBLAS), and its count can be held."""
    assert engine.cores.blas_thread_control()
    before = engine.cores.get_blas_threads()
    with engine.cores.blas_threads(1):
        assert engine.cores.get_blas_threads() == 1
        with engine.cores.blas_threads(2):
            assert engine.cores.get_blas_threads() == 2
    assert engine.cores.get_blas_threads() == before


@pytest.mark.parametrize("cores", [1, 2])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_many_blocks_of_steps_equal_reference(fresh_workers, tiny_blocks, cores, masked, return_sequences):
    """Blocks of a few steps: the forward's input-part matmuls, the backward's gate-factor blocks
    and its runs of dx / weight-gradient columns all end mid-sequence, at different steps."""
    set_num_processes(cores)
    B, T, E, H = 16, 13, 3, 4
    fast, ref = twins(E, H, return_sequences)
    x, mask, state, dout = case(B, T, E, H, return_sequences, masked)
    got, expected = both(fast, ref, x, mask, state, dout)
    assert_equal_to_reference(got, expected)
    again, _ = both(fast, ref, x, mask, state, dout)
    for a, b in zip(got, again):                # repeatable bit for bit
        np.testing.assert_array_equal(a, b)


@pytest.fixture(params=[0, 1 << 30], ids=["blocks", "merged blocks"])
def tiny_blocks(monkeypatch, request):
    """Blocks of 1-5 steps at B = 8 or 16 rows (16 rows cut in two parts), so one sequence has several;
    workers forked in the test (fresh_workers) see them too. Backward's blocks of gate factors
    are either left as they are, several to a run of StepColumns, or merged up to the run
    (backward.backward_blocks)."""
    monkeypatch.setattr(forward, "BLOCK_COLUMNS", 40)             # 5 steps of 8 rows, 3 of 16
    monkeypatch.setattr(backward, "BACKWARD_BLOCK", 2 * 8 * 6 * 4)  # 2 steps of 8 rows at H = 4, 1 of 16
    monkeypatch.setattr(backward, "MAX_BACKWARD_BLOCK", request.param)
    yield
    set_num_processes(None)


@pytest.mark.parametrize("cores", [1, 2])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.4])
def test_batch_first_step_matmuls_equal_reference(monkeypatch, fresh_workers, cores, masked, return_sequences,
                                                  recurrent_dropout):
    """The steps' matmuls batch-first (forward.batch_first_step, for many units), here at every size."""
    monkeypatch.setattr(forward, "BATCH_FIRST_MIN_BYTES", 0)
    set_num_processes(cores)
    B, T, E, H = 16, 7, 3, 4
    assert forward.batch_first_step(H, B, np.float64)
    fast, ref = twins(E, H, return_sequences, recurrent_dropout=recurrent_dropout)
    x, mask, state, dout = case(B, T, E, H, return_sequences, masked)
    assert_equal_to_reference(*both(fast, ref, x, mask, state, dout, 5 if recurrent_dropout else None))


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.4])
def test_row_major_recurrent_weights_equal_reference_and_column_major_bit_for_bit(monkeypatch, fresh_workers, masked,
                                                                                 recurrent_dropout):
    """The forward's batch-last step matmul on C-ordered weights (forward.recurrent_order, from
    ROW_MAJOR_MIN_UNITS units), here at a few: the reference's results, and the same bits as on
    F-ordered weights."""
    set_num_processes(1)
    B, T, E, H = 5, 9, 3, 4
    fast, ref = twins(E, H, False, recurrent_dropout=recurrent_dropout)
    x, mask, state, dout = case(B, T, E, H, False, masked)
    column_major = both(fast, ref, x, mask, state, dout, 5 if recurrent_dropout else None)[0]
    monkeypatch.setattr(forward, "ROW_MAJOR_MIN_UNITS", 0)
    assert forward.recurrent_order(H, B, np.float64) == "C"
    results = both(fast, ref, x, mask, state, dout, 5 if recurrent_dropout else None)
    assert_equal_to_reference(*results)
    for a, b in zip(results[0], column_major):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.4])
def test_side_thread_equals_reference_and_one_thread_bit_for_bit(
        monkeypatch, fresh_workers, tiny_blocks, masked, return_sequences, recurrent_dropout):
    """The block matmuls on a side thread (cores.side_thread), here at a size where they would
    not be, over several blocks (tiny_blocks): the forward's input parts and the backward's runs
    of dx and weight-gradient columns, the same sums as on one thread, in the same order, so the
    same bits."""
    monkeypatch.setattr(engine.cores, "GIL_FREE_ELEMENTS", 0)
    B, T, E, H = 8, 13, 3, 4
    fast, ref = twins(E, H, return_sequences, recurrent_dropout=recurrent_dropout)
    x, mask, state, dout = case(B, T, E, H, return_sequences, masked)
    ran_on = []          # (block matmul, whether it ran on the main thread)
    for cls, name in ((forward.InputPart, "_compute"), (backward.StepColumns, "_hold")):
        monkeypatch.setattr(cls, name, watched(getattr(cls, name), name, ran_on))
    results = {}
    for cores in (2, 1):
        set_num_processes(cores)
        ran_on.clear()
        results[cores], expected = both(fast, ref, x, mask, state, dout, 5 if recurrent_dropout else None)
        assert_equal_to_reference(results[cores], expected)
        for name in ("_compute", "_hold"):      # several blocks each, on the side at 2 cores
            on_main = [main for n, main in ran_on if n == name]
            assert len(on_main) > 2
            first_on_main = name == "_compute"    # the forward's first block: at once, here
            assert on_main == [cores == 1 or first_on_main] + [cores == 1] * (len(on_main) - 1)
    assert engine.strategy(B, H, 2) == "one process, block matmuls on a side thread"
    for a, b in zip(results[2], results[1]):
        np.testing.assert_array_equal(a, b)


def watched(method, name, calls):
    """method, appending (name, whether on the main thread) to calls at each call."""
    def run(self, *args):
        calls.append((name, threading.current_thread() is threading.main_thread()))
        return method(self, *args)
    return run


@pytest.mark.parametrize("fails", ["forward's side thread", "backward's side thread", "backward's step loop"])
def test_an_error_on_either_thread_reaches_the_caller_and_the_side_thread_ends(monkeypatch, tiny_blocks, fails):
    B, T, E, H = 8, 30, 3, 4
    fast, _ = twins(E, H)
    x, _, _, dout = case(B, T, E, H, False, False)
    where = {"forward's side thread": (forward.InputPart, "_compute"),
             "backward's side thread": (backward.StepColumns, "_hold"),
             "backward's step loop": (backward, "bptt_block")}[fails]
    method = getattr(*where)

    def broken(*args):
        on_main = threading.current_thread() is threading.main_thread()
        if on_main == fails.endswith("side thread"):      # the forward's first block, here
            return method(*args)
        raise MemoryError(fails)

    monkeypatch.setattr(*where, broken)
    with pytest.raises(MemoryError, match=fails):
        out, cache = forward.forward_rows(fast.weights, x, None, None, None, False, spare.SpareArrays(), True)
        backward.backward_rows(dout, cache, side_thread=True)
    assert not [t for t in threading.enumerate() if t.name == SideThread.NAME]


def test_an_interrupted_forward_skips_the_input_parts_still_queued(monkeypatch, tiny_blocks):
    """The main loop gives up after its first block: the side thread finishes the block under
    way and skips the rest, rather than computing every block's input part first."""
    B, T, E, H = 8, 30, 3, 4                  # six blocks of five steps
    fast, _ = twins(E, H)
    x, _, _, _ = case(B, T, E, H, False, False)
    compute, ready, computed = forward.InputPart._compute, forward.InputPart.ready, []

    def slow(self, lo, hi):
        computed.append(lo)
        time.sleep(0.05)
        compute(self, lo, hi)

    def interrupted(self, k):
        if k == 1:
            raise KeyboardInterrupt
        return ready(self, k)

    monkeypatch.setattr(forward.InputPart, "_compute", slow)
    monkeypatch.setattr(forward.InputPart, "ready", interrupted)
    with pytest.raises(KeyboardInterrupt):
        forward.forward_rows(fast.weights, x, None, None, None, False, spare.SpareArrays(), True)
    assert computed[0] == 0 and len(computed) < 6     # the first block here, not every block
    assert not [t for t in threading.enumerate() if t.name == SideThread.NAME]
