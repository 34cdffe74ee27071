"""Hostile and careless command lines (issue 30): predict's input and output, size flags, flags
argparse used to guess, and what a long run says while it works; then paths and sizes from a
second newcomer's trial: links where a folder is written, empty paths, inspect's text after its
options, the bench's checks before its timing, inspect's passes bounded in memory, JSON keys
given twice, where a bad data path came from.

Each refusal is one line, status 2, and nothing is written (the run folder is not even made).
Files read and written are in test_hostile_inputs.py.
"""
import io
import json
import os
import signal
import sys

import numpy as np
import pytest
from fault_runs import signal_at_batch
from test_cli import TINY, write_tree
from test_hostile_inputs import command, refused

from numpy_lstm import SentimentLSTM, __version__, attribution, recipe_config, train
from numpy_lstm.attribution import PASS_BYTES, integrated_gradients, occlusion, rows_per_pass
from numpy_lstm.cli import main
from numpy_lstm.errors import NumpyLSTMError
from numpy_lstm.inspect_cli import MAX_REVIEW_CHARACTERS
from numpy_lstm.memory import check_fits, estimate_bytes
from numpy_lstm.safe_files import parse_json


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("imdb"), per_class=40)


@pytest.fixture(scope="module")
def trained(tree, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--data", str(tree), "--out", str(run), "--epochs", "1", *TINY]) == 0
    return run


def rows(stdout):
    return stdout.split("\n")[:-1]


# ----------------------------------------------------------------------------- predict

@pytest.mark.parametrize("inside", ["\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x0b", "\r"])
def test_one_row_per_line_whatever_breaks_a_line_for_unicode(inside, trained):
    stdin = f"good movie{inside}bad movie\nawful film\r\ngreat\n".encode()
    code, out, err = command("predict", trained, stdin=stdin)
    assert code == 0 and len(rows(out)) == 3, (out, err)
    code, out, _ = command("predict", trained, "--json", stdin=stdin)
    assert [json.loads(row)["text"] for row in rows(out)] == [f"good movie{inside}bad movie", "awful film", "great"]


def test_a_blank_line_keeps_its_row_so_rows_match_lines(trained):
    code, out, err = command("predict", trained, stdin=b"great superb\n\nthe and of\nawful dull\n")
    lines = rows(out)
    assert code == 0 and len(lines) == 4, out
    assert lines[1].startswith("-\t-\t") and lines[2].startswith("-\t-\t")
    assert float(lines[0].split("\t")[0]) > 0 and float(lines[3].split("\t")[0]) >= 0
    assert err.count("\n") == 1 and "2 of 4 reviews have no word the model reads" in err
    out = command("predict", trained, "--json", stdin=b"great\n\n")[1]
    assert json.loads(rows(out)[1]) == {"text": "", "probability": None, "label": None}


@pytest.mark.parametrize("texts", [[""], ["the and of is"], ["   "], ["", "the"]])
def test_no_word_the_model_reads_is_said_as_inspect_says_it(texts, trained, tmp_path):
    refused(command("predict", trained, *texts), "nothing to predict", "reaches the model")
    if len(texts) == 1 and texts[0].strip():
        refused(command("inspect", trained, *texts, "--out", tmp_path / "page"), "nothing to inspect",
                "no word of the review reaches the model")


def test_terminal_control_characters_are_escaped(trained):
    text = "great \x1b[2J\x1b]0;pwned\x07 film\tend \u202eevil \x9b31m"
    code, out, _ = command("predict", trained, text)
    assert code == 0 and out.count("\t") == 2 and out.endswith("\n") and out.count("\n") == 1
    assert not any(c in out for c in "\x1b\x07\x9b\u202e")
    assert "\\x1b[2J\\x1b]0;pwned\\x07 film\\x09end \\u202eevil \\x9b31m" in out
    code, out, _ = command("predict", trained, "--json", text)
    assert json.loads(out)["text"] == text and "\x1b" not in out


# ----------------------------------------------------------------------------- sizes

@pytest.mark.parametrize("flags, words", [
    (["--units", "100000"], "--units must be a positive integer, at most 10,000"),
    (["--embed-dim", "100000000"], "--embed-dim must be a positive integer, at most 10,000"),
    (["--vocab-size", "1000000000000"], "--vocab-size must be at least 3 (ids 0 and 1 are reserved), at most"),
    (["--num-layers", "1000000"], "--num-layers must be a positive integer, at most 16"),
    (["--ensemble", "1000000"], "--ensemble must be a positive integer, at most 100"),
    (["--maxlen", "10000000"], "--maxlen must be a positive integer, at most 100,000"),
    (["--epochs", "10000000000"], "--epochs must be a positive integer, at most 100,000"),
    (["--vocab-size", "10000000", "--embed-dim", "10000"], "these settings need at least 1.2 TB of memory"),
])
def test_size_flags_are_bounded_before_any_data_is_read(flags, words, tmp_path):
    # The data path does not exist: a refusal that names the size was made before reading it
    refused(command("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "run", *flags), words)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("out", ["", "  "])
def test_an_empty_out_is_refused_not_taken_for_the_default(out, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(command("train", "--data", tmp_path / "nowhere", "--out", out), "--out is empty")
    assert not (tmp_path / "runs").exists() and not any(tmp_path.iterdir())


def test_memory_estimate_refuses_what_the_machine_cannot_hold():
    config = recipe_config("tutorial")
    assert estimate_bytes(config) < 1e9                       # the recipes are far from any limit
    assert estimate_bytes(recipe_config("full")) < 2e9
    assert check_fits(config, available=10 ** 12) == estimate_bytes(config)
    with pytest.raises(NumpyLSTMError, match="need at least 16.* of memory and this machine has 1.0 MB"):
        check_fits(config, available=10 ** 6)
    bigger = recipe_config("tutorial", units=1000, ensemble=10, maxlen=2000)
    assert estimate_bytes(bigger) > 10 * estimate_bytes(config)


# ----------------------------------------------------------------------------- flags

def test_no_abbreviated_flags_and_a_version(tmp_path):
    # argparse's refusals name the subcommand, and point at its own help
    for args, leftover in ((("train", "--epoch", "1", "--out", tmp_path / "run"), "--epoch 1"),
                           (("predict", tmp_path, "--js", "great"), "--js great")):
        code, _, err = command(*args)
        assert code == 2 and err == (f"numpy-lstm {args[0]}: error: unrecognized arguments: {leftover} "
                                     f"(see numpy-lstm {args[0]} --help)\n"), err
    assert not (tmp_path / "run").exists()
    code, out, _ = command("--version")
    assert code == 0 and out == f"numpy-lstm {__version__}\n"


# ----------------------------------------------------------------------------- what a long run says

class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_scoring_the_test_set_has_a_progress_bar_on_a_terminal(tree, tmp_path, monkeypatch):
    args = ["train", "--data", str(tree), "--epochs", "1", *[f for f in TINY if f != "--quiet"]]
    for quiet in (False, True):
        screen = Terminal()
        monkeypatch.setattr(sys, "stdout", screen)
        assert main([*args, "--out", str(tmp_path / str(quiet)), *["--quiet"] * quiet]) == 0
        monkeypatch.undo()
        shown = screen.getvalue()
        assert ("official test set:" in shown and "/80 " in shown) != quiet, shown
        assert (shown == "") == quiet


def test_interrupt_and_resume_count_batches_one_way(tree, tmp_path, monkeypatch, capsys):
    schedule = signal_at_batch(monkeypatch, signal.SIGINT, epoch=2, batch=2)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tree), "--out", str(out), "--epochs", "3", *TINY]) == 130
    assert "interrupted in epoch 2 after batch 2 of 5," in capsys.readouterr().err
    monkeypatch.setattr(train, "learning_rate", schedule)
    assert main(["train", "--resume", str(out)]) == 0
    assert f"resuming {out} in epoch 2 after batch 2 of 5\n" in capsys.readouterr().out


# ----------------------------------------------------------------------------- paths and sizes

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
    code, _, err = command("train", "--out", tmp_path / "run", *TINY,
                           env={"NUMPY_LSTM_DATA": str(tmp_path / "mine.txt")})
    assert code == 2 and "NUMPY_LSTM_DATA" in err and err.count("\n") == 1, err


def test_a_bench_result_of_another_format_is_refused(tmp_path):
    assert main(["bench", "--quick", "--repeats", "1", "--json", str(tmp_path / "old.json")]) == 0
    result = json.loads((tmp_path / "old.json").read_text())
    (tmp_path / "new.json").write_text(json.dumps({**result, "numpy_lstm_bench": 99}))
    refused(command("bench", "--compare", tmp_path / "new.json"), "format 99; this version reads format 1")

