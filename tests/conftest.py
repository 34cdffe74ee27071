"""Shared fixtures: the real dataset, PyTorch and a browser, and the one rule for tests that need them;
the LSTM split into parts of one row (tiny_parts).

A test that needs something optional (the IMDB data, torch as a test oracle, Chromium to render
a page) skips when it is absent, except under NUMPY_LSTM_REQUIRE_<WHAT>=1 (CI sets
NUMPY_LSTM_REQUIRE_DATA, NUMPY_LSTM_REQUIRE_TORCH and NUMPY_LSTM_REQUIRE_BROWSER), where absence
is a failure: CI must never go green by skipping what it is meant to run.
"""
import importlib
import os
import shutil

import pytest


def unavailable(what, message):
    """Skip the test for lack of `what` ("data", "torch", "browser"), or fail it under NUMPY_LSTM_REQUIRE_<WHAT>=1."""
    variable = f"NUMPY_LSTM_REQUIRE_{what.upper()}"
    if os.environ.get(variable) == "1":
        pytest.fail(f"{message} but {variable}=1")
    pytest.skip(message)


@pytest.fixture(scope="session")
def imdb_path():
    """Path to the real aclImdb archive or folder named by NUMPY_LSTM_DATA."""
    path = os.environ.get("NUMPY_LSTM_DATA")
    if path and os.path.exists(path):
        return path
    unavailable("data", f"the IMDB dataset is not available (NUMPY_LSTM_DATA={path!r})")


@pytest.fixture(scope="session")
def torch():
    """The torch module, for tests that use PyTorch as an oracle (the package never imports it)."""
    try:
        module = importlib.import_module("torch")
    except ImportError as e:
        unavailable("torch", f"PyTorch is not installed ({e})")
    module.set_num_threads(1)   # tiny shapes; the LSTM's own worker processes have the cores
    return module


@pytest.fixture(scope="session")
def chromium():
    """Path of a Chromium to render pages with (Debian's package: apt-get install chromium)."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    unavailable("browser", "no Chromium browser found (apt-get install chromium)")


@pytest.fixture
def tiny_parts(monkeypatch):
    """Let the LSTM's batch be cut into parts of a single row, so small tests exercise the split."""
    from numpy_lstm.engine import cores
    monkeypatch.setattr(cores, "MIN_ROWS_PER_PART", 1)
    yield
    cores.set_num_processes(None)
