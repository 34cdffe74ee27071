"""`numpy-lstm` end to end on a small synthetic aclImdb tree: train, resume, predict, evaluate, errors."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from numpy_lstm import SentimentLSTM, sigmoid
from numpy_lstm.cli import main
from numpy_lstm.engine.cores import PROCESSES_PER_CPU
from numpy_lstm.prepare import encode
from numpy_lstm.rundir import RunDir

GOOD = "great wonderful superb loved brilliant enjoyable masterpiece touching".split()
BAD = "awful boring terrible hated dull waste worst mess".split()
FILLER = "movie film plot actor scene story director camera music ending character script".split()
TINY = ["--per-class", "40", "--vocab-size", "60", "--maxlen", "20", "--embed-dim", "8",
        "--units", "8", "--batch-size", "16", "--quiet"]


def write_tree(root, per_class, seed=0):
    """aclImdb/{train,test}/{pos,neg}/ID_RATING.txt with reviews a small LSTM can tell apart."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for label, words, ratings in (("pos", GOOD, (7, 10)), ("neg", BAD, (1, 4))):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                n = rng.integers(5, 25)
                tokens = list(rng.choice(FILLER, n)) + list(rng.choice(words, 2))
                rng.shuffle(tokens)
                rating = rng.integers(ratings[0], ratings[1] + 1)
                (folder / f"{i}_{rating}.txt").write_text("The " + " ".join(tokens) + ".<br /><br />Yes!")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("imdb"), per_class=60)


