"""What the comparison runs against: the kernels behind torch.nn.LSTM, and the step's matmuls.

    PYTHONPATH=. python bench/torch_kernels.py [--shape B,T,E,H]

1. Profiles one forward + backward of torch.nn.LSTM (float32, CPU) at the shape and prints the
   operators that took the time: on a build with oneDNN (mkldnn) the whole layer is one fused
   operator each way, not a chain of matmuls and element-wise calls.
2. Times the LSTM step's matmuls, forward (B, H) @ (H, 4H) and backward (B, 4H) @ (4H, H), and a
   weight-gradient block, (4H, 512) @ (512, E + 1 + H), on one thread: NumPy's BLAS (OpenBLAS in
   NumPy's wheels) against torch.matmul (MKL in PyTorch's CPU wheels), medians of 7 runs of 30
   calls each, the two interleaved, with GFLOP/s.
"""
import argparse

import numpy as np
from bench_lstm import import_torch, interleaved_medians
from shapes import parse_shapes

from numpy_lstm.engine import cores

CALLS, RUNS = 30, 7       # a timed run is CALLS calls; the median of RUNS runs, NumPy's and torch's interleaved


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
    print(f"The step's matmuls on one thread, median of {RUNS} x {CALLS} calls, interleaved:")
    rng = np.random.default_rng(0)
    for M, K, N in [(B, H, 4 * H), (B, 4 * H, H), (4 * H, 512, E + 1 + H)]:
        a = rng.standard_normal((M, K), dtype=np.float32)
        b = rng.standard_normal((K, N), dtype=np.float32)
        out = np.empty((M, N), np.float32)
        ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
        cases = {"ours": (lambda: None, lambda: repeat(lambda: np.matmul(a, b, out=out))),
                 "theirs": (lambda: None, lambda: repeat(lambda: torch.matmul(ta, tb, out=tout)))}
        with cores.blas_threads(1):
            seconds = interleaved_medians(cases, RUNS)
        ours, theirs = seconds["ours"] / CALLS, seconds["theirs"] / CALLS
        flop = 2 * M * K * N
        print(f"  ({M}, {K}) @ ({K}, {N}): NumPy {ours * 1e6:8.0f} us ({flop / ours / 1e9:5.1f} GFLOP/s), "
              f"torch.matmul {theirs * 1e6:8.0f} us ({flop / theirs / 1e9:5.1f} GFLOP/s)")


def repeat(fn):
    """fn() CALLS times: one timed run."""
    for _ in range(CALLS):
        fn()


if __name__ == "__main__":
    main()
