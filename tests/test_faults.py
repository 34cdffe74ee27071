"""Faults of the processes a training run survives, each caused for real (a worker killed, a
signal; tests/test_faults_disk.py has those of the disk), and the run compared, bit for bit,
with an undisturbed run of the same seed.

The runs are tiny (80 synthetic reviews, a few epochs) and use two cores, so that every batch
has a part in a worker process. In-process runs (`main`) fork their workers from this process,
so a patch of `workers._run_part` made before the fork is what the workers run: that is how a
worker is made to die by SIGKILL at a chosen moment.
"""
import errno
import glob
import os
import signal
import subprocess
import sys

import fault_runs
import numpy as np
import pytest
from fault_runs import checkpoint_state, signal_at_batch, train_args, wait_for
from test_cli import assert_same_run, run_cli

from numpy_lstm import SentimentLSTM, stopping, train
from numpy_lstm.cli import main
from numpy_lstm.engine import workers
from numpy_lstm.stopping import Stopped, StopSignals

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker processes and /proc are Linux's")


# The shared fixtures, bound by name so that pytest finds them in this module (two_cores is autouse).
two_cores, tree, straight = fault_runs.two_cores, fault_runs.tree, fault_runs.straight
straight_long = fault_runs.straight_long


def children(pid):
    """Pids of the processes whose parent is pid."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.split("/")[2]))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# ----------------------------------------------------------------------------- a worker dies

def test_worker_killed_from_outside_is_replaced_and_the_run_ends_the_same(tree, straight_long, tmp_path):
    """kill -9 of the worker (what the out-of-memory killer does) in the middle of a run."""
    args = train_args(tree, epochs=30)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "numpy_lstm", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (killed / "checkpoint.npz").exists(), "the first checkpoint")
    pids = children(proc.pid)
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    assert not (killed / "metrics.json").exists(), "the run finished before its worker could be killed"
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "worker process died" in lines[0] and "running it again" in lines[0], err
    assert_same_run(straight_long, killed)


@pytest.fixture
def dying_workers(monkeypatch, tmp_path):
    """die(op, at, times): from now on a worker kills itself (SIGKILL) on its `at`-th request of
    kind op ("forward" or "backward"), until `times` workers have died (counted in files, since
    each death takes a fresh worker); after the first death, every new worker dies at its first
    request of that kind, so the same pass fails again."""
    deaths = tmp_path / "deaths"
    deaths.mkdir()
    original = workers._run_part

    def die(op, at, times):
        calls = []

        def run_part(kind, *args):
            if kind == op:
                calls.append(kind)
                if (len(calls) >= at or os.listdir(deaths)) and len(os.listdir(deaths)) < times:
                    (deaths / str(os.getpid())).touch()
                    os.kill(os.getpid(), signal.SIGKILL)
            return original(kind, *args)

        monkeypatch.setattr(workers, "_run_part", run_part)
        workers.reset_workers()           # the next workers are forked with the patch
        return deaths

    yield die
    workers.reset_workers()


@pytest.mark.parametrize("op", ["forward", "backward"])
def test_worker_that_dies_mid_pass_is_replaced_and_the_run_ends_the_same(op, tree, straight, tmp_path,
                                                                         dying_workers, capsys):
    deaths = dying_workers(op, at=7, times=1)      # in the second epoch
    out = tmp_path / "run"
    assert main([*train_args(tree), "--out", str(out)]) == 0
    assert len(os.listdir(deaths)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "worker process died" in err[0] and "in epoch 2, batch" in err[0], err
    assert_same_run(straight, out)


def test_when_no_worker_can_be_forked_the_part_runs_here_with_the_same_result(tree, straight, tmp_path,
                                                                              dying_workers, monkeypatch, capsys):
    deaths = dying_workers("forward", at=3, times=1)
    real_worker = workers._Worker

    def worker_or_fork_refused():
        if os.listdir(deaths):
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")   # what fork says at a limit
        return real_worker()

    monkeypatch.setattr(workers, "_Worker", worker_or_fork_refused)
    out = tmp_path / "run"
    assert main([*train_args(tree), "--out", str(out)]) == 0
    assert [type(w) for w in workers._workers] == [workers._InProcess]
    assert "running it again" in capsys.readouterr().err
    assert_same_run(straight, out)


def test_workers_that_keep_dying_stop_the_run_with_its_place_saved(tree, straight, tmp_path, dying_workers, capsys):
    deaths = dying_workers("forward", at=9, times=100)
    out = tmp_path / "run"
    assert main([*train_args(tree), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(os.listdir(deaths)) == stopping.WORKER_ATTEMPTS
    assert len(err) == stopping.WORKER_ATTEMPTS            # two "running it again" lines, then the error
    assert f"died {stopping.WORKER_ATTEMPTS} times" in err[-1] and f"--resume {out}" in err[-1], err
    place = checkpoint_state(out / "checkpoint.npz")["position"]
    assert place["batch"] >= 1
    dying_workers("forward", at=1, times=0)             # no more deaths: healthy workers again
    assert main(["train", "--resume", str(out)]) == 0
    assert_same_run(straight, out)


# ----------------------------------------------------------------------------- SIGTERM and Ctrl-C

@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_epoch_saves_the_place_and_resume_ends_the_same(signum, status, tree, straight, tmp_path,
                                                                   monkeypatch, capsys):
    """The signal really arrives (os.kill), at a chosen batch: epoch 2, batch 3 of 5."""
    schedule = signal_at_batch(monkeypatch, signum, epoch=2, batch=3)
    out = tmp_path / "run"
    handler = signal.getsignal(signum)
    assert main([*train_args(tree), "--out", str(out)]) == status
    assert signal.getsignal(signum) is handler          # restored
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in epoch 2 after batch 3 of 5" in err[0] and f"--resume {out}" in err[0], err
    state = checkpoint_state(out / "checkpoint.npz")
    assert state["epoch"] == 1 and state["position"]["batch"] == 3
    monkeypatch.setattr(train, "learning_rate", schedule)
    assert main(["train", "--resume", str(out)]) == 0
    assert_same_run(straight, out)


def test_a_run_with_a_pair_table_stopped_mid_epoch_resumes_to_the_same_end(tree, tmp_path, monkeypatch, capsys):
    """--bigram-buckets: the table, its lazily updated Adam moments and the best epoch's copy
    (early stopping) are in the checkpoint, so the run resumes to the undisturbed run's bits."""
    args = [*train_args(tree), "--bigram-buckets", "64"]
    straight = tmp_path / "straight"
    assert main([*args, "--out", str(straight)]) == 0
    schedule = signal_at_batch(monkeypatch, signal.SIGTERM, epoch=2, batch=3)
    out = tmp_path / "run"
    assert main([*args, "--out", str(out)]) == 143
    with np.load(out / "checkpoint.npz") as data:
        assert {"weights/1", "adam_m/1", "adam_v/1", "best/1"} <= set(data.files)
        assert data["weights/1"].shape == (64, 8) and np.abs(data["adam_v/1"]).max() > 0
    monkeypatch.setattr(train, "learning_rate", schedule)
    assert main(["train", "--resume", str(out)]) == 0
    assert_same_run(straight, out)
    model = SentimentLSTM.load(out / "model.npz")
    assert model.config["bigram_buckets"] == 64 and np.abs(model.embedding.bigram_table).max() > 0


def test_sigterm_to_the_whole_process_group_stops_cleanly(tree, straight_long, tmp_path):
    """A scheduler's SIGTERM reaches the workers too: they must outlive it, the parent saves and
    exits 143, the workers go with it, and --resume ends as the undisturbed run."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "numpy_lstm", *train_args(tree, epochs=30), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(lambda: (out / "checkpoint.npz").exists(), "the first checkpoint")
    workers = children(proc.pid)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and f"--resume {out}" in err and "Traceback" not in err
    assert "worker process died" not in err
    wait_for(lambda: not any(alive(pid) for pid in workers), "the workers to exit", timeout=10)
    code, _, err = run_cli("train", "--resume", out)
    assert code == 0, err
    assert_same_run(straight_long, out)


def test_a_second_signal_does_not_wait_for_the_batch():
    with StopSignals() as stop:
        with pytest.raises(Stopped) as stopped:
            with stop.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                assert stop.requested == signal.SIGTERM       # only noted
                os.kill(os.getpid(), signal.SIGTERM)          # raises here
                pytest.fail("the second signal was only noted")
    assert stopped.value.exit_status == 143
