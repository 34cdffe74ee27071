"""`numpy-lstm bench`: its flags, the checks of its input, and the files it writes.

Input it refuses, each in one line with status 2, before anything is timed: a malformed --shapes,
a shape whose arrays cannot fit in memory, a --repeats out of range, a --compare file that is not
a readable bench result, a --json or --plot file that exists and is not one the bench wrote (or is
a symbolic link, or not a regular file), a --plot without matplotlib.
"""
import errno
import json
import numbers
import os
import shlex
import stat

from . import bench_report
from .bench_torch import TorchMissing, TorchProcess
from .benchmark import MAX_REPEATS, QUICK, SWEEP, TUTORIAL, check_fits, matmul_peak, parse_shapes, run
from .errors import NumpyLSTMError
from .fileio import atomic_path, check_writable_folder, write_text
from .machine import describe, load_average

RESULT_KEY = "numpy_lstm_bench"     # the top-level key that marks a JSON file as a bench result
RESULT_FORMAT = 1
MAX_RESULT_BYTES = 16 * 2 ** 20     # a sweep's result is a few kB
PNG_MARK = b"numpy-lstm bench"      # in the PNG's Software text, written by bench_report.draw


def add_bench_parser(subparsers):
    p = subparsers.add_parser(
        "bench", help="time the LSTM layer's forward + backward at any shapes, beside the NumPy floor and PyTorch",
        description="Time the LSTM layer's forward + backward (float32) at each shape: ours, the NumPy floor "
                    "(the calls any step loop of NumPy must make) and, when torch is importable, "
                    "torch.nn.LSTM with subnormals flushed and as they come, interleaved, medians. "
                    "Default shape: the tutorial's, 64,500,32,100. See docs/performance.md.")
    shapes = p.add_mutually_exclusive_group()
    shapes.add_argument("--shapes", metavar='"B,T,E,H;..."',
                        help="batch rows, steps, inputs, units of each shape, shapes separated by ';'")
    shapes.add_argument("--sweep", action="store_true",
                        help="the grid of docs/performance.md: " + "; ".join(map(bench_report.shape_text, SWEEP)))
    p.add_argument("--repeats", type=int, metavar="N",
                   help=f"timed rounds per shape, after a warm-up (default 5; 2 with --quick; at most {MAX_REPEATS})")
    p.add_argument("--json", metavar="FILE", help="write the result as JSON (replaces only a bench result)")
    p.add_argument("--plot", metavar="FILE", help="draw the times and ratios to this PNG (needs matplotlib: "
                                                  "pip install 'numpy-lstm[plot]')")
    p.add_argument("--compare", metavar="OLD.json",
                   help="set this run against an earlier --json result, shape by shape (its shapes by default)")
    p.add_argument("--quick", action="store_true",
                   help="tiny shapes (unless --shapes or --sweep), 2 rounds, a small matmul peak: a smoke test")


def cmd_bench(args):
    if args.repeats is not None and not 1 <= args.repeats <= MAX_REPEATS:
        raise NumpyLSTMError(f"--repeats must be from 1 to {MAX_REPEATS}, got {args.repeats}")
    old = read_result(args.compare, "--compare") if args.compare else None
    if args.shapes is not None:
        shapes = parse_shapes(args.shapes)
    elif args.sweep:
        shapes = SWEEP
    elif args.quick:
        shapes = QUICK
    elif old is not None:
        shapes = [tuple(row["shape"]) for row in old["shapes"]]
    else:
        shapes = [TUTORIAL]
    try:
        check_fits(shapes)
    except NumpyLSTMError as e:
        if old is None or args.shapes or args.sweep or args.quick:
            raise
        raise NumpyLSTMError(f"--compare {args.compare}: {e}") from None
    if old is not None and not set(shapes) & {tuple(row["shape"]) for row in old["shapes"]}:
        raise NumpyLSTMError(f"--compare {args.compare} timed none of these shapes: nothing to compare "
                             "(without --shapes, --sweep or --quick the bench times its shapes)")
    if args.plot:
        check_plot(args.plot)
        check_writable_folder(args.plot, "--plot")
    if args.json:
        check_replaceable(args.json, "--json", is_result_file)
        check_writable_folder(args.json, "--json")
    repeats = args.repeats or (2 if args.quick else 5)

    machine = describe()
    torches, torch_info, missing = start_torch()
    try:
        result = {RESULT_KEY: RESULT_FORMAT, "command": command_text(args),
                  "machine": machine, "torch": torch_info, "torch_missing": missing}
        peak_size = 256 if args.quick else 2048
        result.update(repeats=repeats, peak_size=peak_size, peak_gflops=matmul_peak(repeats, peak_size))
        for line in bench_report.header_lines(result):
            print(line)
        print(bench_report.HEADER, flush=True)
        result.update(run(shapes, repeats, torches, result["peak_gflops"],
                          on_row=lambda row: print(bench_report.row_line(row), flush=True)))
    finally:
        for process in torches.values():
            process.close()
    machine["load_average_end"] = load_average()
    for line in bench_report.footer_lines(result):
        print(line)
    if old is not None:
        for line in bench_report.compare_lines(old, result):
            print(line)
    if args.json:
        check_replaceable(args.json, "--json", is_result_file)
        write_text(args.json, json.dumps(result, indent=1) + "\n")
    if args.plot:
        check_replaceable(args.plot, "--plot", is_plot_file)
        with atomic_path(args.plot) as tmp:
            bench_report.draw(result, tmp)


