"""Does this machine give a second process a core of its own? A control for 2-core timings.

    python bench/second_core.py [--tries N]

Times a pure-Python loop (no NumPy, no memory traffic to speak of) alone, then with a forked
copy running at the same time, N times each, interleaved. On two free cores the pair takes as
long as one alone (ratio 1.0); on a host that shares the cores with other work it takes longer,
up to 2.0 when there is effectively one core. Linux only (os.fork).
"""
import argparse
import os
import statistics
import time


def work(n=6_000_000):
    total = 0
    for i in range(n):
        total += i * i
    return total


def alone():
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def side_by_side():
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        work()
        os._exit(0)
    work()
    os.waitpid(pid, 0)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=5, help="timings of each kind (default 5)")
    args = parser.parse_args()
    pairs = [(alone(), side_by_side()) for _ in range(args.tries)]
    for a, b in pairs:
        print(f"alone {a:.2f} s, beside a copy {b:.2f} s, ratio {b / a:.2f}")
    ratios = [b / a for a, b in pairs]
    print(f"median ratio {statistics.median(ratios):.2f} (1.0: two free cores; 2.0: one)")


if __name__ == "__main__":
    main()
