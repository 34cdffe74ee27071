"""Hostile and careless files, each built for real: links and other people's folders where a run
writes, tampered run files, FIFOs, crafted archives and caches (issue 30).

Every refusal is one line on standard error and exit status 2, from the real command, and no file
outside the run folder changes (`outside_unchanged`). The command-line side (predict's input,
size flags, messages) is in test_hostile_commands.py.
"""
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest
from test_cli import TINY, write_tree

from numpy_lstm import SentimentLSTM, model
from numpy_lstm.cli import main
from numpy_lstm.data import load_imdb
from numpy_lstm.errors import NumpyLSTMError
from numpy_lstm.rundir import RUN_MARKER, RunDir

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="FIFOs, O_NOFOLLOW and flock")


def command(*args, stdin=b"", timeout=120, env=None):
    """The real command in a subprocess, with `env`'s variables added to ours: (exit status,
    stdout, stderr). A hang is a failure (timeout)."""
    proc = subprocess.run([sys.executable, "-m", "numpy_lstm", *map(str, args)], input=stdin,
                          capture_output=True, timeout=timeout, env=None if env is None else {**os.environ, **env})
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def refused(result, *words):
    """Assert a one-line refusal with status 2 that says each of `words`."""
    code, _, err = result
    assert code == 2 and err.startswith("numpy-lstm: error: ") and err.count("\n") == 1, err
    assert all(word in err for word in words), err


def snapshot(root, leave_out=None):
    """Everything under root but the folder leave_out: type, content and mtime of each path."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if leave_out and (path == str(leave_out) or path.startswith(str(leave_out) + os.sep)):
                continue
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                found[path] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as f:
                    found[path] = ("file", f.read(), info.st_mtime_ns)
            else:
                found[path] = (stat.S_IFMT(info.st_mode),)
    return found


class outside_unchanged:
    """`with outside_unchanged(home, run):` asserts that nothing under home outside run changed."""

    def __init__(self, home, run=None):
        self.home, self.run = home, run

    def __enter__(self):
        self.before = snapshot(self.home, self.run)

    def __exit__(self, *exc):
        assert snapshot(self.home, self.run) == self.before


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("imdb"), per_class=40)


@pytest.fixture(scope="module")
def trained(tree, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--data", str(tree), "--out", str(run), "--epochs", "1", *TINY]) == 0
    return run


@pytest.fixture
def home(tmp_path):
    """A user's folder, with a file of theirs in it."""
    (tmp_path / "important.txt").write_text("the user's own words\n")
    return tmp_path


def copy_run(trained, home, name="run"):
    return shutil.copytree(trained, home / name, symlinks=True)


def train_into(tree, out, *extra):
    return command("train", "--data", tree, "--out", out, "--epochs", "1", *TINY, *extra)


# ----------------------------------------------------------------------------- where a run writes

def test_a_finished_run_leaves_its_marker_and_no_lock(trained):
    assert not (trained / "train.lock").exists()
    assert json.loads((trained / RUN_MARKER).read_text())["format"] == "numpy-lstm run folder"


def test_train_lock_that_links_to_a_users_file_is_never_followed(tree, trained, home):
    plain = home / "d"                                      # the case: a folder of the user's
    plain.mkdir()
    (plain / "train.lock").symlink_to(home / "important.txt")
    ours = copy_run(trained, home)                          # and a run of ours, resumed
    (ours / "train.lock").symlink_to(home / "important.txt")
    hard = copy_run(trained, home, "hard")                  # a second name of the user's file
    os.link(home / "important.txt", hard / "train.lock")
    with outside_unchanged(home):
        refused(train_into(tree, plain), f"{plain} is not empty and is not a numpy-lstm run folder")
        refused(command("train", "--resume", ours), f"{ours / 'train.lock'} is a symbolic link")
        refused(command("train", "--resume", hard), "not a lock file numpy-lstm made")
    assert (home / "important.txt").read_text() == "the user's own words\n"


def test_a_folder_of_the_users_is_refused_and_left_as_it_was(tree, home):
    mine = home / "results"
    mine.mkdir()
    for name in ("config.json", "metrics.json", "history.csv", "vocab.json"):
        (mine / name).write_text('{"mine": true}\n')
    notes = home / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("buy milk")
    with outside_unchanged(home):
        for folder in (mine, notes):
            refused(train_into(tree, folder), f"{folder} is not empty and is not a numpy-lstm run folder")
            refused(command("train", "--resume", folder), str(folder))
        refused(train_into(tree, home / "important.txt"), "is not a folder")


