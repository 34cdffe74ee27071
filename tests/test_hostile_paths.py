"""Paths and sizes from a second newcomer's trial: links where a folder is written, empty paths,
inspect's text after its options, the bench's checks before its timing, inspect's passes bounded
in memory, JSON keys given twice, where a bad data path came from. Each refusal is one line,
status 2, and writes nothing."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_cli import TINY, write_tree
from test_hostile_inputs import command, refused

from numpy_lstm import SentimentLSTM, attribution
from numpy_lstm.attribution import PASS_BYTES, integrated_gradients, occlusion, rows_per_pass
from numpy_lstm.cli import main
from numpy_lstm.errors import NumpyLSTMError
from numpy_lstm.inspect_cli import MAX_REVIEW_CHARACTERS
from numpy_lstm.safe_files import parse_json


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("imdb"), per_class=40)


@pytest.fixture(scope="module")
def trained(tree, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--data", str(tree), "--out", str(run), "--epochs", "1", *TINY]) == 0
    return run


@pytest.fixture
def linked_folder(tmp_path):
    """An empty folder of the user's, and a link to it."""
    (tmp_path / "mine").mkdir()
    os.symlink(tmp_path / "mine", tmp_path / "link")
    return tmp_path / "link"


@pytest.mark.parametrize("slash", ["", "/"])
def test_train_does_not_write_through_a_link_to_a_folder(slash, tree, linked_folder):
    refused(command("train", "--data", tree, "--out", f"{linked_folder}{slash}", *TINY),
            "is a symbolic link, which numpy-lstm does not follow")
    assert os.listdir(linked_folder.parent / "mine") == []


def test_resume_does_not_follow_a_link(trained, tmp_path):
    os.symlink(trained, tmp_path / "link")
    refused(command("train", "--resume", tmp_path / "link"), "--resume", "is a symbolic link")


def test_inspect_does_not_write_through_a_link_to_a_folder(trained, linked_folder):
    refused(command("inspect", trained, "great", "--out", linked_folder), "--out", "is a symbolic link")
    assert os.listdir(linked_folder.parent / "mine") == []


@pytest.mark.parametrize("args, name", [
    (["train", "--resume", ""], "--resume"),
    (["train", "--out", " "], "--out"),
    (["train", "--data", ""], "--data"),
    (["evaluate", "RUN", "--data", ""], "--data"),
    (["evaluate", ""], "RUN_DIR"),
    (["predict", "", "great"], "RUN_DIR"),
    (["inspect", "RUN", "great", "--out", ""], "--out"),
    (["bench", "--quick", "--json", ""], "--json"),
    (["bench", "--quick", "--plot", ""], "--plot"),
    (["bench", "--compare", ""], "--compare"),
])
def test_an_empty_path_is_refused_not_taken_for_the_default(args, name, tmp_path):
    args = [str(tmp_path / "run") if a == "RUN" else a for a in args]
    refused(command(*args), f"{name} is empty")
    assert not os.listdir(tmp_path)


def test_inspect_takes_its_text_after_its_options(trained, tmp_path):
    code, out, err = command("inspect", trained, "--out", tmp_path / "page", "great")
    assert code == 0 and out.endswith("report.html\n"), err
    code, _, err = command("inspect", trained, "--out", tmp_path / "page", "great", "film")
    assert code == 2 and err == ("numpy-lstm inspect: error: unrecognized arguments: great film "
                                 "(see numpy-lstm inspect --help)\n")


def test_inspect_refuses_a_review_longer_than_its_page_takes(trained, tmp_path):
    text = "great " * (MAX_REVIEW_CHARACTERS // 6 + 1)
    refused(command("inspect", trained, "--out", tmp_path / "page", stdin=text.encode()),
            f"inspect reads at most {MAX_REVIEW_CHARACTERS:,}")
    assert not (tmp_path / "page").exists()


def test_evaluate_bounds_its_limit_by_its_own_flag(trained):
    refused(command("evaluate", trained, "--limit", "99999999999"), "--limit must be a positive number of reviews")


def test_the_bench_checks_where_it_writes_before_it_times(tmp_path):
    refused(command("bench", "--quick", "--json", tmp_path / "no" / "such" / "r.json"), "does not exist")
    assert not (tmp_path / "no").exists()
    refused(command("bench", "--quick", "--plot", "/proc/r.png"), "--plot /proc/r.png: cannot write in /proc")
    refused(command("bench", "--shapes", "1,100001,1,1"), "has 100,001 steps; the bench takes at most 100,000")


def test_the_bench_refuses_a_comparison_of_nothing_before_it_times(tmp_path):
    assert main(["bench", "--quick", "--repeats", "1", "--json", str(tmp_path / "old.json")]) == 0
    refused(command("bench", "--shapes", "1,2,3,4", "--compare", tmp_path / "old.json"),
            "timed none of these shapes: nothing to compare")


def test_a_pass_of_integrated_gradients_is_bounded_in_memory():
    model = SentimentLSTM(vocab_size=20, embed_dim=32, units=100, seed=0)
    assert rows_per_pass(model, 500) == 65                      # the reviews a model is trained on: one pass
    assert rows_per_pass(model, 100_000) == 1                   # --maxlen's most: a row at a time
    rows = rows_per_pass(model, 5_000)
    assert 1 < rows < 65 and rows * 5_000 * (32 + 100 + 1 + 11 * 100) * 4 <= PASS_BYTES


def test_smaller_passes_give_the_same_attributions(monkeypatch):
    model = SentimentLSTM(vocab_size=20, embed_dim=4, units=3, dtype="float64", seed=0)
    ids = np.array([0, 0, 5, 7, 3, 9, 2])
    whole = integrated_gradients(model, ids, 64)
    occluded = occlusion(model, ids, whole.logit)
    monkeypatch.setattr(attribution, "PASS_BYTES", 1)           # one row a pass
    assert rows_per_pass(model, len(ids)) == 1
    parts = integrated_gradients(model, ids, 64)
    np.testing.assert_allclose(parts.attributions, whole.attributions, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(occlusion(model, ids, whole.logit), occluded, rtol=1e-12, atol=1e-14)


def test_a_key_given_twice_is_not_strict_json():
    with pytest.raises(NumpyLSTMError, match="the key 'seed' is given twice"):
        parse_json('{"seed": 0, "units": 4, "seed": 1}', "config.json")
    assert parse_json('{"a": {"b": 1}, "b": 2}', "x") == {"a": {"b": 1}, "b": 2}    # a key per object


def test_bad_data_from_the_environment_says_where_its_path_came_from(tmp_path):
    (tmp_path / "mine.txt").write_text("not an archive\n")
    code, _, err = command_env({"NUMPY_LSTM_DATA": str(tmp_path / "mine.txt")}, "train", "--out",
                               tmp_path / "run", *TINY)
    assert code == 2 and "NUMPY_LSTM_DATA" in err and err.count("\n") == 1, err


def test_a_bench_result_of_another_format_is_refused(tmp_path):
    assert main(["bench", "--quick", "--repeats", "1", "--json", str(tmp_path / "old.json")]) == 0
    result = json.loads((tmp_path / "old.json").read_text())
    (tmp_path / "new.json").write_text(json.dumps({**result, "numpy_lstm_bench": 99}))
    refused(command("bench", "--compare", tmp_path / "new.json"), "format 99; this version reads format 1")


def command_env(env, *args):
    """`command` with more environment variables."""
    proc = subprocess.run([sys.executable, "-m", "numpy_lstm", *map(str, args)], capture_output=True, timeout=120,
                          env={**os.environ, **env})
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()
