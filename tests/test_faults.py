"""Faults a training run survives, each caused for real (a killed process, a signal, a refused
write), and the run compared, bit for bit, with an undisturbed run of the same seed.

The runs are tiny (80 synthetic reviews, a few epochs) and use two cores, so that every batch
has a part in a worker process. In-process runs (`main`) fork their workers from this process,
so a patch of `workers._run_part` made before the fork is what the workers run: that is how a
worker is made to die by SIGKILL at a chosen moment.
"""
import errno
import glob
import json
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_cli import TINY, assert_same_run, run_cli, write_tree

from numpy_lstm import LSTM, stopping, train
from numpy_lstm.cli import main
from numpy_lstm.data import load_imdb
from numpy_lstm.engine import workers
from numpy_lstm.errors import NumpyLSTMError
from numpy_lstm.fileio import write_text
from numpy_lstm.rundir import RunDir
from numpy_lstm.stopping import Stopped, StopSignals

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker processes and /proc are Linux's")

EPOCHS = 4
DROPOUT = ["--mask", "--dropout", "0.2", "--recurrent-dropout", "0.2", "--patience", "100"]


@pytest.fixture(scope="module", autouse=True)
def two_cores():
    """Two cores for every run here, in this process and in the commands it starts."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NUMPY_LSTM_PROCESSES", "2")
        yield
    workers.reset_workers()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("imdb"), per_class=60)


def train_args(tree, epochs=EPOCHS):
    return ["train", "--data", str(tree), "--epochs", str(epochs), "--seed", "2", *TINY, *DROPOUT]


@pytest.fixture(scope="module")
def straight(tree, tmp_path_factory):
    """The undisturbed run that every disturbed one must end as."""
    out = tmp_path_factory.mktemp("straight") / "run"
    code, _, err = run_cli(*train_args(tree), "--out", out)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def straight_long(tree, tmp_path_factory):
    """The same, 30 epochs: long enough for a test to act while the run is still training."""
    out = tmp_path_factory.mktemp("straight_long") / "run"
    code, _, err = run_cli(*train_args(tree, epochs=30), "--out", out)
    assert code == 0, err
    return out


def checkpoint_state(path):
    with np.load(path) as data:
        return json.loads(str(data["state"]))


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


def wait_for(condition, what, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


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
    schedule = train.learning_rate

    def signal_at_batch_3_of_epoch_2(config, epoch, batch, batches):
        if (epoch, batch) == (2, 3):
            os.kill(os.getpid(), signum)
        return schedule(config, epoch, batch, batches)

    monkeypatch.setattr(train, "learning_rate", signal_at_batch_3_of_epoch_2)
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


# ----------------------------------------------------------------------------- a write is refused

class FillingFile:
    """A file on a disk that fills up: writes fail with `error` once `room` bytes are written."""

    def __init__(self, f, error, room):
        self.f, self.error, self.room = f, error, room

    def write(self, data):
        if len(data) > self.room:
            self.f.write(data[:self.room])
            self.room = 0
            raise OSError(self.error, os.strerror(self.error))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def refuse_writes(monkeypatch, name, error, nth=1):
    """From the nth write of a file called `name` on, the system refuses it: EACCES when the file
    is opened, any other errno (ENOSPC) after its first 100 bytes."""
    opened = []

    def open_(path, mode="r", *args, **kwargs):
        if "w" in mode and os.path.basename(path).startswith(f".{name}."):
            opened.append(path)
            if len(opened) >= nth:
                if error == errno.EACCES:
                    raise PermissionError(error, os.strerror(error), path)
                return FillingFile(open(path, mode, *args, **kwargs), error, room=100)
        return open(path, mode, *args, **kwargs)

    for module in ("numpy_lstm.fileio", "numpy_lstm.rundir", "numpy_lstm.model", "numpy_lstm.checkpoint"):
        monkeypatch.setattr(f"{module}.open", open_, raising=False)


@pytest.mark.parametrize("name, nth, error", [
    ("checkpoint.npz", 3, errno.ENOSPC),        # the third epoch's checkpoint
    ("history.csv", 2, errno.ENOSPC),
    ("model.npz", 1, errno.EACCES),
    ("metrics.json", 1, errno.ENOSPC),
])
def test_refused_write_is_one_line_and_the_run_resumes_to_the_same_end(name, nth, error, tree, straight, tmp_path,
                                                                       monkeypatch, capsys):
    out = tmp_path / "run"
    refuse_writes(monkeypatch, name, error, nth)
    assert main([*train_args(tree), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write {out / name}: {os.strerror(error)}" in err, err
    assert f"--resume {out}" in err
    assert not glob.glob(str(out / ".*.tmp"))
    if name == "checkpoint.npz":
        assert checkpoint_state(out / "checkpoint.npz")["epoch"] == nth - 1    # the last one written is intact
    elif name == "history.csv":
        assert len((out / name).read_text().splitlines()) == 1 + nth - 1
    else:
        assert not (out / name).exists()
    monkeypatch.undo()
    assert main(["train", "--resume", str(out)]) == 0
    assert_same_run(straight, out)


def test_file_size_limit_refuses_a_checkpoint_for_real(tree, straight, tmp_path):
    """A write the kernel refuses (RLIMIT_FSIZE: EFBIG, which unlike permissions binds root too):
    the limit lets the second epoch's checkpoint through and stops the third, which is larger by
    one more row of history."""
    short = tmp_path / "short"
    assert run_cli(*train_args(tree, epochs=2), "--out", short)[0] == 0
    limit = (short / "checkpoint.npz").stat().st_size + 40
    out = tmp_path / "run"

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "numpy_lstm", *train_args(tree), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, preexec_fn=limited)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (f"numpy-lstm: error: cannot write {out / 'checkpoint.npz'}: File too large "
                                   f"(the file it was to replace is intact); once that is fixed, continue with: "
                                   f"numpy-lstm train --resume {out}")
    assert checkpoint_state(out / "checkpoint.npz")["epoch"] == 2
    assert run_cli("train", "--resume", out)[0] == 0
    assert_same_run(straight, out)


# ----------------------------------------------------------------------------- two runs, one folder

def test_second_train_on_a_busy_folder_is_refused_and_the_first_is_unharmed(tree, straight, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "numpy_lstm", *train_args(tree), "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = out / "train.lock"
    wait_for(lambda: (out / "config.json").exists() and lock.read_text().strip() == str(first.pid),
             "the first run's lock")
    first.send_signal(signal.SIGSTOP)           # it stays where it is while the second tries
    try:
        for command in ([*train_args(tree), "--out", out], ["train", "--resume", out]):
            code, _, err = run_cli(*command)
            assert code == 2 and f"in use by another numpy-lstm train (pid {first.pid})" in err, err
            assert err.count("\n") == 1
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert_same_run(straight, out)


def test_the_lock_stays_with_its_process_not_with_forked_workers(tmp_path):
    run = RunDir(tmp_path)
    with run.locked():
        workers.reset_workers()
        LSTM(3, 4, np.random.default_rng(0)).forward(np.ones((16, 5, 3), np.float32))   # a worker forked now
        worker = workers._workers[0].process.pid
        targets = [os.readlink(link) for link in glob.glob(f"/proc/{worker}/fd/*")]
        assert str(tmp_path / "train.lock") not in targets
        with pytest.raises(NumpyLSTMError, match=f"pid {os.getpid()}"):
            with RunDir(tmp_path).locked():         # another open file: flock refuses it too
                pass
    with RunDir(tmp_path).locked():                 # released with the block
        pass
    workers.reset_workers()


# ----------------------------------------------------------------------------- a failed start, old files

def test_folder_of_a_start_that_failed_is_used_again_by_the_same_command(tmp_path, straight, capsys):
    tree = write_tree(tmp_path / "imdb", per_class=60)
    stray = tree / "aclImdb" / "train" / "pos" / "notes.txt"       # not an ID_RATING.txt name
    stray.write_text("to do")
    out = tmp_path / "run"
    command = [*train_args(tree), "--out", str(out)]
    assert main(command) == 2 and "unexpected file" in capsys.readouterr().err
    assert (out / "config.json").exists() and not RunDir(out).trained()
    stray.unlink()
    assert main(command) == 0
    assert_same_run(straight, out)
    assert main(command) == 2 and "already holds a run" in capsys.readouterr().err   # never started over


def test_truncated_parsed_reviews_cache_is_rebuilt(tmp_path, monkeypatch):
    import tarfile
    tree = write_tree(tmp_path / "imdb", per_class=10)
    archive = tmp_path / "imdb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "aclImdb", arcname="aclImdb")
    monkeypatch.setenv("NUMPY_LSTM_CACHE", str(tmp_path / "cache"))
    first = load_imdb(archive, split="all")
    cached = sorted((tmp_path / "cache").iterdir())
    whole = [path.read_bytes() for path in cached]
    for path, content in zip(cached, whole):
        path.write_bytes(content[:len(content) // 2])           # a copy cut off mid-write
    again = load_imdb(archive, split="all")
    assert again.texts == first.texts and again.labels.tolist() == first.labels.tolist()
    assert [path.read_bytes() for path in cached] == whole      # rebuilt whole


def test_old_run_folder_missing_settings(tmp_path, tree, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(tree), "--out", str(out), "--epochs", "1", *TINY]) == 0
    config = json.loads((out / "config.json").read_text())
    for name in ("implementation", "ensemble", "min_films", "oov", "ppmi_init"):   # added after the first version
        del config[name]
    (out / "config.json").write_text(json.dumps(config))
    assert main(["predict", str(out), "a wonderful film"]) == 0 and main(["evaluate", str(out)]) == 0
    capsys.readouterr()
    for broken, words in ((dict(config, brand_new=1), "does not know: brand_new"),
                          ({k: v for k, v in config.items() if k != "keep_negations"}, "lacks keep_negations")):
        (out / "config.json").write_text(json.dumps(broken))
        for command in (["predict", out, "a wonderful film"], ["evaluate", out], ["train", "--resume", out]):
            assert main([str(arg) for arg in command]) == 2
            err = capsys.readouterr().err
            assert words in err and err.count("\n") == 1, err
        with pytest.raises(NumpyLSTMError, match=words):
            RunDir(out).load_model()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_written_atomically_get_the_mode_the_umask_gives(umask, tmp_path):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "a.json", "{}")       # a temporary file renamed into place
        with open(tmp_path / "b.json", "w") as f:   # what open() gives
            f.write("{}")
    finally:
        os.umask(old)
    modes = [os.stat(tmp_path / name).st_mode & 0o777 for name in ("a.json", "b.json")]
    assert modes[0] == modes[1] == 0o666 & ~umask
