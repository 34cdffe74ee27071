"""The LSTM engine of a git revision against the working tree's: the same bits, and which is faster.

    python bench/ab_engine.py check --old REV [--shapes "B,T,E,H;..."]
    python bench/ab_engine.py time --old REV [--shapes ...] [--repeats N]
    python bench/ab_engine.py processes --old REV [--shapes ...] [--repeats N]

REV's `numpy_lstm/` is copied out of git (`git archive`) into a temporary folder and imported as
`numpy_lstm_old`, beside the working tree's `numpy_lstm` (run from a clone with `PYTHONPATH=.`,
or with the package installed editable). Both are driven through the public `numpy_lstm.LSTM`.

check      the same weights, batch, masks (none, left-padded, holes), initial state, recurrent
           dropout and return_sequences in both, float32 and float64, after a first pass on other
           values (so that buffers kept between passes are reused): below 512 units every output
           and gradient must have the same bytes (np.array_equal, and the sign of a zero); from
           512 units, where BLAS may sum in another order, both within 1e-10 of
           `implementation="reference"` in float64. Exit 1 on any difference.
time       forward + backward in float32 at the layer's initial weights (as `numpy-lstm bench`),
           old and new alternating in one process, the order swapped every round, one warm-up
           round; medians, new/old, and how many pairs the new one won.
processes  each engine alone in processes of its own (5 each, alternating): the median of their
           medians. Two engines in one process share its memory and worker processes, which can
           slow one of them; this mode rules that out.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

import numpy_lstm

GRID = "1,500,32,100;8,500,32,100;64,500,32,100;256,500,32,100;64,100,32,256;64,100,256,512;16,100,512,1024"
CHECKED = ("1,20,32,100;8,50,32,100;64,30,32,100;32,20,32,256;64,10,32,64;16,600,8,12;3,40,5,7;"
           "20,10,6,12;128,12,32,100;64,8,16,300;16,5,64,512;8,4,32,1024")
SETTLE = 0.02          # seconds left before each timed pass, for the threads of the one before
NAMES = ["out", "dx", "dh0", "dc0", "dkernel", "drecurrent_kernel", "dbias"]
# dtype, mask, return_sequences, initial state, recurrent dropout
CASES = [(np.float32, None, False, False, False), (np.float32, "pre", False, False, False),
         (np.float32, "holes", True, True, False), (np.float64, None, True, False, True),
         (np.float64, "pre", False, True, False), (np.float32, "holes", False, False, True)]


def import_old(rev, folder):
    """REV's numpy_lstm, copied into folder and imported as numpy_lstm_old (its imports are relative)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    archive = subprocess.run(["git", "-C", root, "archive", rev, "numpy_lstm"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    os.rename(os.path.join(folder, "numpy_lstm"), os.path.join(folder, "numpy_lstm_old"))
    sys.path.insert(0, folder)
    import numpy_lstm_old
    return numpy_lstm_old


def shapes_of(spec):
    return [tuple(int(v) for v in s.split(",")) for s in spec.split(";") if s.strip()]


def layer_pair(old, E, H, dtype, return_sequences=False, dropout=0.0, initial=False):
    """(new, old) layers with the same weights: the initial ones, or random ones with a bias."""
    new_layer = numpy_lstm.LSTM(E, H, np.random.default_rng(1), return_sequences, dtype, dropout)
    old_layer = old.LSTM(E, H, np.random.default_rng(1), return_sequences, dtype, dropout)
    rng = np.random.default_rng(2)
    for a, b in zip(new_layer.weights, old_layer.weights):
        if not initial:
            a[...] = rng.normal(scale=0.5, size=a.shape)
        b[...] = a
    return new_layer, old_layer


def mask_of(kind, B, T, rng):
    """None, a left-padded mask (one empty row, one full), or holes anywhere."""
    if kind is None:
        return None
    if kind == "pre":
        lengths = rng.integers(0, T + 1, B)
        lengths[:min(2, B)] = (0, T)[:min(2, B)]
        return np.arange(T)[None, :] >= (T - lengths)[:, None]
    mask = rng.random((B, T)) > 0.35
    mask[0] = False
    if B > 1:
        mask[1, -1] = False
    return mask


def forward_backward(layer, x, mask, state, dout, dropout_seed):
    """[out, dx, dh0, dc0, *weight gradients] of one pass."""
    rng = None if dropout_seed is None else np.random.default_rng(dropout_seed)
    out, cache = layer.forward(x, mask, state, rng)
    dx, (dh0, dc0), grads = layer.backward(dout, cache)
    return [out, dx, dh0, dc0, *grads]


def same_bytes(u, v):
    u, v = np.asarray(u), np.asarray(v)
    return (u.shape == v.shape and u.dtype == v.dtype
            and np.ascontiguousarray(u).tobytes() == np.ascontiguousarray(v).tobytes())


