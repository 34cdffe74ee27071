"""The fast paths give the plain path's answers: parts run by worker processes, skipped padding,
reused buffers; and the workers fail loudly and go away with their parent."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from numpy_lstm import LSTM, Embedding, NumpyLSTMError, check_gradient
from numpy_lstm.engine import backward, batch, cores, forward, fpu, mailbox, spare, workers


@pytest.fixture
def tiny_parts(monkeypatch):
    """Let the batch be cut into parts of a single row, so small tests exercise the split."""
    monkeypatch.setattr(cores, "MIN_ROWS_PER_PART", 1)
    yield
    cores.set_num_processes(None)


def run(layer, x, mask, state, dout_seed=1, dropout_seed=None):
    """Forward and backward once: [out, dx, dh0, dc0, dkernel, drecurrent, dbias]."""
    rng = None if dropout_seed is None else np.random.default_rng(dropout_seed)
    out, cache = layer.forward(x, mask, state, rng)
    dout = np.random.default_rng(dout_seed).normal(size=out.shape)
    dx, (dh0, dc0), grads = layer.backward(dout, cache)
    return [out, dx, dh0, dc0] + grads


def make_case(B, T=7, E=4, H=5, return_sequences=False, masked=False, seed=0):
    rng = np.random.default_rng(seed)
    layer = LSTM(E, H, rng, return_sequences=return_sequences, dtype=np.float64)
    layer.bias[:] = rng.normal(size=layer.bias.shape)
    x = rng.normal(size=(B, T, E))
    state = (rng.normal(size=(B, H)), rng.normal(size=(B, H)))
    mask = None
    if masked:
        lengths = rng.integers(0, T + 1, B)          # pre-padding, some rows empty, some full
        mask = np.arange(T)[None, :] >= (T - lengths)[:, None]
        if masked == "holes" and B > 2:
            mask[B // 2, T // 2] = False              # a hole in the middle of a row
    return layer, x, mask, state


@pytest.mark.parametrize("B", [1, 2, 5, 13])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("masked", [None, "pre", "holes"])
@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.3])
def test_split_matches_one_process(tiny_parts, B, return_sequences, masked, recurrent_dropout):
    layer, x, mask, state = make_case(B, return_sequences=return_sequences, masked=masked)
    layer.recurrent_dropout.rate = recurrent_dropout
    cores.set_num_processes(1)
    expected = run(layer, x, mask, state, dropout_seed=4)
    for threads in (2, 3, 4):                     # 13 rows: parts of 6/7, 4/4/5, 3/3/3/4
        cores.set_num_processes(threads)
        got = run(layer, x, mask, state, dropout_seed=4)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_default_split_is_deterministic_and_equal():
    """At the real minimum part size: repeatable for a core count, equal across counts."""
    layer, x, mask, state = make_case(37, T=9, E=6, H=8, masked="pre", seed=2)
    cores.set_num_processes(1)
    expected = run(layer, x, mask, state)
    try:
        for threads in (2, 3, 4):
            cores.set_num_processes(threads)
            first = run(layer, x, mask, state)
            again = run(layer, x, mask, state)
            for a, b, c in zip(first, again, expected):
                np.testing.assert_array_equal(a, b)
                np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-13)
    finally:
        cores.set_num_processes(None)


@pytest.mark.parametrize("threads, B, T, return_sequences, masked, seed", [
    (3, 5, 6, True, "pre", 3),
    (2, 6, 5, False, "pre", 11),
    (2, 6, 5, False, "holes", 11),
])
def test_split_gradients_check_numerically(tiny_parts, threads, B, T, return_sequences, masked, seed):
    cores.set_num_processes(threads)
    layer, x, mask, (h0, c0) = make_case(B, T, 3, 4, return_sequences=return_sequences, masked=masked, seed=seed)
    out, cache = layer.forward(x, mask, (h0, c0))
    dout = np.random.default_rng(seed + 1).normal(size=out.shape)
    dx, (dh0, dc0), grads = layer.backward(dout, cache)
    f = lambda: layer.forward(x, mask, (h0, c0))[0]  # noqa: E731
    pairs = [(x, dx), (h0, dh0), (c0, dc0)] + list(zip(layer.weights, grads))
    errors = [check_gradient(f, a, dout, g) for a, g in pairs]
    assert max(errors) < 1e-6, errors


def test_prepadded_rows_in_any_order_equal_one_at_a_time(tiny_parts):
    """Rows are reordered by start inside the layer; each must equal its own unpadded run."""
    cores.set_num_processes(3)
    layer, x, mask, _ = make_case(9, T=8, masked="pre", seed=13)
    layer.return_sequences = True
    out, cache = layer.forward(x, mask)
    dout = np.random.default_rng(14).normal(size=out.shape)
    dx, _, _ = layer.backward(dout, cache)
    for b in range(9):
        n = int(mask[b].sum())
        if n == 0:
            assert not out[b].any() and not dx[b].any()
            continue
        out_b, cache_b = layer.forward(x[b:b + 1, 8 - n:])
        np.testing.assert_allclose(out[b, 8 - n:], out_b[0], rtol=1e-12, atol=1e-13)
        assert not out[b, :8 - n].any()               # h stays h0 = 0 over the padding
        dx_b, _, _ = layer.backward(dout[b:b + 1, 8 - n:], cache_b)
        np.testing.assert_allclose(dx[b, 8 - n:], dx_b[0], rtol=1e-10, atol=1e-12)


def test_part_of_all_padding_keeps_state_and_passes_gradient(tiny_parts):
    """A part whose rows are masked at every step runs no step at all."""
    layer, x, _, state = make_case(4, T=5)
    mask = np.ones((4, 5), bool)
    mask[2:] = False                                # the second part of two is all padding
    cores.set_num_processes(2)
    out, cache = layer.forward(x, mask, state)
    np.testing.assert_array_equal(out[2:], state[0][2:])
    dout = np.random.default_rng(5).normal(size=out.shape)
    dx, (dh0, dc0), _ = layer.backward(dout, cache)
    np.testing.assert_array_equal(dh0[2:], dout[2:])
    assert not dc0[2:].any() and not dx[2:].any()


def test_float32_stays_float32():
    rng = np.random.default_rng(6)
    layer = LSTM(3, 4, rng, return_sequences=True)
    x = rng.normal(size=(2, 5, 3)).astype(np.float32)
    out, cache = layer.forward(x, np.ones((2, 5), bool))
    dx, (dh0, dc0), grads = layer.backward(rng.normal(size=out.shape), cache)  # float64 dout
    assert all(a.dtype == np.float32 for a in [out, dx, dh0, dc0] + grads)


def test_cache_is_released_by_backward_and_buffers_are_reused(tiny_parts):
    layer, x, mask, state = make_case(6, masked="holes", seed=7)
    first = run(layer, x, mask, state)
    out, cache = layer.forward(x, mask, state)       # reuses the arrays backward handed back
    layer.backward(np.ones(out.shape), cache)
    with pytest.raises(ValueError, match="run forward again"):
        layer.backward(np.ones(out.shape), cache)
    second = run(layer, x, mask, state)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_forward_without_backward_hands_its_buffers_back(tiny_parts):
    cores.set_num_processes(1)                     # one part, in this process, to look at
    layer, x, mask, state = make_case(6, masked="pre", seed=8)
    expected = run(layer, x, mask, state)
    _, (_, [dropped]) = layer.forward(x, mask, state)
    gates = dropped.gates
    del dropped                                      # evaluation: no backward
    out, cache = layer.forward(x, mask, state)
    assert np.shares_memory(cache[1][0].gates, gates)   # the next forward got the buffers back
    for seed in range(3):                            # more unused forwards leave a live cache be
        layer.forward(np.random.default_rng(seed).normal(size=x.shape), mask, state)
    dout = np.random.default_rng(1).normal(size=out.shape)
    dx, (dh0, dc0), grads = layer.backward(dout, cache)
    for a, b in zip(expected, [out, dx, dh0, dc0] + grads):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("time_major", [False, True])
def test_embedding_backward_equals_scatter_add(time_major):
    rng = np.random.default_rng(8)
    layer = Embedding(11, 3, rng, dtype=np.float64)
    ids = rng.integers(0, 11, (4, 9))
    dout = rng.normal(size=(9, 4, 3)).transpose(1, 0, 2) if time_major else rng.normal(size=(4, 9, 3))
    expected = np.zeros((11, 3))
    np.add.at(expected, ids.ravel(), dout.reshape(-1, 3))
    np.testing.assert_allclose(layer.backward(dout, ids)[0], expected, rtol=1e-12, atol=1e-14)


def test_process_settings(monkeypatch):
    monkeypatch.delenv("NUMPY_LSTM_THREADS", raising=False)
    monkeypatch.setenv("NUMPY_LSTM_PROCESSES", "3")
    cores.set_num_processes(None)
    assert cores.get_num_processes() == 3
    cores.set_num_processes(1)
    assert cores.get_num_processes() == 1
    cores.set_num_processes(None)
    for bad in (0, -1, 1.5, True, 10 ** 9):
        with pytest.raises(ValueError, match="number of processes"):
            cores.set_num_processes(bad)
    monkeypatch.setenv("NUMPY_LSTM_PROCESSES", "many")
    with pytest.raises(NumpyLSTMError, match="NUMPY_LSTM_PROCESSES must be a positive integer"):
        cores.get_num_processes()


def test_the_old_names_still_work_and_say_they_are_deprecated(monkeypatch, capsys):
    monkeypatch.delenv("NUMPY_LSTM_PROCESSES", raising=False)
    monkeypatch.setenv("NUMPY_LSTM_THREADS", "3")
    monkeypatch.setattr(cores, "_old_variable_reported", False)
    try:
        with pytest.warns(DeprecationWarning, match="set_num_processes"):
            cores.set_num_threads(None)
        with pytest.warns(DeprecationWarning, match="get_num_processes"):
            assert cores.get_num_threads() == 3
        assert cores.get_num_processes() == 3
        assert capsys.readouterr().err.count("NUMPY_LSTM_THREADS is deprecated") == 1     # one line, once
        monkeypatch.setenv("NUMPY_LSTM_PROCESSES", "2")                                # the new name wins
        assert cores.get_num_processes() == 2
        monkeypatch.delenv("NUMPY_LSTM_PROCESSES")
        monkeypatch.setenv("NUMPY_LSTM_THREADS", "many")
        with pytest.raises(NumpyLSTMError, match="NUMPY_LSTM_THREADS must be a positive integer"):
            cores.get_num_processes()
    finally:
        cores.set_num_processes(None)


def test_split_rows_covers_the_batch():
    for rows in (1, 7, 16, 17, 64, 129):
        for threads in (1, 2, 3, 8):
            slices = batch.split_rows(rows, threads)
            assert slices[0][0] == 0 and slices[-1][1] == rows
            assert all(a[1] == b[0] for a, b in zip(slices, slices[1:]))
            assert len(slices) == 1 or min(b - a for a, b in slices) >= cores.MIN_ROWS_PER_PART


def test_blas_threads_restores():
    before = cores.get_blas_threads()
    with cores.blas_threads(1):
        if cores.blas_thread_control():
            assert cores.get_blas_threads() == 1
    assert cores.get_blas_threads() == before


MARK = 1234.5   # an input value that makes the patched worker below misbehave


@pytest.fixture
def fresh_workers():
    """Workers forked inside the test (they inherit its patches), and stopped after it."""
    workers.reset_workers()
    yield
    workers.reset_workers()
    cores.set_num_processes(None)


@pytest.mark.parametrize("failure", ["raise", "die"])
def test_worker_failure_reaches_the_caller_and_the_next_call_recovers(monkeypatch, tiny_parts, fresh_workers, failure):
    original = workers.forward_rows

    def misbehaving(weights, x, *args):
        if (x == MARK).any():
            if failure == "die":
                os._exit(3)
            raise ArithmeticError("marked input")
        return original(weights, x, *args)

    monkeypatch.setattr(workers, "forward_rows", misbehaving)
    cores.set_num_processes(2)
    layer, x, mask, state = make_case(4)
    expected = layer.forward(x, mask, state)[0]
    x_bad = x.copy()
    x_bad[3, 0, 0] = MARK                          # row 3 is in the worker's part
    error = (ArithmeticError, "marked input") if failure == "raise" else (RuntimeError, "worker process died")
    with pytest.raises(error[0], match=error[1]):
        layer.forward(x_bad, mask, state)
    np.testing.assert_array_equal(layer.forward(x, mask, state)[0], expected)


def test_workers_exit_when_their_parent_is_killed(tmp_path):
    script = (
        "import os, signal, numpy as np\n"
        "from numpy_lstm import LSTM, set_num_processes\n"
        "from numpy_lstm.engine import workers\n"
        "set_num_processes(2)\n"
        "layer = LSTM(3, 4, np.random.default_rng(0))\n"
        "layer.forward(np.ones((16, 5, 3), np.float32))\n"
        "print(*[w.process.pid for w in workers._workers], flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert pids
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"    # a zombie has exited
    except FileNotFoundError:
        return False


def subnormal(a):
    """Where a is nonzero but below the smallest normal number of its type."""
    return (a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)


@pytest.mark.skipif(not fpu.available(), reason="FTZ/DAZ are reached on x86-64 Linux only")
def test_flush_subnormals_holds_inside_the_block_only():
    small, scale = np.float32(1e-37), np.float32(1e-3)
    assert subnormal(small * scale)                     # 1e-40: representable, subnormal
    with fpu.flush_subnormals():
        assert small * scale == 0                       # FTZ: a subnormal result is 0
        assert np.float32(1e-40) * np.float32(1) == 0   # DAZ: a subnormal input reads as 0
    assert subnormal(small * scale)                     # restored on leaving
    with pytest.raises(KeyError), fpu.flush_subnormals():
        raise KeyError
    assert subnormal(small * scale)                     # and on leaving by an exception


@pytest.mark.skipif(not fpu.available(), reason="FTZ/DAZ are reached on x86-64 Linux only")
@pytest.mark.parametrize("threads", [1, 2])
def test_long_backward_flushes_subnormals_and_changes_nothing_else(threads):
    """500 steps take the early steps' gradients down through the subnormal range. The layer's
    passes (in this process and in a worker) flush them to zero; every value above 1e-30 is what
    the unflushed loop gives on the same rows, to float32 rounding. Both run with OpenBLAS at one
    thread, as the layer's parts do: on the AMD host its 2-thread matmuls round differently, and
    dx has elements that cancel to a few percent of their terms."""
    rng = np.random.default_rng(0)
    layer = LSTM(32, 100, rng)
    x = rng.standard_normal((16, 500, 32), dtype=np.float32)
    plain_dx, plain_grads = [], []
    for rows in np.split(np.arange(16), threads):   # the parts the layer will cut, unflushed
        with cores.blas_threads(1):
            out, cache = forward.forward_rows(layer.weights, x[rows], None, None, None, False,
                                              spare.SpareArrays())
            dx, _, grads = backward.backward_rows(np.ones_like(out), cache)
        plain_dx.append(dx)
        plain_grads.append(grads)
    plain_dx = np.concatenate(plain_dx)
    plain_grads = [sum(g) for g in zip(*plain_grads)]
    assert subnormal(plain_dx).any()                            # the case this test is about
    try:
        cores.set_num_processes(threads)     # 2: two parts of 8 rows, one in a worker
        out, cache = layer.forward(x)
        flushed = layer.backward(np.ones_like(out), cache)
    finally:
        cores.set_num_processes(None)
    assert not subnormal(flushed[0]).any()
    np.testing.assert_allclose(flushed[0], plain_dx, rtol=1e-5, atol=1e-30)
    for got, expected in zip(flushed[2], plain_grads):   # sums over all steps: float32 rounding
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


@pytest.mark.skipif(not fpu.available(), reason="FTZ/DAZ are reached on x86-64 Linux only")
def test_side_thread_computes_in_the_callers_floating_point_environment():
    """The backward's side thread (backward.StepColumns), started by the backward, inherits its
    caller's flush of subnormals: a side thread that did not flush (checked by resetting its
    MXCSR by hand) left 2,008 subnormal values in dx of the early steps of 500, which the
    backward on one thread flushes to zero."""
    rng = np.random.default_rng(0)
    layer = LSTM(32, 100, rng)
    x = rng.standard_normal((8, 500, 32), dtype=np.float32)
    results = []
    for side_thread in (False, True):
        with cores.blas_threads(1), fpu.flush_subnormals():
            out, cache = forward.forward_rows(layer.weights, x, None, None, None, False, spare.SpareArrays())
            dx, _, grads = backward.backward_rows(np.ones_like(out), cache, side_thread)
        results.append([dx] + grads)
    assert (results[0][0] == 0).any() and not subnormal(results[1][0]).any()
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="the mailbox is a Linux memfd")
def test_mailbox_hands_back_large_arrays_in_their_own_layout():
    fd = os.memfd_create("test-mailbox")
    try:
        os.ftruncate(fd, 1 << 20)
        box = mailbox.Mailbox(fd, 1 << 20)
    finally:
        os.close(fd)
    rng = np.random.default_rng(0)
    batch_last = rng.normal(size=(50, 20, 30)).transpose(2, 0, 1)      # memory order (50, 20, 30)
    small = rng.normal(size=(3, 4))
    too_big = rng.normal(size=(400, 400))                              # 1.28 MB: no room left
    packed = box.pack((batch_last, small, too_big, "other"))
    assert isinstance(packed[0], mailbox.Mailed)
    assert packed[1] is small and packed[2] is too_big and packed[3] == "other"
    batch_last_copy = batch_last.copy()
    batch_last[...] = 0.0                                              # the mailbox holds a copy
    got = box.unpack(packed)
    np.testing.assert_array_equal(got[0], batch_last_copy)
    assert np.argsort(got[0].strides).tolist() == np.argsort(batch_last.strides).tolist()
    assert got[1] is small and got[2] is too_big


def test_large_parts_go_through_the_mailbox_and_match_one_process():
    """Parts large enough for the mailbox; a forward's reply (return_sequences) too large for it,
    which makes it grow; then a larger batch: every pass equals the one-process answer."""
    workers.reset_workers()                        # fresh workers: the mailbox starts empty
    try:
        for B in (16, 16, 24):
            layer, x, mask, state = make_case(B, T=300, E=8, H=24, return_sequences=True,
                                              masked="pre", seed=B)
            cores.set_num_processes(1)
            expected = run(layer, x, mask, state)
            cores.set_num_processes(2)
            out, _ = layer.forward(x, mask, state)      # states (B, T, H): 3x the inputs' size
            np.testing.assert_allclose(out, expected[0], rtol=1e-12, atol=1e-13)
            assert workers._workers[0].mailbox.size >= out.nbytes // 2
            got = run(layer, x, mask, state)
            for a, b in zip(got, expected):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    finally:
        cores.set_num_processes(None)


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="workers and memfd are Linux-only")
def test_weights_from_the_mailbox_outlive_the_next_message():
    """Weights large enough for the mailbox (here 264 KB) travel there; the worker's cache keeps
    them until backward, and the next message overwrites the mailbox: a second layer's forward
    between the first's forward and backward must not change the first's gradients."""
    workers.reset_workers()
    try:
        first, x, mask, state = make_case(16, T=20, E=64, H=64, masked="pre", seed=1)
        second, x2, _, _ = make_case(16, T=20, E=64, H=64, seed=2)
        assert first.kernel.nbytes + first.recurrent_kernel.nbytes > 2 * mailbox.Mailbox.MIN_BYTES
        dout = np.random.default_rng(3).normal(size=(16, 64))
        cores.set_num_processes(1)
        _, cache = first.forward(x, mask, state)
        expected = first.backward(dout, cache)
        cores.set_num_processes(2)
        _, cache = first.forward(x, mask, state)
        second.forward(x2)                       # its weights and rows overwrite the mailbox
        dx, (dh0, dc0), grads = first.backward(dout, cache)
        for a, b in zip([dx, dh0, dc0] + grads, [expected[0], *expected[1], *expected[2]]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    finally:
        cores.set_num_processes(None)


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="workers and memfd are Linux-only")
def test_without_memfd_large_parts_go_through_the_pipe(monkeypatch):
    def refused(name):
        raise OSError("memfd_create refused")
    monkeypatch.setattr(os, "memfd_create", refused)
    workers.reset_workers()                        # fresh workers, with no mailbox yet
    try:
        layer, x, mask, state = make_case(16, T=300, E=8, H=24, masked="pre", seed=3)
        cores.set_num_processes(1)
        expected = run(layer, x, mask, state)
        cores.set_num_processes(2)
        got = run(layer, x, mask, state)
        assert workers._workers[0].mailbox.size == 0
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    finally:
        cores.set_num_processes(None)
        workers.reset_workers()


def _peak_rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers and /proc are Linux-only")
def test_worker_reuses_the_buffers_of_a_forward_that_had_no_backward():
    """Evaluation drops a forward's cache unread; the worker must free its buffers before the
    next forward, which then reuses them instead of taking fresh memory."""
    cores.set_num_processes(2)
    try:
        layer, x, _, _ = make_case(16, T=2000, E=4, H=100)
        out, cache = layer.forward(x)
        layer.backward(np.ones_like(out), cache)          # the worker now has spare buffers
        worker = workers._workers[0].process.pid
        before = _peak_rss_bytes(worker)
        for _ in range(2):
            layer.forward(x)                               # no backward
            out, cache = layer.forward(x)
            layer.backward(np.ones_like(out), cache)
        gates_bytes = 2000 * 4 * 100 * 8 * 8               # one part's gate values, float64
        assert _peak_rss_bytes(worker) - before < gates_bytes / 2
    finally:
        cores.set_num_processes(None)
