"""Faults on the disk and in the run's folder, each caused for real (a write refused, a file size
limit, a second run on a busy folder, a start that failed, a cache cut short, an old run's
settings), and the run compared, bit for bit, with an undisturbed run of the same seed."""
import errno
import glob
import json
import os
import resource
import signal
import subprocess
import sys

import fault_runs
import numpy as np
import pytest
from fault_runs import checkpoint_state, train_args, wait_for
from test_cli import TINY, assert_same_run, run_cli, write_tree

from numpy_lstm import LSTM
from numpy_lstm.cli import main
from numpy_lstm.data import load_imdb
from numpy_lstm.engine import workers
from numpy_lstm.errors import NumpyLSTMError
from numpy_lstm.fileio import write_text
from numpy_lstm.rundir import RunDir

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker processes and /proc are Linux's")


# The shared fixtures, bound by name so that pytest finds them in this module (two_cores is autouse).
two_cores, tree, straight = fault_runs.two_cores, fault_runs.tree, fault_runs.straight


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
