"""What the fault tests share (tests/test_faults.py, tests/test_faults_disk.py): the training
command, the undisturbed run every disturbed one must end as, and two cores for every run, so
that every batch has a part in a worker process."""
import contextlib
import json
import os
import time

import numpy as np
import pytest
from test_cli import TINY, run_cli, write_tree

from numpy_lstm import train
from numpy_lstm.engine import workers

EPOCHS = 4
DROPOUT = ["--mask", "--dropout", "0.2", "--recurrent-dropout", "0.2", "--patience", "100"]


@contextlib.contextmanager
def two_processes():
    """Two cores for every run inside the block, in this process and in the commands it starts."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NUMPY_LSTM_PROCESSES", "2")
        yield
    workers.reset_workers()


def signal_at_batch(monkeypatch, signum, epoch, batch):
    """Send this process `signum` (os.kill: the signal really arrives) when training reaches batch
    `batch` of epoch `epoch`, as it asks train.learning_rate for that batch's rate. Returns the
    undisturbed learning_rate, to put back before a resume."""
    schedule = train.learning_rate

    def signal_there(config, at_epoch, at_batch, batches):
        if (at_epoch, at_batch) == (epoch, batch):
            os.kill(os.getpid(), signum)
        return schedule(config, at_epoch, at_batch, batches)

    monkeypatch.setattr(train, "learning_rate", signal_there)
    return schedule


def train_args(tree, epochs=EPOCHS):
    return ["train", "--data", str(tree), "--epochs", str(epochs), "--seed", "2", *TINY, *DROPOUT]


def undisturbed_run(tree, out, epochs=EPOCHS):
    """The run of train_args(tree, epochs) in `out`, trained without a fault: the one a disturbed
    run must end as, bit for bit."""
    code, _, err = run_cli(*train_args(tree, epochs), "--out", out)
    assert code == 0, err
    return out


def checkpoint_state(path):
    with np.load(path) as data:
        return json.loads(str(data["state"]))


def wait_for(condition, what, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.fixture(scope="module", autouse=True)
def two_cores():
    with two_processes():
        yield


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("imdb"), per_class=60)


@pytest.fixture(scope="module")
def straight(tree, tmp_path_factory):
    return undisturbed_run(tree, tmp_path_factory.mktemp("straight") / "run")


@pytest.fixture(scope="module")
def straight_long(tree, tmp_path_factory):
    """30 epochs: long enough for a test to act while the run is still training."""
    return undisturbed_run(tree, tmp_path_factory.mktemp("straight_long") / "run", epochs=30)
