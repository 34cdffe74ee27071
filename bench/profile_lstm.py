"""Where the LSTM's time goes, by kind of NumPy call, at the tutorial's shapes or any, on one thread.

    PYTHONPATH=. python bench/profile_lstm.py [--rev GIT_REVISION] [--repeats N] [--batch B]
    PYTHONPATH=. python bench/profile_lstm.py --shape B,T,E,H [--cores N]

Every `np.<function>` that the LSTM's loops (numpy_lstm/engine/forward.py, backward.py, rows.py) and
numpy_lstm/layers.py call is wrapped in a timer (each module's `np` is swapped for a proxy), so
the table says how long matmul, exp, tanh, multiply... took in one forward + backward of the LSTM
and one Embedding backward. In-place operators (`z += a`) and Python's own work are not calls
through `np`: they are the "other" line. With --rev, the numpy_lstm package of that git revision
is profiled instead (for the before / after in bench/README.md): the script runs again on a copy
of it (before the engine moved out of layers.py, layers.py held all of it).
Thread count 1, so the timers do not overlap; --cores N gives the engine N cores instead, which
profiles the shapes it runs in one process with BLAS's threads (the parts that worker processes
run are not seen). Each line also counts its calls, per time step of forward + backward.
"""
import argparse
import collections
import importlib
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import numpy_lstm

# Where the LSTM's NumPy calls are (modules a revision lacks are skipped).
TIMED_MODULES = ("numpy_lstm.layers", "numpy_lstm.engine.forward", "numpy_lstm.engine.backward",
                 "numpy_lstm.engine.rows")


class TimedNumpy:
    """Stands in for the `np` module: functions come back wrapped in an accumulating timer."""

    def __init__(self, totals):
        self._totals = totals

    def __getattr__(self, name):
        value = getattr(np, name)
        if callable(value) and not isinstance(value, type) and name not in ("errstate", "dtype"):
            timed = _timer(value, name, self._totals)
            if isinstance(value, np.ufunc):         # keep np.add.at and friends reachable
                for method in ("at", "reduce", "accumulate", "outer"):
                    setattr(timed, method, _timer(getattr(value, method), f"{name}.{method}",
                                                  self._totals))
            value = timed
        setattr(self, name, value)                  # built once: later lookups cost nothing
        return value


def _timer(fn, name, totals):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - start
            totals.calls[name] += 1
    return timed


class Totals(collections.Counter):
    """Seconds by name, and in .calls the number of calls by name."""

    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()


def timed_modules():
    modules = []
    for name in TIMED_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            pass
    return modules


def blas_threads(n):
    """The package's hold on OpenBLAS's thread count, wherever this revision keeps it."""
    try:
        from numpy_lstm.engine.cores import blas_threads
    except ImportError:
        from numpy_lstm._parallel import blas_threads
    return blas_threads(n)


def run_at_revision(rev, argv):
    """Run this script on the numpy_lstm package of a git revision, extracted to a temporary
    directory; returns its exit status."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    archive = subprocess.run(["git", "archive", rev, "numpy_lstm"], cwd=root, check=True,
                             capture_output=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        env = dict(os.environ, PYTHONPATH=tmp)
        return subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--label", rev],
                              env=env).returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="profile numpy_lstm as of this git revision")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64,
                        help="rows (default 64; 32 is what each core runs on 2 cores)")
    parser.add_argument("--shape", help="B,T,E,H instead of the tutorial's (--batch),500,32,100")
    parser.add_argument("--cores", type=int, default=1, help="the engine's cores (default 1)")
    parser.add_argument("--label", default="working tree", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rev:
        return run_at_revision(args.rev, ["--repeats", str(args.repeats), "--batch", str(args.batch),
                                          "--cores", str(args.cores)] + (["--shape", args.shape] * bool(args.shape)))
    numpy_lstm.set_num_processes(args.cores)
    modules = timed_modules()
    B, T, E, H = map(int, args.shape.split(",")) if args.shape else (args.batch, 500, 32, 100)
    V = 500
    rng = np.random.default_rng(0)
    lstm = numpy_lstm.LSTM(E, H, rng)
    emb = numpy_lstm.Embedding(V, E, rng)
    ids = rng.integers(1, V, (B, T))
    dout = rng.standard_normal((B, H), dtype=np.float32)

    def step():
        x, emb_cache = emb.forward(ids)
        start = time.perf_counter()
        _, cache = lstm.forward(x)
        middle = time.perf_counter()
        dx, _, _ = lstm.backward(dout, cache)
        phases["LSTM forward"] = middle - start
        phases["LSTM backward"] = time.perf_counter() - middle
        emb.backward(dx, emb_cache)

    phases = {}

    runs = []
    with blas_threads(1):
        step()                                   # warm-up, untimed
        for _ in range(args.repeats):
            totals = Totals()
            for module in modules:
                module.np = TimedNumpy(totals)
            start = time.perf_counter()
            step()
            wall = time.perf_counter() - start
            for module in modules:
                module.np = np
            totals["other (in-place operators, Python)"] = wall - sum(totals.values())
            runs.append((wall, totals, dict(phases)))
    wall, totals, phase = sorted(runs, key=lambda r: r[0])[len(runs) // 2]   # the median run
    print(f"numpy_lstm of {args.label}: Embedding + LSTM forward + backward, batch {B}, {T} steps, "
          f"{E} -> {H}, float32, {args.cores} core{'s' * (args.cores > 1)}; median of {args.repeats}: "
          f"{1000 * wall:.0f} ms (LSTM forward {1000 * phase['LSTM forward']:.0f}, backward "
          f"{1000 * phase['LSTM backward']:.0f})")
    print(f"  {'':<38} {'ms':>8} {'share':>6} {'calls per step':>15}")
    for name, seconds in totals.most_common():
        per_step = f"{totals.calls[name] / T:15.1f}" if name in totals.calls else ""
        print(f"  {name:<38} {1000 * seconds:8.1f} {100 * seconds / wall:5.1f}% {per_step}")
    print(f"  {'all np calls':<38} {'':>8} {'':>6} {sum(totals.calls.values()) / T:15.1f}")


if __name__ == "__main__":
    sys.exit(main())
