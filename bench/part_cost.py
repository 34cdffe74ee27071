"""What caps the 2-core speedup: the cost of a batch part as a function of its rows.

    PYTHONPATH=. python bench/part_cost.py [--repeats N]

Times the LSTM's forward + backward at the tutorial's shapes (500 steps, 32 -> 100, float32) on
one core for batches of 8, 16, 32 and 64 rows, and on two cores for 64 rows, repeats interleaved,
medians. A least-squares line through the 1-core times splits them into a fixed cost (per-step
work that does not grow with the rows: NumPy's dispatch, the matmul's set-up) and a cost per row.
Two cores each run half the rows but each pays the fixed cost in full, so the best 2-core speedup
is (fixed + 64 per-row) / (fixed + 32 per-row); the measured 2-core time against a 32-row part
alone shows what the split itself (pipes, waiting for the later part) adds.
"""
import argparse
import statistics
import time

import numpy as np

from numpy_lstm import LSTM, set_num_processes

ROWS = (8, 16, 32, 64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timings of each case (default 7)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    layer = LSTM(32, 100, rng)
    xs = {b: rng.standard_normal((b, 500, 32), dtype=np.float32) for b in ROWS}
    cases = [(b, 1) for b in ROWS] + [(64, 2)]
    times = {case: [] for case in cases}
    for round_ in range(args.repeats + 1):          # round 0 warms up
        for rows, cores in cases:
            set_num_processes(cores)
            start = time.perf_counter()
            out, cache = layer.forward(xs[rows])
            layer.backward(np.ones_like(out), cache)
            if round_:
                times[rows, cores].append(time.perf_counter() - start)
    ms = {case: 1000 * statistics.median(t) for case, t in times.items()}
    for rows in ROWS:
        print(f"1 core, {rows:2d} rows: {ms[rows, 1]:6.1f} ms")
    per_row, fixed = np.polyfit(ROWS, [ms[b, 1] for b in ROWS], 1)
    print(f"fit: {fixed:.1f} ms fixed + {per_row:.2f} ms per row")
    print(f"best 2-core speedup at 64 rows: {(fixed + 64 * per_row) / (fixed + 32 * per_row):.2f}x")
    print(f"2 cores, 64 rows: {ms[64, 2]:.1f} ms = {ms[64, 2] / ms[32, 1]:.2f}x a 32-row part alone; "
          f"speedup over 1 core {ms[64, 1] / ms[64, 2]:.2f}x")
    # The spread says how steady each core count is: on a shared host the second core may not be.
    for case in ((64, 1), (64, 2)):
        spread = sorted(1000 * t for t in times[case])
        print(f"{case[1]} core{'s' * (case[1] > 1)}, 64 rows, every pass: "
              + " ".join(f"{t:.0f}" for t in spread) + " ms")


if __name__ == "__main__":
    main()
