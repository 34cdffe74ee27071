"""Shared fixtures: where the real dataset is, where a browser is, and the rule for tests that need them.

A data test skips when the data is absent, except under NUMPY_LSTM_REQUIRE_DATA=1 (CI), where
absence is a failure: CI must never go green by skipping what it is meant to run. A browser test
follows the same rule with NUMPY_LSTM_REQUIRE_BROWSER=1.
"""
import os
import shutil

import pytest


def _required(variable):
    return os.environ.get(variable) == "1"


def _absent(message, variable):
    if _required(variable):
        pytest.fail(f"{message} but {variable}=1")
    pytest.skip(message)


@pytest.fixture(scope="session")
def imdb_path():
    """Path to the real aclImdb archive or folder named by NUMPY_LSTM_DATA."""
    path = os.environ.get("NUMPY_LSTM_DATA")
    if path and os.path.exists(path):
        return path
    _absent(f"the IMDB dataset is not available (NUMPY_LSTM_DATA={path!r})", "NUMPY_LSTM_REQUIRE_DATA")


@pytest.fixture(scope="session")
def chromium():
    """Path of a Chromium to render pages with (Debian's package: apt-get install chromium)."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    _absent("no Chromium browser found (apt-get install chromium)", "NUMPY_LSTM_REQUIRE_BROWSER")
