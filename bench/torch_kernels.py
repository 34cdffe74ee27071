"""What the comparison runs against: the kernels behind torch.nn.LSTM, and the step's matmuls.

    PYTHONPATH=. python bench/torch_kernels.py [--shape B,T,E,H]

1. Profiles one forward + backward of torch.nn.LSTM (float32, CPU) at the shape and prints the
   operators that took the time: on a build with oneDNN (mkldnn) the whole layer is one fused
   operator each way, not a chain of matmuls and element-wise calls.
2. Times the LSTM step's matmuls, forward (B, H) @ (H, 4H) and backward (B, 4H) @ (4H, H), and a
   weight-gradient block, (4H, 512) @ (512, E + 1 + H), on one thread: NumPy's BLAS (OpenBLAS in
   NumPy's wheels) against torch.matmul (MKL in PyTorch's CPU wheels), medians of 7 runs of 30
   calls each, with GFLOP/s.
"""
import argparse
import statistics
import time

import numpy as np
from bench_lstm import import_torch
from shapes import parse_shapes

from numpy_lstm.engine import workers


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="16,100,512,1024", help="B,T,E,H (default %(default)s)")
    args = parser.parse_args()
    (B, T, E, H), = parse_shapes(args.shape)
    torch = import_torch()
    if torch is None:
        raise SystemExit("error: torch is not installed (pip install torch==2.13.0)")
    torch.set_num_threads(1)
    lstm = torch.nn.LSTM(E, H, batch_first=True)
    x = torch.randn(B, T, E, requires_grad=True)
    out, _ = lstm(x)                      # once untimed: oneDNN compiles its kernels on first use
    out[:, -1].sum().backward()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        out, _ = lstm(x)
        out[:, -1].sum().backward()
    print(f"torch.nn.LSTM forward + backward at (B, T, E, H) = {(B, T, E, H)}, one thread, by operator:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=6))
    print("The step's matmuls on one thread, median of 7 x 30 calls:")
    rng = np.random.default_rng(0)
    for M, K, N in [(B, H, 4 * H), (B, 4 * H, H), (4 * H, 512, E + 1 + H)]:
        a = rng.standard_normal((M, K), dtype=np.float32)
        b = rng.standard_normal((K, N), dtype=np.float32)
        out = np.empty((M, N), np.float32)
        ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
        with workers.blas_threads(1):
            ours = per_call(lambda: np.matmul(a, b, out=out))
        theirs = per_call(lambda: torch.matmul(ta, tb, out=tout))
        flop = 2 * M * K * N
        print(f"  ({M}, {K}) @ ({K}, {N}): NumPy {ours * 1e6:8.0f} us ({flop / ours / 1e9:5.1f} GFLOP/s), "
              f"torch.matmul {theirs * 1e6:8.0f} us ({flop / theirs / 1e9:5.1f} GFLOP/s)")


def per_call(fn, calls=30, runs=7):
    """Median seconds per call of fn over `runs` runs of `calls` calls."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


if __name__ == "__main__":
    main()
