"""docs/engine.md cannot drift from the engine: every trick has its parts (what it computes, why it
is correct, what it bought, where it lives), and the modules and names its "Where:" lines give
exist."""
import importlib
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "engine.md").read_text()


def tricks():
    """(title, text) of every ### section of the page."""
    return re.findall(r"^### (.+?)\n(.*?)(?=^#|\Z)", PAGE, re.M | re.S)


def named_in(where):
    """(module, name or None) for `engine/m.py`: `a`, `b` groups of a "Where:" line."""
    names = []
    for group in where.split(";"):
        spans = re.findall(r"`([^`]+)`", group)
        module = spans[0][len("engine/"):-len(".py")]
        names += [(module, None)] + [(module, name) for name in spans[1:]]
    return names


def test_every_trick_says_what_why_what_it_bought_and_where():
    assert len(tricks()) >= 15
    for title, text in tricks():
        for part in ("Computes:", "Correct because:", "Bought:", "Where:"):
            assert f"\n{part}" in "\n" + text, (title, part)


def test_the_names_of_the_where_lines_exist():
    missing = []
    for title, text in tricks():
        where = re.search(r"^Where: (.+)$", text, re.M).group(1)
        for module, name in named_in(where):
            found = importlib.import_module(f"numpy_lstm.engine.{module}")
            if name is not None and not hasattr(found, name):
                missing.append(f"{title}: engine/{module}.py: {name}")
    assert not missing, missing
