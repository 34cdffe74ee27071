"""Does this machine give a second process a core of its own? A control for 2-core timings.

    PYTHONPATH=. python bench/second_core.py [--work python|lstm] [--tries N]

Times a piece of work alone, then with a forked copy running at the same time, N times each,
interleaved. On two free cores the pair takes as long as one alone (ratio 1.0); on a host that
shares the cores with other work it takes longer, up to 2.0 when there is effectively one core.

--work python: a pure-Python loop (no NumPy, no memory traffic to speak of): is the core there?
--work lstm: the forward + backward of one 32-row part of a tutorial-shaped batch (500 steps,
32 -> 100, one thread), what each core runs when two share a batch: the ratio is how much two
parts slow each other down through the caches and memory they share, with no pipes involved.
Linux only (os.fork).
"""
import argparse
import os
import statistics
import time


def python_loop():
    """A function running a pure-Python loop."""
    def work(n=6_000_000):
        total = 0
        for i in range(n):
            total += i * i
        return total
    return work


def lstm_part():
    """A function running one forward + backward of a 32-row part, in this process."""
    import numpy as np

    from numpy_lstm import LSTM, set_num_processes
    set_num_processes(1)
    rng = np.random.default_rng(0)
    layer = LSTM(32, 100, rng)
    x = rng.standard_normal((32, 500, 32), dtype=np.float32)

    def work():
        out, cache = layer.forward(x)
        layer.backward(np.ones_like(out), cache)
    work()                                   # warm-up: buffers allocated once
    return work


class Partner:
    """A forked process with its own copy of the work, which runs it once per go()."""

    def __init__(self, make_work):
        self.go_r, self.go_w = os.pipe()
        self.done_r, self.done_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            work = make_work()                       # its own arrays: no pages shared with us
            while os.read(self.go_r, 1) == b"g":
                work()
                os.write(self.done_w, b"d")
            os._exit(0)

    def go(self):
        os.write(self.go_w, b"g")

    def wait(self):
        os.read(self.done_r, 1)

    def close(self):
        os.write(self.go_w, b"q")
        os.waitpid(self.pid, 0)


def alone(work):
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def side_by_side(work, partner):
    start = time.perf_counter()
    partner.go()
    work()
    partner.wait()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", choices=("python", "lstm"), default="python",
                        help="a pure-Python loop (default), or one LSTM batch part")
    parser.add_argument("--tries", type=int, default=5, help="timings of each kind (default 5)")
    args = parser.parse_args()
    make_work = python_loop if args.work == "python" else lstm_part
    partner = Partner(make_work)
    work = make_work()
    side_by_side(work, partner)                      # warm-up of the pair
    pairs = [(alone(work), side_by_side(work, partner)) for _ in range(args.tries)]
    partner.close()
    for a, b in pairs:
        print(f"alone {1000 * a:.0f} ms, beside a copy {1000 * b:.0f} ms, ratio {b / a:.2f}")
    ratios = [b / a for a, b in pairs]
    print(f"median ratio {statistics.median(ratios):.2f} (1.0: two free cores; 2.0: one)")


if __name__ == "__main__":
    main()
