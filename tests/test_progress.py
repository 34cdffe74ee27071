"""The epoch line: a live tqdm bar on a terminal, one Keras-style summary line everywhere."""
import io
import re

from numpy_lstm.progress import ProgressBar

SUMMARY = r"13/13 \[={30}\] - \d+s \d+ms/step - loss: 0\.5000 - val_accuracy: 0\.2500\n"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def run_epoch(stream):
    bar = ProgressBar(13, stream=stream)
    for done in range(1, 14):
        bar.update(done, {"loss": 1.0 / done, "accuracy": 0.5})
    bar.close({"loss": 0.5, "val_accuracy": 0.25})
    return stream.getvalue()


def test_a_log_gets_only_the_summary_line():
    assert re.fullmatch(SUMMARY, run_epoch(io.StringIO()))


def test_a_terminal_gets_a_live_bar_that_the_summary_replaces():
    out = run_epoch(Terminal())
    assert re.search(r"\r1/13 \[=*>?\.+\] - ETA: \d+s - loss: 1\.0000 - accuracy: 0\.5000", out)
    assert re.search(r"\r" + SUMMARY + "$", out)
    assert out.count("\n") == 1