def command_text(args):
    """The command line that ran the bench, from its parsed flags."""
    words = ["numpy-lstm", "bench"]
    for name in ("shapes", "sweep", "repeats", "json", "plot", "compare", "quick"):
        value = getattr(args, name)
        if value is True:
            words.append(f"--{name}")
        elif value not in (None, False):
            words += [f"--{name}", shlex.quote(str(value))]
    return " ".join(words)


def start_torch():
    """({"flushed": TorchProcess, "unflushed": TorchProcess}, {version, flushing}, None), or
    ({}, None, why) when torch cannot be imported."""
    torches = {}
    try:
        torches["flushed"] = TorchProcess(flush=True)
        torches["unflushed"] = TorchProcess(flush=False)
    except TorchMissing as e:
        for process in torches.values():
            process.close()
        return {}, None, str(e)
    except BaseException:
        for process in torches.values():
            process.close()
        raise
    flushed = torches["flushed"]
    return torches, {"version": flushed.version, "flushing": flushed.flushing}, None


def check_plot(path):
    if not path.lower().endswith(".png"):
        raise NumpyLSTMError(f"--plot draws a PNG: give a file name ending in .png, got {path}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise NumpyLSTMError("--plot needs matplotlib: pip install 'numpy-lstm[plot]'") from None
    check_replaceable(path, "--plot", is_plot_file)


def check_replaceable(path, flag, is_ours):
    """Refuse `path` unless it is absent or a regular file that is_ours(path) recognises: the
    bench replaces only what it wrote, and follows no symbolic link."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise NumpyLSTMError(f"{flag} {path}: {e.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise NumpyLSTMError(f"{flag} {path} is a symbolic link, which the bench does not follow: name a file")
    if not stat.S_ISREG(info.st_mode):
        raise NumpyLSTMError(f"{flag} {path} exists and is not a regular file")
    if not is_ours(path):
        raise NumpyLSTMError(f"{flag} {path} exists and was not written by numpy-lstm bench: "
                             "remove it or name another file")


def is_result_file(path):
    try:
        read_result(path, "--json")
    except NumpyLSTMError:
        return False
    return True


def is_plot_file(path):
    data = read_bytes(path, "--plot", limit=4096, whole=False)
    return data.startswith(b"\x89PNG\r\n\x1a\n") and PNG_MARK in data


def read_bytes(path, flag, limit, whole=True):
    """The first `limit` bytes of the regular file `path` (all of it, checked to be no longer,
    when whole), opened without following a symbolic link or blocking on a pipe."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        why = "is a symbolic link, which the bench does not follow" if e.errno == errno.ELOOP else e.strerror
        raise NumpyLSTMError(f"{flag} {path}: {why}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise NumpyLSTMError(f"{flag} {path} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        if whole and info.st_size > limit:
            raise NumpyLSTMError(f"{flag} {path} is {info.st_size:,} bytes, more than a bench result holds")
        try:
            data = f.read(limit + 1 if whole else limit)
        except OSError as e:
            raise NumpyLSTMError(f"{flag} {path}: {e.strerror}") from None
    if whole and len(data) > limit:
        raise NumpyLSTMError(f"{flag} {path} grew past {limit:,} bytes while it was read")
    return data


def read_result(path, flag):
    """The bench result in the JSON file `path`, checked: NumpyLSTMError when it is not one."""
    data = read_bytes(path, flag, MAX_RESULT_BYTES)
    try:
        result = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise NumpyLSTMError(f"{flag} {path} is not JSON") from None
    if not isinstance(result, dict) or RESULT_KEY not in result:
        raise NumpyLSTMError(f"{flag} {path} is not a result of numpy-lstm bench --json (no {RESULT_KEY!r} key)")
    if result[RESULT_KEY] != RESULT_FORMAT:
        raise NumpyLSTMError(f"{flag} {path} is a bench result of format {result[RESULT_KEY]!r}; "
                             f"this version reads format {RESULT_FORMAT}")
    problem = _result_problem(result)
    if problem:
        raise NumpyLSTMError(f"{flag} {path} is a damaged bench result: {problem}")
    return result


def _result_problem(result):
    """What is wrong with a bench result's fields, or None."""
    if not isinstance(result.get("machine"), dict):
        return "no 'machine' object"
    rows = result.get("shapes")
    if not isinstance(rows, list) or not rows:
        return "no list of shapes"
    for row in rows:
        if not isinstance(row, dict):
            return "a shape's entry is not an object"
        shape = row.get("shape")
        if not (isinstance(shape, list) and len(shape) == 4
                and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
            return f"a 'shape' is not four positive integers: {str(shape)[:40]}"
        for key in ("ours_ms", "torch_ms", "ratio"):
            value = row.get(key)
            if key == "ours_ms" or value is not None:
                if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < value < 1e12):
                    return f"{key} of shape {shape} is not a positive number"
    return None