def test_an_empty_folder_and_a_new_one_are_taken(tree, home):
    (home / "empty").mkdir()
    with outside_unchanged(home, home / "empty"):
        assert train_into(tree, home / "empty")[0] == 0
    with outside_unchanged(home, home / "new"):
        assert train_into(tree, home / "new" / "run")[0] == 0
    for run in (home / "empty", home / "new" / "run"):
        assert (run / RUN_MARKER).exists() and (run / "model.npz").exists()


def test_a_run_from_before_the_marker_is_still_ours(tree, trained, home):
    old = copy_run(trained, home)
    (old / RUN_MARKER).unlink()
    assert command("predict", old, "great film")[0] == 0
    assert command("evaluate", old, "--data", tree)[0] == 0
    refused(train_into(tree, old), "already holds a run")
    assert command("train", "--resume", old)[0] == 0
    assert (old / RUN_MARKER).exists()


def test_a_failed_start_leaves_nothing_that_blocks_or_confuses(tmp_path):
    tree = write_tree(tmp_path / "imdb", per_class=20)
    (tree / "aclImdb" / "train" / "pos" / "notes.txt").write_text("not a review")
    out = tmp_path / "run"
    refused(train_into(tree, out), "unexpected file")
    assert not (out / "train.lock").exists()
    for verb in ("predict", "inspect"):
        refused(command(verb, out, "great"), f"{out} is an unfinished run", f"--resume {out}")
    refused(command("evaluate", out), "unfinished run")


def test_a_link_in_place_of_a_models_folder_is_refused(tree, home):
    out = home / "run"
    out.mkdir()
    (out / RUN_MARKER).write_text(json.dumps({"format": "numpy-lstm run folder"}))
    (out / "model-1").symlink_to(home)
    with outside_unchanged(home, out):
        refused(train_into(tree, out, "--ensemble", "2"), "model-1 is a symbolic link")


# ----------------------------------------------------------------------------- tampered run files

