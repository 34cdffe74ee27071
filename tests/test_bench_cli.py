"""`numpy-lstm bench`: the --quick smoke run (CI runs it here), its JSON contract, --compare,
--plot, the run without torch, the input it refuses, and the recorded sweep of docs/performance.md.
No timing is asserted: only that the figures are there and positive."""
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from numpy_lstm import bench_report
from numpy_lstm.bench_cli import PNG_MARK, RESULT_KEY, read_result
from numpy_lstm.benchmark import QUICK, SWEEP, core_counts, floor_blocks, floor_cases, target, time_interleaved
from numpy_lstm.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONTRACT = ("shape", "ours_ms", "floor_ms", "torch_ms", "torch_flushed_ms", "torch_unflushed_ms", "ratio")


def bench(*args, env_extra=None, pythonpath=()):
    """(status, stdout, stderr) of `python -m numpy_lstm bench ARGS` in a fresh process."""
    env = dict(os.environ, **(env_extra or {}))
    env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-m", "numpy_lstm", "bench", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """A --quick run that writes its JSON and its plot: (stdout, result, folder)."""
    folder = tmp_path_factory.mktemp("bench")
    status, out, err = bench("--quick", "--json", folder / "quick.json", "--plot", folder / "quick.png")
    assert status == 0, err
    return out, json.loads((folder / "quick.json").read_text()), folder


def test_quick_run_prints_the_machine_and_every_shape(quick):
    out, result, _ = quick
    assert "CPU" in out and "NumPy" in out and "BLAS" in out and "matmul peak" in out
    for B, T, E, H in QUICK:
        assert any(line.split()[:4] == [str(B), str(T), str(E), str(H)] for line in out.splitlines()), out


def test_quick_json_holds_every_contract_key(quick):
    _, result, _ = quick
    assert result[RESULT_KEY] == 1
    assert {"cpu", "cpus", "numpy", "blas"} <= set(result["machine"])
    assert [tuple(row["shape"]) for row in result["shapes"]] == QUICK
    for row in result["shapes"]:
        assert set(CONTRACT) <= set(row)
        assert row["ours_ms"] > 0 and row["floor_ms"] > 0 and row["ours_min_ms"] <= row["ours_ms"] <= row["ours_max_ms"]
        assert 0 < row["peak_fraction"] and math.isfinite(row["gflops"])


def test_quick_json_has_torch_figures_when_torch_is_there(quick, torch):
    _, result, _ = quick
    assert result["torch"]["version"] == torch.__version__
    for row in result["shapes"]:
        assert row["torch_ms"] == min(row["torch_flushed_ms"], row["torch_unflushed_ms"])
        assert row["ratio"] == pytest.approx(row["ours_ms"] / row["torch_ms"])
        # the same weights and batch on both sides: the same h_T, to float32 rounding
        assert row["torch_flushed_max_abs_diff"] < 1e-4 and row["torch_unflushed_max_abs_diff"] < 1e-4


def test_quick_plot_is_a_png_marked_as_ours(quick):
    data = (quick[2] / "quick.png").read_bytes()
    assert data.startswith(b"\x89PNG") and PNG_MARK in data[:4096]


def test_compare_sets_old_against_new_and_replaces_its_own_json(quick, tmp_path):
    _, old, folder = quick
    path = tmp_path / "again.json"
    path.write_text(json.dumps(old))
    status, out, err = bench("--compare", folder / "quick.json", "--quick", "--repeats", "1", "--json", path)
    assert status == 0, err
    assert "compared with the earlier run" in out
    compared = out[out.index("compared with the earlier run"):].splitlines()
    assert sum(line.split()[:4] in ([str(n) for n in shape] for shape in QUICK) for line in compared) == len(QUICK)
    new = json.loads(path.read_text())
    assert new["repeats"] == 1 and new["command"].startswith("numpy-lstm bench --repeats 1 --json")


def test_without_torch_it_says_so_and_times_the_rest(tmp_path):
    blocked = tmp_path / "blocked"
    (blocked / "torch").mkdir(parents=True)
    (blocked / "torch" / "__init__.py").write_text("raise ImportError('torch blocked by the test')\n")
    status, out, err = bench("--quick", "--repeats", "1", "--json", tmp_path / "r.json", pythonpath=[blocked])
    assert status == 0, err
    assert [line for line in out.splitlines() if "torch is not importable" in line and "blocked by the test" in line]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["torch"] is None
    for row in result["shapes"]:
        assert row["ours_ms"] > 0 and row["floor_ms"] > 0
        assert row["torch_ms"] is row["ratio"] is row["torch_flushed_ms"] is row["torch_unflushed_ms"] is None


def test_plot_without_matplotlib_is_one_line(tmp_path):
    blocked = tmp_path / "blocked"
    (blocked / "matplotlib").mkdir(parents=True)
    (blocked / "matplotlib" / "__init__.py").write_text("raise ImportError('blocked')\n")
    status, out, err = bench("--quick", "--plot", tmp_path / "p.png", pythonpath=[blocked])
    assert status == 2 and err.strip().splitlines() == ["numpy-lstm: error: --plot needs matplotlib: "
                                                       "pip install 'numpy-lstm[plot]'"]
    assert not (tmp_path / "p.png").exists()


def refused(capsys, *args):
    """stderr's one line when `numpy-lstm bench ARGS` refuses its input with status 2."""
    try:
        status = main(["bench", *map(str, args)])
    except SystemExit as e:                          # argparse's errors
        status = e.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("shapes", ["", ";", "64,500,32", "64,500,32,100,1", "64,500,32,x", "64,0,32,100",
                                    "64,-1,32,100", "1.5,2,3,4", "9" * 5000 + ",1,1,1", "٣,1,1,1"])
