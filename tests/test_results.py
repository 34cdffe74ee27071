"""Results are data: docs/results.md and the README's summary are what tools/results.py writes from
the recorded runs, the two agree, and the tool records, regenerates and checks as it says."""
import dataclasses
import importlib.util
import json
import os
import pathlib
import re

import pytest

from numpy_lstm import RECIPES, recipe_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_tool(name):
    """tools/<name>.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


results = load_tool("results")


def block(text, name):
    """The text between <!-- results:name --> and <!-- /results:name -->."""
    match = re.search(rf"<!-- results:{name} -->\n(.*?)<!-- /results:{name} -->", text, re.S)
    assert match, f"no results:{name} markers"
    return match.group(1)


def rows(table):
    """The cells of a Markdown table's body rows."""
    lines = [line for line in table.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]


def test_the_docs_are_what_the_recorded_runs_give(capsys):
    assert results.main(["--check"]) == 0, capsys.readouterr().err


def test_the_readme_summary_equals_the_results_page():
    readme = rows(block((ROOT / "README.md").read_text(), "summary"))
    page = (ROOT / "docs" / "results.md").read_text()
    recipes = {(row[0], row[2]): row for row in rows(block(page, "recipes"))}
    yardsticks = {row[0]: row for row in rows(block(page, "yardsticks"))}
    for model, data, seeds, accuracy in readme:
        if model.startswith("`--recipe "):
            row = recipes[(model.replace("--recipe ", ""), seeds)]
            assert (data, accuracy) == (row[1], row[4].split(", n = ")[0]), model
        else:
            assert accuracy == yardsticks[model[len("yardstick: "):]][2], model
    assert len(readme) == len([key for key in recipes if "check" not in key[1]]) + len(yardsticks)


def test_every_recipe_is_recorded_over_seeds_0_to_2():
    named = {row[0]: row[2] for row in rows(block((ROOT / "README.md").read_text(), "summary"))
             if row[0].startswith("`--recipe ")}
    assert named == {f"`--recipe {name}`": "0, 1, 2" for name in RECIPES}


def test_yardsticks_name_their_source():
    for y in json.loads((ROOT / "results" / "yardsticks.json").read_text()):
        assert y["source"] and y["name"] and 0 < y["test_accuracy"] < 1 and y["labeled_reviews"] > 0


def test_the_analysis_tools_import():
    load_tool("mix_cv")


# ---- the tool, on a copy of the files ----------------------------------------------------------

PAGE = """# Results
hand-written prose
<!-- results:machine -->
<!-- /results:machine -->
<!-- results:recipes -->
<!-- /results:recipes -->
between
<!-- results:views -->
<!-- /results:views -->
<!-- results:runs -->
<!-- /results:runs -->
<!-- results:yardsticks -->
<!-- /results:yardsticks -->
the end
"""
README = "# readme\n<!-- results:summary -->\nold\n<!-- /results:summary -->\nafter\n"


def make_run(path, recipe, seed, test_accuracy, **config_changes):
    """A finished run directory of `recipe` as the package defines it (with config_changes)."""
    config = {**dataclasses.asdict(recipe_config(recipe, seed=seed)), **config_changes}
    metrics = {"recipe": recipe, "seed": seed, "val_accuracy": 0.8, "val_loss": 0.4, "val_n": 100,
               "test_accuracy": test_accuracy, "test_loss": 0.5, "test_n": 25000, "epochs_run": 5,
               "best_epoch": 3, "train_seconds": 30.0 + seed, "eval_seconds": 10.0}
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "history.csv").write_text("epoch,loss\n1,0.6\n")
    (path / "model.npz").write_bytes(b"weights, never recorded")


