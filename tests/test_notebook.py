"""docs/lstm_from_scratch.ipynb runs from top to bottom, and the outputs committed with it are its own.

To run it again and write its outputs into it (after changing a cell): python tests/test_notebook.py
"""
import copy
import json
import os
import re
import sys

import nbformat
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "docs", "lstm_from_scratch.ipynb")
# Sections 1-4 are small float64 computations: their printed numbers are the same on any machine.
# Training (section 5 on) is deterministic on one machine and core count only.
FIRST_TRAINING_SECTION = "## 5."


def execute(notebook, workdir):
    """Run every cell of `notebook` (a NotebookNode, filled in place) on this interpreter."""
    # A kernel spec of our own, found first on JUPYTER_PATH: the kernel is this Python (with this
    # numpy_lstm), whatever "python3" kernel another installation has registered.
    spec = os.path.join(workdir, "kernels", "numpy-lstm-test")
    os.makedirs(spec, exist_ok=True)
    with open(os.path.join(spec, "kernel.json"), "w") as f:
        json.dump({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                   "display_name": "numpy-lstm test", "language": "python"}, f)
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = workdir + (os.pathsep + old if old else "")
    try:
        # No timing metadata: the committed notebook carries no dates.
        NotebookClient(notebook, timeout=1200, kernel_name="numpy-lstm-test", record_timing=False,
                       resources={"metadata": {"path": workdir}}).execute()
    finally:
        if old is None:
            del os.environ["JUPYTER_PATH"]
        else:
            os.environ["JUPYTER_PATH"] = old
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def text(cell):
    """All a cell printed (the kernel may send one print in several messages, or several in one)."""
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


NUMBER = re.compile(r"[-+]?\d+(?:\.(\d+))?(?:e[-+]?\d+)?")


def same_up_to_last_digit(printed, expected):
    """Whether two printouts are the same text, each integer the same and each decimal within one
    unit of its last printed digit of the other's: another BLAS may round a float64 sum in its last bit, and a number
    printed on the boundary between two roundings then comes out one digit apart."""
    if NUMBER.sub("#", printed) != NUMBER.sub("#", expected):
        return False
    for a, b in zip(NUMBER.finditer(printed), NUMBER.finditer(expected)):
        if b.group(1) is None:                 # a count: exactly
            if a.group(0) != b.group(0):
                return False
            continue
        digits = len(b.group(1))
        exponent = float("1e" + b.group(0).lower().split("e")[1]) if "e" in b.group(0).lower() else 1.0
        if abs(float(a.group(0)) - float(b.group(0))) > 1.01 * 10.0 ** -digits * exponent:
            return False
    return True


def test_numbers_may_differ_by_one_in_their_last_digit_and_no_more():
    assert same_up_to_last_digit("occlusion +0.2456 and 12 words", "occlusion +0.2455 and 12 words")
    assert same_up_to_last_digit("error 3.1e-08", "error 3.2e-08")
    assert not same_up_to_last_digit("occlusion +0.2457", "occlusion +0.2455")
    assert not same_up_to_last_digit("read 13 words", "read 12 words")
    assert not same_up_to_last_digit("read 12 words", "read 12 ward")


def test_the_notebook_runs_and_its_outputs_are_committed(imdb_path, tmp_path, monkeypatch):
    monkeypatch.setenv("NUMPY_LSTM_DATA", imdb_path)
    committed = nbformat.read(NOTEBOOK, as_version=4)
    run = copy.deepcopy(committed)
    for cell in run.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    execute(run, str(tmp_path))                # a failing cell raises CellExecutionError
    derivation = True
    for mine, theirs in zip(committed.cells, run.cells):
        if mine.cell_type == "markdown" and mine.source.startswith(FIRST_TRAINING_SECTION):
            derivation = False
        if mine.cell_type != "code":
            continue
        assert not any(o.output_type == "error" for o in mine.outputs)
        # Committed with its outputs: text where the run prints, an image where it draws one.
        assert {o.output_type for o in mine.outputs} == {o.output_type for o in theirs.outputs}, mine.source[:60]
        assert text(mine).count("\n") == text(theirs).count("\n"), mine.source[:60]
        if derivation:
            assert same_up_to_last_digit(text(mine), text(theirs)), mine.source[:60]
        for output in mine.outputs:
            if "image/png" in output.get("data", {}):
                assert len(output.data["image/png"]) < 120_000       # base64 of a modest PNG


if __name__ == "__main__":
    import tempfile

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    with tempfile.TemporaryDirectory() as workdir:
        execute(notebook, workdir)
    nbformat.write(notebook, NOTEBOOK)
    print(f"{NOTEBOOK}: executed, outputs written")