def test_malformed_shapes_are_one_line(shapes, capsys):
    assert "--shapes wants" in refused(capsys, "--shapes", shapes)


def test_shapes_that_cannot_fit_in_memory_are_one_line(capsys):
    line = refused(capsys, "--shapes", "1000000,1000000,1000,1000")
    assert "needs about" in line and "GiB" in line


@pytest.mark.parametrize("repeats", ["0", "-3", "1001"])
def test_repeats_out_of_range_are_one_line(repeats, capsys):
    assert "--repeats must be" in refused(capsys, "--quick", "--repeats", repeats)


def test_argparse_errors_are_one_line(capsys):
    assert "not allowed with" in refused(capsys, "--sweep", "--shapes", "1,2,3,4")


def test_plot_must_be_a_png(tmp_path, capsys):
    assert "ending in .png" in refused(capsys, "--quick", "--plot", tmp_path / "p.pdf")


@pytest.mark.parametrize("content, message", [
    (None, "No such file"), (b"\xff\xfe not text", "is not JSON"), (b"[1, 2", "is not JSON"),
    (b'{"shapes": []}', "is not a result of numpy-lstm bench"),
    (b'{"numpy_lstm_bench": 1, "machine": {}, "shapes": [{"shape": [1, 2, 3], "ours_ms": 1}]}', "damaged"),
    (b'{"numpy_lstm_bench": 1, "machine": {}, "shapes": [{"shape": [1, 2, 3, 4], "ours_ms": -1}]}', "damaged"),
    (b'{"numpy_lstm_bench": 1, "machine": {}, "shapes": []}', "damaged"),
    (b"[" * 100000 + b"]" * 100000, "is not JSON"),
])
def test_a_bad_compare_file_is_one_line(content, message, tmp_path, capsys):
    path = tmp_path / "old.json"
    if content is not None:
        path.write_bytes(content)
    assert message in refused(capsys, "--compare", path)


def test_compare_refuses_what_is_not_a_regular_file(tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)                                  # opened without blocking, then refused
    assert "not a regular file" in refused(capsys, "--compare", fifo)
    assert "not a regular file" in refused(capsys, "--compare", tmp_path)
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(17 * 2 ** 20)                     # refused by its size, before it is read
    assert "more than a bench result holds" in refused(capsys, "--compare", big)


def test_compare_follows_no_symbolic_link(quick, tmp_path, capsys):
    link = tmp_path / "link.json"
    link.symlink_to(quick[2] / "quick.json")
    assert "symbolic link" in refused(capsys, "--compare", link)


@pytest.mark.parametrize("flag, name", [("--json", "out.json"), ("--plot", "out.png")])
def test_an_output_that_is_not_ours_is_left_alone(flag, name, tmp_path, capsys):
    theirs = tmp_path / name
    theirs.write_text('{"precious": true}')
    assert "not written by numpy-lstm bench" in refused(capsys, "--quick", flag, theirs)
    assert theirs.read_text() == '{"precious": true}'
    link = tmp_path / ("link-" + name)
    link.symlink_to(theirs)
    assert "symbolic link" in refused(capsys, "--quick", flag, link)
    (tmp_path / ("dir-" + name)).mkdir()
    assert "not a regular file" in refused(capsys, "--quick", flag, tmp_path / ("dir-" + name))
    assert theirs.read_text() == '{"precious": true}'


