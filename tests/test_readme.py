"""README.md cannot drift from the code: its Python blocks run, and the lines of
numpy_lstm/reference.py that its tables quote are in that file."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def python_blocks():
    """(line number, code) of every ```python block of README.md."""
    return [(README.count("\n", 0, m.start()) + 2, m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```$", README, re.M | re.S)]


def quoted_reference_lines():
    """The code spans in the last column of every README table whose header's last cell names
    numpy_lstm/reference.py."""
    quotes, quoting = [], False
    for line in README.splitlines():
        if not line.startswith("|"):
            quoting = False
            continue
        cells = line.strip().strip("|").split("|")
        if "reference.py" in cells[-1]:
            quoting = True
        elif quoting and not set(cells[-1].strip()) <= set("-:"):
            quotes += re.findall(r"`([^`]+)`", cells[-1])
    return quotes


def test_the_readme_has_python_blocks_and_quotes():
    assert len(python_blocks()) >= 2
    assert len(quoted_reference_lines()) >= 20


@pytest.mark.parametrize("line, code", python_blocks(), ids=[f"line {n}" for n, _ in python_blocks()])
def test_python_block_runs(line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)            # blocks may write files (model.npz)
    exec(compile(code, f"README.md, block at line {line}", "exec"), {"__name__": "__readme__"})


def test_quoted_lines_are_in_reference_py():
    source = (ROOT / "numpy_lstm" / "reference.py").read_text()
    missing = [q for q in quoted_reference_lines() if q not in source]
    assert not missing, missing
