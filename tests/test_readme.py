"""README.md cannot drift from the code: its Python blocks run, the lines of
numpy_lstm/reference.py that its tables quote are in that file, and the engine's functions and
classes that its table of tricks names exist."""
import importlib
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


def engine_names():
    """(module, name) for every name in the "where it lives" column of the engine's table of
    tricks: `engine/loops.py`: `a`, `b` names a and b in numpy_lstm.engine.loops, `workers.c`
    names c in numpy_lstm.engine.workers; a module named alone gives (module, None)."""
    names, column = [], None
    for line in README.splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if "where it lives" in cells:
            column = cells.index("where it lives")
        elif column is not None and not set(cells[column]) <= set("-:"):
            for group in cells[column].split(";"):
                spans = re.findall(r"`([^`]+)`", group)
                files = [s for s in spans if s.startswith("engine/")]
                module = files[0][len("engine/"):-len(".py")] if files else None
                names += [(module, None)] if files else []
                for span in spans:
                    if span not in files:
                        names.append(tuple(span.split(".")) if "." in span else (module, span))
    return names


def test_the_readme_has_python_blocks_and_quotes():
    assert len(python_blocks()) >= 2
    assert len(quoted_reference_lines()) >= 20
    assert len(engine_names()) >= 20


@pytest.mark.parametrize("line, code", python_blocks(), ids=[f"line {n}" for n, _ in python_blocks()])
def test_python_block_runs(line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)            # blocks may write files (model.npz)
    exec(compile(code, f"README.md, block at line {line}", "exec"), {"__name__": "__readme__"})


def test_quoted_lines_are_in_reference_py():
    source = (ROOT / "numpy_lstm" / "reference.py").read_text()
    missing = [q for q in quoted_reference_lines() if q not in source]
    assert not missing, missing


def test_the_engine_names_in_readme_exist():
    missing = []
    for module, name in engine_names():
        try:
            found = importlib.import_module(f"numpy_lstm.engine.{module}")
        except ImportError:
            found = None
        if found is None or (name is not None and not hasattr(found, name)):
            missing.append(f"engine/{module}.py" + ("" if name is None else f": {name}"))
    assert not missing, missing