def test_time_interleaved_runs_each_case_once_a_round_and_drops_the_warm_up():
    calls = []
    cases = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    cases["self-timed"] = lambda: calls.append("d") or 2.5
    times = time_interleaved(cases, repeats=3)
    assert [len(t) for t in times.values()] == [3, 3, 3, 3] and times["self-timed"] == [2.5] * 3
    rounds = [calls[i:i + 4] for i in range(0, 16, 4)]
    assert all(sorted(r) == ["a", "b", "c", "d"] for r in rounds)
    assert [r[0] for r in rounds] == ["a", "b", "c", "d"]     # each round starts one case further on


def test_the_floor_is_timed_each_way_it_can_run():
    one_process = 2 * len(core_counts())                     # 2 layouts x BLAS 1 (and 2) threads
    assert len(floor_cases(1, 3, 5, 4, cores=2)) == one_process
    cases = floor_cases(8, 3, 5, 4, cores=2)
    assert len(cases) == one_process + 2 and sum("4 rows of 2 processes" in name for name in cases) == 2
    for run in cases.values():
        assert run() > 0                                     # each returns the seconds it took


def test_the_floor_runs_its_block_matmuls_over_every_step_once():
    assert floor_blocks(32, 500, columns=4096) == [128, 128, 128, 116]
    assert floor_blocks(64, 100, columns=4096) == [64, 36]
    assert floor_blocks(5000, 7, columns=4096) == [1] * 7        # a block is at least one step
    assert floor_blocks(1, 20, columns=4096) == [20]              # and at most all of them
    for rows, T in ((1, 500), (3, 7), (64, 100), (256, 500)):
        assert sum(floor_blocks(rows, T)) == T


def test_the_floor_counts_the_block_matmuls(monkeypatch):
    """Each case multiplies every step's inputs by W, dz by W^T and [x; h] by dz: the block
    matmuls' columns add up to T B (or T ceil(B / cores)) for each of the three."""
    B, T, E, H = 6, 9, 5, 4
    shapes = []
    matmul = np.matmul

    def recording(a, b, out=None):
        shapes.append((a.shape, b.shape))
        return matmul(a, b, out=out)

    cases = floor_cases(B, T, E, H, cores=2)
    monkeypatch.setattr(np, "matmul", recording)
    for name, run in cases.items():
        shapes.clear()
        run()
        rows = 3 if "3 rows" in name else B
        if name.startswith("batch-first"):
            x_w = [a[0] for a, b in shapes if a[1:] == (E,) and b == (E, 4 * H)]
            dx = [a[0] for a, b in shapes if b == (4 * H, E)]
            dw = [a[1] for a, b in shapes if a[0] == E + H and b[1:] == (4 * H,)]
        else:
            x_w = [b[1] for a, b in shapes if a == (4 * H, E)]
            dx = [b[1] for a, b in shapes if a == (E, 4 * H)]
            dw = [a[1] for a, b in shapes if a[0] == 4 * H and b[1:] == (E + H,)]
        assert sum(x_w) == sum(dx) == sum(dw) == T * rows, name


def test_targets_are_the_issues():
    assert [target(s) for s in SWEEP] == [2.0, 1.5, 0.55, 1.0, 1.0, 1.0, 1.5]
    assert target((3, 3, 3, 3)) is None


def test_performance_doc_holds_the_recorded_sweeps_table():
    """docs/performance.md's table of targets is the one generated from the recorded sweep."""
    doc = (ROOT / "docs" / "performance.md").read_text()
    with open(ROOT / "docs" / "performance" / "sweep.json") as f:
        result = json.load(f)
    assert bench_report.targets_markdown(result) in doc
    assert [tuple(row["shape"]) for row in result["shapes"]] == SWEEP
    assert (ROOT / "docs" / "performance" / "sweep.png").read_bytes().startswith(b"\x89PNG")
    shared = read_result(ROOT / "docs" / "performance" / "sweep-shared.json", "sweep-shared.json")
    assert [tuple(row["shape"]) for row in shared["shapes"]] == SWEEP
