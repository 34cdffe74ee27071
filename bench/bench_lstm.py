"""Time the LSTM layer and the whole tutorial model: forward, and forward + backward.

    python bench/bench_lstm.py [--repeats N]

Prints the median milliseconds per batch over N repeats after one warm-up, at the tutorial's
shapes (batch 64, 500 steps, 32 -> 100, float32).
"""
import argparse
import statistics
import time

import numpy as np

from numpy_lstm import LSTM, SentimentLSTM


def median_ms(fn, repeats):
    fn()  # warm-up: first-touch page faults and BLAS thread start-up are not the steady state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    B, T, E, H, V = 64, 500, 32, 100, 500
    rng = np.random.default_rng(0)
    lstm = LSTM(E, H, rng)
    x = rng.standard_normal((B, T, E)).astype(np.float32)
    dout = rng.standard_normal((B, H)).astype(np.float32)
    model = SentimentLSTM(vocab_size=V, embed_dim=E, units=H, seed=0)
    ids = rng.integers(1, V, size=(B, T))
    labels = rng.integers(0, 2, size=B)

    def lstm_train_step():
        _, cache = lstm.forward(x)
        lstm.backward(dout, cache)

    rows = [
        ("LSTM forward", median_ms(lambda: lstm.forward(x), args.repeats)),
        ("LSTM forward+backward", median_ms(lstm_train_step, args.repeats)),
        ("model forward", median_ms(lambda: model.forward(ids), args.repeats)),
        ("model forward+backward", median_ms(lambda: model.gradients(ids, labels), args.repeats)),
    ]
    print(f"batch {B}, {T} steps, {E} -> {H}, float32, median of {args.repeats}")
    for name, ms in rows:
        print(f"{name:<24} {ms:9.1f} ms/batch")


if __name__ == "__main__":
    main()
