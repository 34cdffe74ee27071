"""README.md cannot drift from the code: its Python blocks (and docs/model.md's) run, each line of
numpy_lstm/reference.py its tables quote is on the line they link to, its debugger recipe stops
where it says, and it stays a short guide (no commit hashes or dates of work)."""
import importlib
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS_WITH_PYTHON = ("README.md", "docs/model.md")


def python_blocks():
    """(file, line number, code) of every ```python block of the files in DOCS_WITH_PYTHON."""
    blocks = []
    for name in DOCS_WITH_PYTHON:
        text = (ROOT / name).read_text()
        blocks += [(name, text.count("\n", 0, m.start()) + 2, m.group(1))
                   for m in re.finditer(r"^```python\n(.*?)^```$", text, re.M | re.S)]
    return blocks


def quoted_reference_lines():
    """(code, line numbers) for every code span in the last column of README's tables whose header's
    last cell names numpy_lstm/reference.py; the line numbers are those the cell links to
    (`[66](numpy_lstm/reference.py#L66)`, `#L72-L73` for a range)."""
    quotes, quoting = [], False
    for line in README.splitlines():
        if not line.startswith("|"):
            quoting = False
            continue
        cell = line.strip().strip("|").split("|")[-1]
        if "reference.py" in cell and "#L" not in cell:
            quoting = True
        elif quoting and not set(cell.strip()) <= set("-:"):
            lines = set()
            for first, last in re.findall(r"reference\.py#L(\d+)(?:-L(\d+))?", cell):
                lines.update(range(int(first), int(last or first) + 1))
            quotes += [(code, sorted(lines)) for code in re.findall(r"`([^`]+)`", cell)]
    return quotes


def engine_names():
    """(module, name) for every name in the "where it lives" column of any table of README.md or
    docs/*.md: `engine/loops.py`: `a`, `b` names a and b in numpy_lstm.engine.loops, `workers.c`
    names c in numpy_lstm.engine.workers; a module named alone gives (module, None)."""
    names = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        column = None
        for line in path.read_text().splitlines():
            if not line.startswith("|"):
                column = None
                continue
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if "where it lives" in cells:
                column = cells.index("where it lives")
            elif column is not None and column < len(cells) and not set(cells[column]) <= set("-:"):
                for group in cells[column].split(";"):
                    spans = re.findall(r"`([^`]+)`", group)
                    files = [s for s in spans if s.startswith("engine/")]
                    module = files[0][len("engine/"):-len(".py")].replace("/", ".") if files else None
                    names += [(module, None)] if files else []
                    for span in spans:
                        if span not in files:
                            names.append(tuple(span.split(".")) if "." in span else (module, span))
    return names


def test_the_readme_has_python_blocks_and_quotes():
    assert len([b for b in python_blocks() if b[0] == "README.md"]) >= 1
    assert len(quoted_reference_lines()) >= 25


@pytest.mark.parametrize("name, line, code", python_blocks(), ids=[f"{n}, line {i}" for n, i, _ in python_blocks()])
def test_python_block_runs(name, line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)            # blocks may write files (model.npz)
    exec(compile(code, f"{name}, block at line {line}", "exec"), {"__name__": "__readme__"})


def test_quoted_lines_are_on_the_lines_they_link_to():
    source = (ROOT / "numpy_lstm" / "reference.py").read_text().splitlines()
    misplaced = [(code, lines) for code, lines in quoted_reference_lines()
                 if not lines or not any(code in source[n - 1] for n in lines if n <= len(source))]
    assert not misplaced, misplaced


def test_the_engine_names_in_the_docs_exist():
    missing = []
    for module, name in engine_names():
        try:
            found = importlib.import_module(f"numpy_lstm.engine.{module}")
        except ImportError:
            found = None
        if found is None or (name is not None and not hasattr(found, name)):
            missing.append(f"engine/{module}.py" + ("" if name is None else f": {name}"))
    assert not missing, missing


def test_the_readme_is_a_short_guide():
    assert len(README.splitlines()) <= 250
    assert not re.findall(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b", README), "a commit hash"
    assert not re.findall(r"\b20\d\d-\d\d-\d\d\b|\b\d\d:\d\d UTC\b", README), "a date or time of work"
    assert "pip install -e '.[test,plot]' && python -m pytest" in README     # CI runs this command


def test_every_file_the_docs_link_to_exists():
    """A relative link in README.md or docs/*.md ([text](path) or [text](path#anchor)) names a file or
    folder of the repository, so a moved module or page cannot leave a dead link behind."""
    dead = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue                                  # a web address or an anchor on the same page
            if not (page.parent / target.split("#")[0]).exists():
                dead.append(f"{page.relative_to(ROOT)}: {target}")
    assert not dead, dead


def test_the_debugger_recipe_stops_where_the_readme_says(imdb_path, tmp_path):
    block = re.search(r"^ *```text\n(.*?python -m pdb.*?)^ *```$", README, re.M | re.S).group(1)
    lines = [line.strip() for line in block.splitlines()]
    command = " ".join(line for line in lines if not line.startswith("(Pdb)")).replace("\\", " ").split()
    pdb_input = "".join(line[len("(Pdb) "):] + "\n" for line in lines if line.startswith("(Pdb)")) + "q\n"
    assert command[:5] == ["python", "-m", "pdb", "-m", "numpy_lstm"]
    command[command.index("--out") + 1] = str(tmp_path / "debug")
    env = {**os.environ, "NUMPY_LSTM_DATA": imdb_path}
    out = subprocess.run([sys.executable, *command[1:]], input=pdb_input, cwd=ROOT, env=env, text=True,
                         capture_output=True, timeout=600).stdout
    assert "reference.py(71)lstm_step_forward()" in out and "-> c = f * c_prev + i * g" in out
    assert "((32, 100), (32, 100), array([" in out, out[-2000:]
