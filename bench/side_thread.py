"""What the side thread buys: the LSTM's forward and backward with and without it, interleaved.

    PYTHONPATH=. python bench/side_thread.py [--shapes "B,T,E,H;..."] [--repeats N]

At each shape (default: batches of 1 to 12 rows at the tutorial's 32 -> 100, and across T at 8
rows), times the LSTM layer's forward and backward on 2 cores as the engine runs them
(`numpy_lstm.engine.strategy`), and the same with `cores.side_thread` answering no, so that the
block matmuls run in the loop's own thread; the two alternate, repeat after repeat, so that a
busy spell of this host hits both. Prints the medians in ms and the ratio of the passes (with /
without: below 1 the side thread pays). Where the engine would not use it, both are the same code.
"""
import argparse

import numpy as np
from bench_lstm import interleaved_medians
from shapes import parse_shapes

from numpy_lstm import LSTM, engine, set_num_processes
from numpy_lstm.engine import cores

DEFAULT_SHAPES = ("1,500,32,100;4,500,32,100;4,500,32,200;8,500,32,100;12,500,32,100;"
                  "8,50,32,100;8,100,32,100;8,200,32,100")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help="B,T,E,H;... (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=15, help="timings of each case (default 15)")
    args = parser.parse_args()
    set_num_processes(2)
    engine_rule = cores.side_thread
    print("LSTM layer, float32, 2 cores, medians of", args.repeats, "interleaved; ms")
    print(f"{'B':>4} {'T':>5} {'E':>4} {'H':>5} | {'without: fwd':>12} {'bwd':>6} {'pass':>6} | "
          f"{'with: fwd':>9} {'bwd':>6} {'pass':>6} | with / without | strategy")
    for B, T, E, H in parse_shapes(args.shapes):
        rng = np.random.default_rng(0)
        layer = LSTM(E, H, rng)
        x = rng.standard_normal((B, T, E), dtype=np.float32)
        dout = rng.standard_normal((B, H), dtype=np.float32)
        caches = []

        def forward():
            caches.append(layer.forward(x)[1])

        def backward():
            layer.backward(dout, caches.pop())

        def rule(on):
            return lambda: setattr(cores, "side_thread", engine_rule if on else lambda *args: False)

        cases = {(on, half): (rule(on), fn) for on in (False, True) for half, fn in (("f", forward), ("b", backward))}
        try:
            ms = {case: 1000 * t for case, t in interleaved_medians(cases, args.repeats).items()}
        finally:
            cores.side_thread = engine_rule
        row = [(ms[on, "f"], ms[on, "b"], ms[on, "f"] + ms[on, "b"]) for on in (False, True)]
        print(f"{B:>4} {T:>5} {E:>4} {H:>5} | {row[0][0]:>12.1f} {row[0][1]:>6.1f} {row[0][2]:>6.1f} | "
              f"{row[1][0]:>9.1f} {row[1][1]:>6.1f} {row[1][2]:>6.1f} | {row[1][2] / row[0][2]:>14.2f} | "
              f"{engine.strategy(B, H)}")


if __name__ == "__main__":
    main()
