"""Shared fixtures: where the real dataset is, and the rule for tests that need it.

A data test skips when the data is absent, except under NUMPY_LSTM_REQUIRE_DATA=1 (CI), where
absence is a failure: CI must never go green by skipping what it is meant to run.
"""
import os

import pytest


def _require_data():
    return os.environ.get("NUMPY_LSTM_REQUIRE_DATA") == "1"


@pytest.fixture(scope="session")
def imdb_path():
    """Path to the real aclImdb archive or folder named by NUMPY_LSTM_DATA."""
    path = os.environ.get("NUMPY_LSTM_DATA")
    if path and os.path.exists(path):
        return path
    message = f"the IMDB dataset is not available (NUMPY_LSTM_DATA={path!r})"
    if _require_data():
        pytest.fail(message + " but NUMPY_LSTM_REQUIRE_DATA=1")
    pytest.skip(message)