def rewrite_npz(path, change):
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def npy_claiming(shape, dtype="<f4"):
    """An .npy whose header claims `shape`, followed by a few bytes only."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
    return out.getvalue() + b"\0" * 64       # the header writer writes the magic string too


def replace_member(path, name, content):
    with zipfile.ZipFile(path) as old:
        members = {info.filename: old.read(info) for info in old.infolist()}
    members[name] = content
    with zipfile.ZipFile(path, "w") as new:
        for member, data in members.items():
            new.writestr(member, data)


def set_model_config(arrays, **changes):
    arrays["config"] = np.array(json.dumps({**json.loads(str(arrays["config"])), **changes}))


def test_a_model_file_is_checked_before_the_model_is_built(trained, tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    shutil.copy(trained / "model.npz", path)
    rewrite_npz(path, lambda arrays: set_model_config(arrays, units=6000))

    def built(*args, **kwargs):
        raise AssertionError("a model was built from an unchecked file")

    monkeypatch.setattr(model, "Embedding", built)
    with pytest.raises(NumpyLSTMError, match=r"lstm/kernel.npy|array .*expected"):
        SentimentLSTM.load(path)


@pytest.mark.parametrize("damage, words", [
    (lambda a: set_model_config(a, units=6000), "expected float32 (8, 24000)"),
    (lambda a: set_model_config(a, units=10 ** 9), "units must be a positive integer, at most 10,000"),
    (lambda a: set_model_config(a, embed_dim="wide"), "embed_dim must be a positive integer"),
    (lambda a: set_model_config(a, evil=1), "unknown setting evil"),
    (lambda a: a.update(config=np.array('{"units": NaN}')), "NaN is not a number strict JSON allows"),
    (lambda a: a.update(config=np.array("[" * 30_000 + "]" * 30_000)), "nested too deep"),
    (lambda a: a.update(config=np.array("[" * 100_000 + "]" * 100_000)), "not a text of at most 65,536 characters"),
    (lambda a: a.update({"dense/bias": np.array([np.inf], np.float32)}), "not finite"),
    (lambda a: a.update({"dense/bias": np.array(["x"], object)}), "Python objects"),
])
def test_tampered_model_file(damage, words, trained, home):
    run = copy_run(trained, home)
    rewrite_npz(run / "model.npz", damage)
    with outside_unchanged(home, run):
        refused(command("predict", run, "great film"), str(run / "model.npz"), words)


@pytest.mark.parametrize("name, member", [("model.npz", "embedding/embeddings.npy"), ("model.npz", "config.npy"),
                                          ("checkpoint.npz", "weights/0.npy")])
def test_npy_header_claiming_a_huge_array(name, member, trained, home):
    run = copy_run(trained, home)
    replace_member(run / name, member, npy_claiming((10 ** 11,), "<U10" if member == "config.npy" else "<f4"))
    before = (run / "model.npz").read_bytes()
    verb = ["predict", run, "great"] if name == "model.npz" else ["train", "--resume", run]
    refused(command(*verb), str(run / name), "declares (100000000000,)")     # said from the header alone
    if name == "checkpoint.npz":
        assert (run / "model.npz").read_bytes() == before


def test_resume_from_a_checkpoint_with_nan_replaces_nothing(trained, home):
    run = copy_run(trained, home)
    rewrite_npz(run / "checkpoint.npz", lambda a: a["weights/1"].__setitem__((0, 0), np.nan))
    before = {name: (run / name).read_bytes() for name in ("model.npz", "metrics.json", "history.csv")}
    with outside_unchanged(home):         # the run folder included
        refused(command("train", "--resume", run), "checkpoint.npz", "not finite")
    assert {name: (run / name).read_bytes() for name in before} == before


def test_checkpoint_state_that_no_run_writes(trained, home):
    run = copy_run(trained, home)

    def bad_state(arrays):
        state = json.loads(str(arrays["state"]))
        arrays["state"] = np.array(json.dumps({**state, "position": {"batch": 10 ** 6, "seen": 0}}))

    rewrite_npz(run / "checkpoint.npz", bad_state)
    refused(command("train", "--resume", run), "its state is damaged", "position")


@pytest.mark.parametrize("name, content, words", [
    ("config.json", lambda c: {**c, "maxlen": 10 ** 12}, "maxlen must be a positive integer, at most 100,000"),
    ("config.json", lambda c: json.dumps(c).replace('"maxlen": 20', '"maxlen": 1' + "0" * 400),
     "maxlen must be a positive integer, at most 100,000"),
    ("config.json", lambda c: json.dumps(c).replace('"maxlen": 20', '"maxlen": 1e400'), "too large for a number"),
    ("config.json", lambda c: json.dumps(c).replace('"lr": 0.001', '"lr": NaN'), "NaN is not a number"),
    ("config.json", lambda c: {**c, "data": {"path": 1}}, "data must be a text"),
    ("config.json", lambda c: {**c, "mask": "yes"}, "mask must be true or false"),
    ("config.json", lambda c: "[" * 100_000 + "]" * 100_000, "nested too deep"),
    ("vocab.json", lambda v: '{"a": ' * 50_000 + "1" + "}" * 50_000, "nested too deep"),
    ("vocab.json", lambda v: {**v, "size": 10 ** 12}, "not a vocabulary file"),
    ("vocab.json", lambda v: b"\xff\xfe{}", "not UTF-8"),
])
def test_tampered_json_file(name, content, words, trained, home):
    run = copy_run(trained, home)
    value = content(json.loads((run / name).read_text()))
    data = value if isinstance(value, bytes) else (value if isinstance(value, str) else json.dumps(value)).encode()
    (run / name).write_bytes(data)
    with outside_unchanged(home, run):
        for verb in (["predict", run, "great"], ["evaluate", run]):
            refused(command(*verb), str(run / name), words)


@pytest.mark.parametrize("name", ["vocab.json", "config.json", "model.npz", "checkpoint.npz"])
def test_a_fifo_in_place_of_a_run_file_is_refused_not_waited_on(name, trained, home):
    run = copy_run(trained, home)
    (run / name).unlink()
    os.mkfifo(run / name)
    verb = ["train", "--resume", run] if name == "checkpoint.npz" else ["predict", run, "great"]
    refused(command(*verb, timeout=60), f"{run / name} is not a regular file")


def test_metrics_and_every_json_written_are_strict(tmp_path):
    run = RunDir(tmp_path)
    run.save_metrics({"test_accuracy": float("nan"), "test_loss": float("inf"), "val": [1.0, float("nan")]})

    def strict(name):
        raise ValueError(f"{name} in a file we wrote")

    metrics = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=strict)
    assert metrics == {"test_accuracy": None, "test_loss": None, "val": [1.0, None]}


# ----------------------------------------------------------------------------- the data and its cache

def write_tar(path, members, mode="w:gz", mtime=None):
    """A tar archive of {member name: bytes}."""
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))
    return path


def reviews(word):
    return {f"aclImdb/{split}/{label}/{i}_{rating}.txt": f"{word} {i}".encode()
            for split in ("train", "test") for label, rating in (("pos", 9), ("neg", 2)) for i in range(3)}


def test_parse_cache_is_keyed_by_content_not_size_and_time(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMPY_LSTM_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "imdb.tar"
    write_tar(archive, reviews("aaaa"), mode="w", mtime=10 ** 18)
    assert load_imdb(archive).texts[0] == "aaaa 0"
    size = archive.stat().st_size
    write_tar(archive, reviews("bbbb"), mode="w", mtime=10 ** 18)     # same size, same time, other reviews
    assert archive.stat().st_size == size
    assert load_imdb(archive).texts[0] == "bbbb 0"


def test_archive_members_count_only_at_their_exact_place(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMPY_LSTM_CACHE", str(tmp_path / "cache"))
    planted = ("../../train/pos/999_10.txt", "x/aclImdb/train/pos/998_10.txt", "aclImdb/train/pos/../pos/997_10.txt",
               "train/pos/996_10.txt")
    members = {**reviews("good"), **{name: b"planted" for name in planted}}
    data = load_imdb(write_tar(tmp_path / "imdb.tar.gz", members))
    assert data.ids.tolist() == [0, 1, 2, 0, 1, 2] and "planted" not in data.texts


def test_archive_review_larger_than_any_review_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMPY_LSTM_CACHE", str(tmp_path / "cache"))
    archive = write_tar(tmp_path / "imdb.tar.gz", {**reviews("good"), "aclImdb/train/pos/7_9.txt": b"a" * (2 << 20)})
    with pytest.raises(NumpyLSTMError, match="7_9.txt .* more than a review file can be"):
        load_imdb(archive)


def test_a_cache_file_not_of_ours_is_parsed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMPY_LSTM_CACHE", str(tmp_path / "cache"))
    archive = write_tar(tmp_path / "imdb.tar.gz", reviews("good"))
    load_imdb(archive)
    for cached in (tmp_path / "cache").iterdir():
        cached.write_text(json.dumps([["train", 7, "x", 0, {}, None]]) if "train" in cached.name else "[" * 10 ** 5)
    assert load_imdb(archive, split="all").texts == load_imdb(archive, split="all").texts
    assert load_imdb(archive).texts[0] == "good 0" and load_imdb(archive, split="test").texts[0] == "good 0"


def test_a_fifo_among_the_review_files_is_refused(tmp_path):
    tree = write_tree(tmp_path / "imdb", per_class=5)
    os.mkfifo(tree / "aclImdb" / "train" / "pos" / "99_9.txt")
    refused(command("train", "--data", tree, "--out", tmp_path / "run", *TINY, timeout=60),
            "99_9.txt is not a regular file")


def test_a_small_file_read_under_a_large_limit_takes_memory_for_its_length(tmp_path):
    """The parse cache's limit is 4 GB: a read that took a buffer of the limit fails where the
    address space is capped (ulimit -v, a container), however small the file."""
    small = tmp_path / "small.json"
    small.write_bytes(b"[]")
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
            "from numpy_lstm.safe_files import read_bytes; "
            f"print(read_bytes({str(small)!r}, 'parse cache', 4096 << 20))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == "b'[]'"


@pytest.mark.parametrize("limit, whole", [(10_000, True), (3_000, False)])
def test_a_file_that_grows_while_read_is_read_to_its_end_or_refused(tmp_path, monkeypatch, limit, whole):
    """Grown past the length it had when opened (here: a length reported short), the rest is read
    too, up to the limit, and a file past the limit is refused in one line."""
    from numpy_lstm import safe_files
    grown = tmp_path / "grown"
    grown.write_bytes(b"x" * 5_000)
    real_fstat = os.fstat

    class Short:
        def __init__(self, st):
            self.st_mode, self.st_size = st.st_mode, 100

    monkeypatch.setattr(safe_files.os, "fstat", lambda fd: Short(real_fstat(fd)))
    if whole:
        assert safe_files.read_bytes(grown, "review file", limit) == b"x" * 5_000
    else:
        with pytest.raises(NumpyLSTMError, match="more than a review file can be"):
            safe_files.read_bytes(grown, "review file", limit)