def run_cli(*args, env_extra=None):
    """The real command in a subprocess: (exit code, stdout, stderr)."""
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "numpy_lstm", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def weights_of(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_train_writes_a_complete_run_then_predict_and_evaluate(tree, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(tree), "--out", str(out), "--epochs", "3", "--seed", "1", *TINY]) == 0
    for name in ("config.json", "vocab.json", "checkpoint.npz", "model.npz", "history.csv", "metrics.json"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("val_accuracy", "test_accuracy", "test_n", "train_seconds", "seed", "recipe"):
        assert key in metrics
    assert metrics["test_n"] == 120 and metrics["seed"] == 1 and metrics["recipe"] == "tuned"
    assert len((out / "history.csv").read_text().strip().splitlines()) == 1 + metrics["epochs_run"]
    code, stdout, _ = run_cli("predict", out, "a wonderful superb film", "an awful boring mess")
    assert code == 0
    lines = stdout.strip().splitlines()
    assert len(lines) == 2 and all(0.0 <= float(line.split("\t")[0]) <= 1.0 for line in lines)
    code, stdout, _ = run_cli("evaluate", out, "--data", tree)
    assert code == 0 and "test accuracy" in stdout and "(120 reviews)" in stdout
    texts = ["a wonderful superb film", 'an "awful"\tboring mess, ünïcode']
    code, stdout, _ = run_cli("predict", out, texts[0], "--json", texts[1])
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0 and [row["text"] for row in rows] == texts
    lines = run_cli("predict", out, *texts)[1].splitlines()
    assert [f"{row['probability']:.4f}" for row in rows] == [line.split("\t")[0] for line in lines]
    assert [row["label"] for row in rows] == [line.split("\t")[1] for line in lines]


def test_the_task_is_learned(tree, tmp_path):
    out = tmp_path / "run"
    main(["train", "--data", str(tree), "--out", str(out), "--epochs", "25", "--lr", "0.01", *TINY])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.9, metrics


def test_predict_reads_stdin(tree, tmp_path):
    out = tmp_path / "run"
    main(["train", "--data", str(tree), "--out", str(out), "--epochs", "1", *TINY])
    proc = subprocess.run([sys.executable, "-m", "numpy_lstm", "predict", str(out)], input="great\n\nawful\n",
                          capture_output=True, text=True)
    rows = proc.stdout.split("\n")[:-1]        # one per line, the blank one too
    assert proc.returncode == 0 and len(rows) == 3 and rows[1] == "-\t-\t" and rows[0].endswith("\tgreat")


def test_same_seed_same_numbers(tree, tmp_path):
    metrics = []
    for name in ("a", "b"):
        main(["train", "--data", str(tree), "--out", str(tmp_path / name), "--epochs", "2", "--seed", "5", *TINY])
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        metrics.append({k: v for k, v in m.items() if not k.endswith("seconds")})
    assert metrics[0] == metrics[1]
    a, b = weights_of(tmp_path / "a" / "model.npz"), weights_of(tmp_path / "b" / "model.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a if k != "config")


def kill_9_then_resume(args, out, marker):
    """Start `numpy-lstm train ARGS --out OUT`, kill -9 it once the file `marker` exists, resume it."""
    proc = subprocess.Popen([sys.executable, "-m", "numpy_lstm", *map(str, args), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists(), "the run finished before it could be killed"
    code, _, err = run_cli("train", "--resume", out)
    assert code == 0, err


def assert_same_run(a, b, model_dirs=("",)):
    """Bit-identical weights, histories and metrics (times aside)."""
    for d in model_dirs:
        wa, wb = weights_of(a / d / "model.npz"), weights_of(b / d / "model.npz")
        assert all(np.array_equal(wa[k], wb[k]) for k in wa if k != "config")
        assert (a / d / "history.csv").read_text() == (b / d / "history.csv").read_text()
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert {k: v for k, v in ma.items() if not k.endswith("seconds")} == \
        {k: v for k, v in mb.items() if not k.endswith("seconds")}


def test_kill_9_then_resume_ends_where_an_uninterrupted_run_ends(tree, tmp_path):
    args = ["train", "--data", tree, "--epochs", "30", "--seed", "3", "--patience", "100", *TINY,
            "--mask", "--dropout", "0.2", "--recurrent-dropout", "0.2", "--word-dropout", "0.1"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert run_cli(*args, "--out", straight)[0] == 0
    kill_9_then_resume(args, killed, killed / "checkpoint.npz")
    assert_same_run(straight, killed)


def test_ensemble_killed_in_its_second_model_resumes_to_the_same_end(tree, tmp_path):
    args = ["train", "--data", tree, "--epochs", "20", "--seed", "3", "--patience", "100", "--ensemble", "3",
            *TINY, "--mask", "--dropout", "0.2", "--ppmi-init", "0.1"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert run_cli(*args, "--out", straight)[0] == 0
    kill_9_then_resume(args, killed, killed / "model-2" / "checkpoint.npz")
    assert_same_run(straight, killed, model_dirs=("model-1", "model-2", "model-3"))


def test_ensemble_averages_its_models_and_its_first_model_is_the_single_run(tree, tmp_path):
    args = ["train", "--data", str(tree), "--epochs", "2", "--seed", "4", *TINY]
    one, three = tmp_path / "one", tmp_path / "three"
    assert main([*args, "--out", str(one)]) == 0
    assert main([*args, "--ensemble", "3", "--out", str(three)]) == 0
    single, first = weights_of(one / "model.npz"), weights_of(three / "model-1" / "model.npz")
    assert all(np.array_equal(single[k], first[k]) for k in single if k != "config")
    models = [SentimentLSTM.load(three / f"model-{k}" / "model.npz") for k in (1, 2, 3)]
    assert not np.array_equal(models[0].embedding.embeddings, models[1].embedding.embeddings)
    assert len(json.loads((three / "metrics.json").read_text())["epochs_run"]) == 3
    texts = ["a wonderful superb film", "an awful boring mess", "film plot scene"]
    code, stdout, _ = run_cli("predict", three, *texts)
    assert code == 0
    model, vocab, config = RunDir(three).load_model()
    ids = encode(texts, vocab, config)
    expected = sigmoid(np.mean([m.forward(ids)[0] for m in models], axis=0))
    assert [line.split("\t")[0] for line in stdout.strip().splitlines()] == [f"{p:.4f}" for p in expected]
    assert run_cli("evaluate", three, "--data", tree)[0] == 0
    (three / "model-2" / "model.npz").unlink()
    code, _, err = run_cli("predict", three, "great")
    assert code != 0 and "no model-2/model.npz" in err and "Traceback" not in err


def test_ctrl_c_says_how_to_resume(tree, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "numpy_lstm", "train", "--data", str(tree), "--out", str(out),
                             "--epochs", "200", *TINY], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "checkpoint.npz").exists() and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert f"--resume {out}" in err and "Traceback" not in err


def test_diverging_loss_stops_with_a_clear_message(tree, tmp_path):
    # Adam moves every weight by about lr per step: at 1e38, float32's limit (3.4e38) is passed
    # within a few steps whatever the data. (1e30 overflowed on one CPU and not on another.)
    code, _, err = run_cli("train", "--data", tree, "--out", tmp_path / "run", "--epochs", "3", "--lr", "1e38",
                           *TINY)
    assert code == 2
    assert "loss became" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flags, message", [
    (["--units", "0"], "--units must be a positive integer"),
    (["--maxlen", "0"], "--maxlen must be a positive integer"),
    (["--batch-size", "-3"], "--batch-size must be a positive integer"),
    (["--lr", "0"], "--lr must be positive"),
    (["--lr", "-1"], "--lr must be positive"),
    (["--vocab-size", "2"], "--vocab-size must be at least 3"),
    (["--dropout", "1.5"], "--dropout must be in"),
    (["--recurrent-dropout", "1"], "--recurrent-dropout must be in"),
    (["--ppmi-init", "-0.1"], "--ppmi-init must be 0 (off) or positive"),
    (["--ppmi-init", "0.1", "--embed-dim", "1", "--nb-init", "2"], "--ppmi-init needs embedding columns"),
    (["--ensemble", "0"], "--ensemble must be a positive integer"),
    (["--word-dropout", "-0.1"], "--word-dropout must be in"),
    (["--oov", "drop"], "--oov must be keep or skip"),
    (["--layers", "0"], "--num-layers must be a positive integer"),
    (["--recipe", "magic"], "unknown recipe 'magic'"),
    (["--seed", "-1"], "--seed must be 0 or a positive integer"),
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--nb-init", "nan"], "--nb-init must be a finite number"),
    (["--nb-init", "-1"], "--nb-init must be 0 (off) or positive"),
    (["--hashed-trigrams"], "--hashed-trigrams needs the pair table (--bigram-buckets N)"),
])
def test_nonsense_hyperparameters(flags, message, tree, tmp_path, capsys):
    """Refused in one line that names the setting by its flag."""
    assert main(["train", "--data", str(tree), "--out", str(tmp_path / "r"), *TINY, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()  # refused before anything was written


# One more than allowed: without the cap it forks that many workers, and trains
TOO_MANY = str(PROCESSES_PER_CPU * len(os.sched_getaffinity(0)) + 1)


@pytest.mark.parametrize("processes, message", [("two", "must be a positive integer"), (TOO_MANY, "must be at most")])
def test_bad_core_count_in_the_environment(processes, message, tmp_path, tree):
    code, _, err = run_cli("train", "--data", tree, "--out", tmp_path / "r", *TINY,
                           env_extra={"NUMPY_LSTM_PROCESSES": processes})
    assert code == 2 and f"NUMPY_LSTM_PROCESSES {message}" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, message", [
    (["train", "--epochs", "abc"], "argument --epochs: invalid int value: 'abc'"),
    (["train", "--recipe"], "argument --recipe: expected one argument"),
    (["evaluate"], "the following arguments are required: RUN_DIR"),
    (["predict"], "the following arguments are required: RUN_DIR (see"),     # not TEXT: stdin serves
    (["evaluate", "somewhere", "--limit", "1.5"], "argument --limit: invalid int value"),
    (["inspect", "somewhere", "a", "b"], "unrecognized arguments: b"),
    (["fly"], "invalid choice: 'fly'"),
])
def test_a_malformed_command_line_is_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(args)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and message in err and "--help" in err and err.count("\n") == 1, err


def test_resume_takes_no_settings(tmp_path, capsys):
    for flags, flag in ((["--epochs", "5"], "--epochs"), (["--recipe", "full"], "--recipe"),
                        (["--out", str(tmp_path / "b")], "--out")):
        assert main(["train", "--resume", str(tmp_path / "a"), *flags]) == 2
        err = capsys.readouterr().err
        assert f"drop {flag}" in err and err.count("\n") == 1


def test_damaged_files_of_a_run_are_one_line(tree, tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", "--data", str(tree), "--out", str(run), "--epochs", "1", *TINY])

    def copy(name):
        return shutil.copytree(run, tmp_path / name)

    truncated = copy("truncated")
    (truncated / "checkpoint.npz").write_bytes((run / "checkpoint.npz").read_bytes()[:5000])
    with np.load(run / "checkpoint.npz") as data:
        arrays = {k: data[k] for k in data.files}
    state = json.loads(str(arrays["state"]))
    damaged_state = copy("state")
    with open(damaged_state / "checkpoint.npz", "wb") as f:
        np.savez(f, **{**arrays, "state": np.array(json.dumps({**state, "rng": {"bit_generator": "MT"}}))})
    more_words = copy("vocab")
    vocab = json.loads((run / "vocab.json").read_text())
    words = vocab["words"] + [f"w{i}" for i in range(150)]
    (more_words / "vocab.json").write_text(json.dumps({**vocab, "size": 2 + len(words), "words": words}))
    not_finite = copy("nan")
    model = weights_of(run / "model.npz")
    model["lstm/kernel"][0, 0] = np.nan
    with open(not_finite / "model.npz", "wb") as f:
        np.savez(f, **model)
    for command, words in ((["train", "--resume", truncated], "not a readable checkpoint"),
                           (["train", "--resume", damaged_state], "its state is damaged"),
                           (["predict", more_words, "great"], "not from the same run"),
                           (["inspect", more_words, "great", "--out", tmp_path / "page"], "not from the same run"),
                           (["predict", not_finite, "great"], "not finite"),
                           (["evaluate", run, "--limit", "-1"], "--limit must be a positive number")):
        assert main([str(arg) for arg in command]) == 2, command
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err


def test_a_model_without_its_checkpoint_is_not_trained_over(tree, tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", "--data", str(tree), "--out", str(run), "--epochs", "1", *TINY])
    (run / "checkpoint.npz").unlink()
    before = (run / "model.npz").read_bytes()
    assert main(["train", "--resume", str(run)]) == 2
    assert "no checkpoint.npz beside it" in capsys.readouterr().err
    assert (run / "model.npz").read_bytes() == before


def test_text_that_is_not_utf8_and_a_reader_that_leaves(tree, tmp_path):
    run = tmp_path / "run"
    main(["train", "--data", str(tree), "--out", str(run), "--epochs", "1", *TINY])
    # strict standard streams, as in a UTF-8 locale other than C.UTF-8
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    command = [sys.executable, "-m", "numpy_lstm"]
    for args, stdin in (([b"predict", bytes(run), b"great \xff film"], b""),
                        ([b"predict", bytes(run)], b"great \xff film\n"),
                        ([b"inspect", bytes(run), b"great \xff film", b"--out", bytes(tmp_path / "page")], b"")):
        proc = subprocess.run(command + args, input=stdin, capture_output=True, env=env, timeout=600)
        assert proc.returncode == 0 and proc.stderr == b"", proc.stderr.decode()
        if args[0] == b"predict":
            assert "\ufffd" in proc.stdout.decode()
    assert "\ufffd" in (tmp_path / "page" / "report.html").read_text()
    proc = subprocess.run(command + [b"predict", bytes(run)], input=b"", capture_output=True, timeout=600)
    assert proc.returncode == 2 and b"standard input holds no review" in proc.stderr
    # 20,000 lines of output, read no further than the first: the command ends quietly
    reader = subprocess.Popen(command + [b"predict", bytes(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    reader.stdin.write(b"a great film\n" * 20000)
    reader.stdin.close()
    reader.stdout.readline()
    reader.stdout.close()
    assert reader.wait(timeout=600) == 141 and reader.stderr.read() == b""


def test_bad_paths_and_run_directories(tmp_path, tree):
    code, _, err = run_cli("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "r", *TINY)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    for command in (["train", "--resume", tmp_path / "empty"], ["predict", tmp_path / "empty", "hi"],
                    ["evaluate", tmp_path / "empty"]):
        code, _, err = run_cli(*command)
        assert code == 2 and "not a numpy-lstm run directory" in err and "Traceback" not in err


def test_mismatched_checkpoint_is_refused(tree, tmp_path):
    out = tmp_path / "run"
    main(["train", "--data", str(tree), "--out", str(out), "--epochs", "1", *TINY])
    config = json.loads((out / "config.json").read_text())
    config["units"] = 12
    (out / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli("train", "--resume", out)
    assert code == 2 and "lstm/kernel" in err and "Traceback" not in err


def test_existing_run_is_not_overwritten(tree, tmp_path):
    out = tmp_path / "run"
    main(["train", "--data", str(tree), "--out", str(out), "--epochs", "1", *TINY])
    before = (out / "model.npz").read_bytes()
    assert main(["train", "--data", str(tree), "--out", str(out), "--epochs", "1", *TINY]) == 2
    assert (out / "model.npz").read_bytes() == before


def test_data_without_a_test_split_still_trains(tmp_path):
    root = write_tree(tmp_path / "imdb", per_class=30)
    import shutil
    shutil.rmtree(root / "aclImdb" / "test")
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(out), "--epochs", "1", *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_n"] == 0 and metrics["test_accuracy"] is None
    code, _, err = run_cli("evaluate", out)
    assert code == 2 and "no official test split" in err


def test_help_reads_well():
    code, stdout, _ = run_cli("train", "--help")
    assert code == 0
    for flag in ("--recipe", "--data", "--per-class", "--vocab-size", "--maxlen", "--embed-dim", "--units",
                 "--epochs", "--batch-size", "--lr", "--seed", "--out", "--mask", "--keep-negations", "--resume",
                 "--quiet", "--bigram-buckets"):
        assert flag in stdout


def test_resume_before_the_first_checkpoint_starts_over(tree, tmp_path):
    straight, early = tmp_path / "straight", tmp_path / "early"
    main(["train", "--data", str(tree), "--out", str(straight), "--epochs", "2", "--seed", "4", *TINY])
    main(["train", "--data", str(tree), "--out", str(early), "--epochs", "2", "--seed", "4", *TINY])
    for name in ("checkpoint.npz", "model.npz", "metrics.json"):   # as if killed during the first epoch
        (early / name).unlink()
    assert main(["train", "--resume", str(early), "--quiet"]) == 0
    a, b = weights_of(straight / "model.npz"), weights_of(early / "model.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a if k != "config")
