"""bench/ab_engine.py, the engine of a git revision against the working tree's: its check passes
against the revision checked out, and it catches a gradient that differs in one bit."""
import importlib.util
import pathlib
import subprocess
import sys
import types

import numpy as np

import numpy_lstm

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "ab_engine.py"


def ab_engine():
    spec = importlib.util.spec_from_file_location("ab_engine", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_against_head_finds_the_same_bits():
    proc = subprocess.run([sys.executable, str(SCRIPT), "check", "--old", "HEAD", "--shapes", "3,5,4,6;2,3,4,512"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "checked 3,5,4,6" in proc.stdout and "checked 2,3,4,512" in proc.stdout
    assert proc.stdout.strip().endswith("failures 0")


class OneBitOff(numpy_lstm.LSTM):
    """The engine, with the bias gradient's first element moved by one unit in the last place."""

    def backward(self, dout, cache):
        dx, state, grads = super().backward(dout, cache)
        grads[-1].flat[0] = np.nextafter(grads[-1].flat[0], np.inf)
        return dx, state, grads


def test_check_catches_one_bit(capsys):
    module = ab_engine()
    old = types.SimpleNamespace(LSTM=OneBitOff)
    assert module.check(old, [(3, 5, 4, 6)]) > 0
    assert "dbias" in capsys.readouterr().out