@pytest.fixture
def root(tmp_path):
    """A repository's result files: the page, the README, one yardstick, no recorded run yet."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "results.md").write_text(PAGE)
    (tmp_path / "README.md").write_text(README)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "yardsticks.json").write_text(json.dumps(
        [{"name": "a paper", "labeled_reviews": 1000, "test_accuracy": 0.75, "detail": "d", "source": "s"}]))
    return tmp_path


def test_record_copies_the_small_files_and_rewrites_only_the_tables(root, tmp_path, capsys):
    for seed, accuracy in enumerate([0.7, 0.8, 0.9]):
        make_run(tmp_path / "runs" / f"tuned-{seed}", "tuned", seed, accuracy)
    assert results.main(["--root", str(root), "--record", str(tmp_path / "runs"), "--note", "Shared."]) == 0
    recorded = root / "results" / "runs" / "tuned-1"
    assert sorted(os.listdir(recorded)) == ["config.json", "history.csv", "metrics.json"]
    page = (root / "docs" / "results.md").read_text()
    assert "**0.8000 ± 0.0816 (0.7000-0.9000)**, n = 25,000" in block(page, "recipes")
    assert "| 31 s (30-32) |" in block(page, "recipes")
    assert "Shared." in block(page, "machine")
    assert re.sub(r"<!-- results:(\w+) -->\n.*?<!-- /results:\1 -->", "", page, flags=re.S) == \
        re.sub(r"<!-- results:(\w+) -->\n.*?<!-- /results:\1 -->", "", PAGE, flags=re.S)
    readme = (root / "README.md").read_text()
    assert readme.startswith("# readme\n") and readme.endswith("<!-- /results:summary -->\nafter\n")
    summary = rows(block(readme, "summary"))
    assert [row[0] for row in summary] == ["yardstick: a paper", "`--recipe tuned`"]    # by accuracy
    assert results.main(["--root", str(root), "--check"]) == 0


def test_check_fails_when_a_table_is_edited_by_hand(root, tmp_path, capsys):
    make_run(tmp_path / "runs" / "tutorial-0", "tutorial", 0, 0.7)
    assert results.main(["--root", str(root), "--record", str(tmp_path / "runs")]) == 0
    page = root / "docs" / "results.md"
    page.write_text(page.read_text().replace("0.7000", "0.7100"))
    assert results.main(["--root", str(root), "--check"]) == 1
    assert "docs/results.md" in capsys.readouterr().err
    assert results.main(["--root", str(root)]) == 0
    assert results.main(["--root", str(root), "--check"]) == 0


def test_a_run_that_is_not_its_recipe_is_refused_and_a_changed_recipe_fails_check(root, tmp_path, capsys):
    make_run(tmp_path / "runs" / "tuned-0", "tuned", 0, 0.8, vocab_size=2000)
    make_run(tmp_path / "runs" / "tuned-1", "tuned", 1, 0.8)
    make_run(tmp_path / "runs" / "tuned-2", "tuned", 2, 0.8, test_limit=5000)
    assert results.main(["--root", str(root), "--record", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert "refused" in err and "vocab_size: 2000 (1000)" in err and "test_limit: 5000 (None)" in err
    assert sorted(os.listdir(root / "results" / "runs")) == ["tuned-1"]
    config = root / "results" / "runs" / "tuned-1" / "config.json"     # as if the recipe changed since
    config.write_text(json.dumps({**json.loads(config.read_text()), "units": 32}))
    assert results.main(["--root", str(root), "--check"]) == 1
    assert "results/runs/tuned-1 is not its recipe now (units: 32 (64))" in capsys.readouterr().err


def test_links_unfinished_runs_and_large_files_are_not_read(root, tmp_path, capsys):
    runs = tmp_path / "runs"
    make_run(tmp_path / "elsewhere" / "tuned-0", "tuned", 0, 0.8)
    runs.mkdir()
    os.symlink(tmp_path / "elsewhere" / "tuned-0", runs / "tuned-0")
    (runs / "tuned-1").mkdir()
    assert results.main(["--root", str(root), "--record", str(runs)]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "not finished" in err
    assert not (root / "results" / "runs").exists()
    make_run(runs / "tuned-2", "tuned", 2, 0.8)
    (runs / "tuned-2" / "history.csv").write_text("x" * (results.MAX_BYTES + 1))
    assert results.main(["--root", str(root), "--record", str(runs)]) == 2
    assert "more than a run's small file" in capsys.readouterr().err
    assert results.main(["--root", str(root), "--record", str(tmp_path / "nowhere")]) == 2


def test_print_shows_any_runs_without_writing(root, tmp_path, capsys):
    make_run(tmp_path / "runs" / "semi-4", "semi", 4, 0.8)
    assert results.main(["--root", str(root), "--print", str(tmp_path / "runs" / "semi-4")]) == 0
    out = capsys.readouterr().out
    assert "| `semi` | 1,000 + the other training reviews' text, unlabeled | 4 (a check: chosen on none) |" in out
    assert (root / "docs" / "results.md").read_text() == PAGE