def differences(old, shape, dtype, mask_kind, return_sequences, with_state, dropout):
    """Names of the outputs and gradients that differ at one shape and case."""
    B, T, E, H = shape
    rate = 0.3 if dropout else 0.0
    new_layer, old_layer = layer_pair(old, E, H, dtype, return_sequences, rate)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(B, T, E)).astype(dtype)
    mask = mask_of(mask_kind, B, T, rng)
    state = tuple(rng.normal(size=(B, H)).astype(dtype) for _ in range(2)) if with_state else None
    dout = rng.normal(size=(B, T, H) if return_sequences else (B, H)).astype(dtype)
    seed = 7 if dropout else None
    for layer in (new_layer, old_layer):      # a first pass, so that kept buffers are reused
        forward_backward(layer, 2 * x, None, None, 3 * dout, seed)
    got = forward_backward(new_layer, x, mask, state, dout, seed)
    if H < 512:
        want = forward_backward(old_layer, x, mask, state, dout, seed)
        return [n for n, u, v in zip(NAMES, got, want) if not same_bytes(u, v)]
    reference = numpy_lstm.LSTM(E, H, np.random.default_rng(1), return_sequences, dtype, rate,
                                implementation="reference")
    for a, b in zip(reference.weights, new_layer.weights):
        a[...] = b
    want = forward_backward(reference, x, mask, state, dout, seed)
    return [n for n, u, v in zip(NAMES, got, want) if not np.allclose(u, v, rtol=1e-10, atol=1e-10)]


def check(old, shapes):
    failures = 0
    for shape in shapes:
        for dtype, *case in CASES:
            if shape[3] >= 512 and dtype != np.float64:
                continue                      # judged against the reference, in float64 only
            bad = differences(old, shape, dtype, *case)
            if bad:
                failures += 1
                print("differ", shape, np.dtype(dtype).name, case, bad, flush=True)
        print("checked", ",".join(map(str, shape)), flush=True)
    print("failures", failures)
    return failures


def pass_inputs(B, T, E, H):
    rng = np.random.default_rng(4)
    return rng.standard_normal((B, T, E), dtype=np.float32), rng.standard_normal((B, H), dtype=np.float32)


def one_pass(layer, x, dout):
    """A callable running one forward + backward of layer."""
    def run():
        _, cache = layer.forward(x)
        layer.backward(dout, cache)
    return run


def load():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def time_in_one_process(old, shapes, repeats):
    print("load average", load(), flush=True)
    for B, T, E, H in shapes:
        new_layer, old_layer = layer_pair(old, E, H, np.float32, initial=True)
        x, dout = pass_inputs(B, T, E, H)
        times = numpy_lstm.time_interleaved({"new": one_pass(new_layer, x, dout), "old": one_pass(old_layer, x, dout)},
                                            repeats, settle=SETTLE)
        report((B, T, E, H), times["old"], times["new"], "pairs the new won: "
               f"{sum(n < o for n, o in zip(times['new'], times['old']))}/{repeats}")
    print("load average", load(), flush=True)


def time_alone(old, which, shape, repeats):
    """One engine alone in this process: the median of `repeats` passes after one, in seconds."""
    B, T, E, H = shape
    layer = (numpy_lstm if which == "new" else old).LSTM(E, H, np.random.default_rng(1))
    x, dout = pass_inputs(B, T, E, H)
    times = numpy_lstm.time_interleaved({which: one_pass(layer, x, dout)}, repeats, settle=SETTLE)
    print(statistics.median(times[which]))


def time_processes(args, shapes, rounds=5):
    print("load average", load(), flush=True)
    for shape in shapes:
        def alone(which):
            command = [sys.executable, __file__, "alone", "--old", args.old, "--which", which,
                       "--shapes", ",".join(map(str, shape)), "--repeats", str(args.repeats)]
            return lambda: float(subprocess.run(command, capture_output=True, text=True,
                                                check=True).stdout.split()[-1])
        got = numpy_lstm.time_interleaved({"new": alone("new"), "old": alone("old")}, rounds)
        report(shape, got["old"], got["new"], f"{rounds} processes each")
    print("load average", load(), flush=True)


def report(shape, old_times, new_times, how):
    old_ms, new_ms = statistics.median(old_times) * 1e3, statistics.median(new_times) * 1e3
    print(f"{','.join(map(str, shape)):>18}: old {old_ms:9.2f} ms  new {new_ms:9.2f} ms  "
          f"new/old {new_ms / old_ms:.3f}  ({how})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["check", "time", "processes", "alone"])
    parser.add_argument("--old", required=True, help="the git revision to compare with (HEAD, main, a hash)")
    parser.add_argument("--shapes", help="B,T,E,H;... (check: a grid of small shapes; else issue 34's seven)")
    parser.add_argument("--repeats", type=int, default=11, help="timed passes of each engine a shape")
    parser.add_argument("--which", choices=["old", "new"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    shapes = shapes_of(args.shapes or (CHECKED if args.mode == "check" else GRID))
    with tempfile.TemporaryDirectory() as folder:
        old = import_old(args.old, folder)
        if args.mode == "check":
            return 1 if check(old, shapes) else 0
        if args.mode == "alone":
            time_alone(old, args.which, shapes[0], args.repeats)
        elif args.mode == "time":
            time_in_one_process(old, shapes, args.repeats)
        else:
            time_processes(args, shapes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
