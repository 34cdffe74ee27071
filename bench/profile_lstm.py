"""Where the LSTM's time goes, by kind of NumPy call, at the tutorial's shapes, on one thread.

    PYTHONPATH=. python bench/profile_lstm.py [--rev GIT_REVISION] [--repeats N] [--batch B]

Every `np.<function>` that numpy_lstm/layers.py calls is wrapped in a timer (the module's `np` is
swapped for a proxy), so the table says how long matmul, exp, tanh, multiply... took in one
forward + backward of the LSTM and one Embedding backward. In-place operators (`z += a`) and
Python's own work are not calls through `np`: they are the "other" line. With --rev, the
layers.py of that git revision is profiled instead (for the before / after in bench/README.md).
Thread count 1, so the timers do not overlap.
"""
import argparse
import collections
import subprocess
import sys
import time
import types

import numpy as np

from numpy_lstm import _parallel


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
    return timed


def load_layers(rev):
    if rev is None:
        import numpy_lstm.layers as layers
        return layers
    source = subprocess.run(["git", "show", f"{rev}:numpy_lstm/layers.py"], check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("numpy_lstm._layers_at_" + rev)
    module.__package__ = "numpy_lstm"
    exec(compile(source, f"layers.py@{rev}", "exec"), module.__dict__)
    return module


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="profile numpy_lstm/layers.py as of this git revision")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64,
                        help="rows (default 64; 32 is what each core runs on 2 cores)")
    args = parser.parse_args()
    _parallel.set_num_threads(1)
    layers = load_layers(args.rev)
    B, T, E, H, V = args.batch, 500, 32, 100, 500
    rng = np.random.default_rng(0)
    lstm = layers.LSTM(E, H, rng)
    emb = layers.Embedding(V, E, rng)
    ids = rng.integers(1, V, (B, T))
    dout = rng.standard_normal((B, H), dtype=np.float32)

    def step():
        x, emb_cache = emb.forward(ids)
        start = time.perf_counter()
        out, cache = lstm.forward(x)
        middle = time.perf_counter()
        dx, _, _ = lstm.backward(dout, cache)
        phases["LSTM forward"] = middle - start
        phases["LSTM backward"] = time.perf_counter() - middle
        emb.backward(dx, emb_cache)

    phases = {}

    runs = []
    with _parallel.blas_threads(1):
        step()                                   # warm-up, untimed
        for _ in range(args.repeats):
            totals = collections.Counter()
            layers.np = TimedNumpy(totals)
            start = time.perf_counter()
            step()
            wall = time.perf_counter() - start
            layers.np = np
            totals["other (in-place operators, Python)"] = wall - sum(totals.values())
            runs.append((wall, totals, dict(phases)))
    wall, totals, phase = sorted(runs, key=lambda r: r[0])[len(runs) // 2]   # the median run
    label = args.rev or "working tree"
    print(f"layers.py of {label}: Embedding + LSTM forward + backward, batch {B}, {T} steps, "
          f"{E} -> {H}, float32, 1 thread; median of {args.repeats}: {1000 * wall:.0f} ms "
          f"(LSTM forward {1000 * phase['LSTM forward']:.0f}, backward "
          f"{1000 * phase['LSTM backward']:.0f})")
    for name, seconds in totals.most_common():
        print(f"  {name:<38} {1000 * seconds:8.1f} ms {100 * seconds / wall:5.1f}%")


if __name__ == "__main__":
    sys.exit(main())
