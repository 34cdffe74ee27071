"""Where one forward + backward of the LSTM layer spends its time, function by function (cProfile).

    python bench/profile_lstm.py [--shape B,T,E,H] [--cores N] [--repeats N] [--top K]

(with numpy_lstm installed, or PYTHONPATH=. from the repository root). Default: the tutorial's
shape, 64,500,32,100, on 1 core. Only the package's public API is used: `numpy_lstm.LSTM` and
`numpy_lstm.set_num_processes`.

cProfile times Python functions. NumPy's ufuncs (np.tanh, np.matmul, ...) are not functions to
it: their time counts in the engine function that calls them, so a function's "own" time is its
Python and its NumPy calls together. On 1 core everything runs in this process; on more, parts
may run in worker processes, which show here only as the wait for their replies. The profiler
slows each Python call, so the total is above what `numpy-lstm bench` measures: read the shares.
"""
import argparse
import cProfile
import os
import pstats
import time

import numpy as np

import numpy_lstm


def shape(text):
    try:
        B, T, E, H = (int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"want B,T,E,H (four positive integers), got {text!r}") from None
    if min(B, T, E, H) < 1:
        raise argparse.ArgumentTypeError(f"want four positive integers, got {text!r}")
    return B, T, E, H


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=shape, default=(64, 500, 32, 100), help="B,T,E,H (default 64,500,32,100)")
    parser.add_argument("--cores", type=int, default=1, help="the engine's cores (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="profiled passes, after one warm-up (default 3)")
    parser.add_argument("--top", type=int, default=15, help="functions to list (default 15)")
    args = parser.parse_args()
    B, T, E, H = args.shape
    numpy_lstm.set_num_processes(args.cores)
    rng = np.random.default_rng(0)
    lstm = numpy_lstm.LSTM(E, H, rng)
    x = rng.standard_normal((B, T, E), dtype=np.float32)
    dout = rng.standard_normal((B, H), dtype=np.float32)

    def one_pass():
        _, cache = lstm.forward(x)
        lstm.backward(dout, cache)

    one_pass()                                    # warm-up: page faults, worker start-up
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.runcall(lambda: [one_pass() for _ in range(args.repeats)])
    wall = (time.perf_counter() - start) / args.repeats
    stats = pstats.Stats(profile).stats           # {(file, line, name): (calls, _, own, cumulative, _)}
    root = os.path.dirname(numpy_lstm.__file__)
    print(f"LSTM layer forward + backward, B={B} T={T} E={E} H={H}, float32, {args.cores} "
          f"core{'s' * (args.cores > 1)}: {1000 * wall:.1f} ms a pass under the profiler "
          f"(mean of {args.repeats})")
    print(f"{'own ms':>8} {'share':>6} {'total ms':>9} {'calls':>8}  function (per pass)")
    rows = sorted(stats.items(), key=lambda item: -item[1][2])[:args.top]
    for (path, line, name), (_, calls, own, cumulative, _) in rows:
        where = os.path.relpath(path, root) if path.startswith(root) else os.path.basename(path)
        label = f"{where}:{line} {name}" if line else name
        print(f"{1000 * own / args.repeats:8.1f} {own / args.repeats / wall:6.1%} "
              f"{1000 * cumulative / args.repeats:9.1f} {calls / args.repeats:8.0f}  {label}")


if __name__ == "__main__":
    main()
