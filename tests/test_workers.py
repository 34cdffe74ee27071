"""The worker processes and the core count: how many processes, BLAS's threads, the split of
the rows; workers that fail loudly, go away with their parent, pass large arrays through the
mailbox and free a dropped forward's buffers."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from numpy_lstm import NumpyLSTMError
from numpy_lstm.engine import batch, cores, mailbox, workers
from tests.test_speed_paths import make_case, run


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
