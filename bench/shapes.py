"""The LSTM layer's forward + backward at any shapes, ours against torch.nn.LSTM.

    PYTHONPATH=. python bench/bench_lstm.py --shapes "B,T,E,H;B,T,E,H;..." [--repeats N] [--json-file F] [--plot F]
    PYTHONPATH=. python bench/bench_lstm.py --sweep [--repeats N] [--json-file F] [--plot F]

For each shape (B batch rows, T steps, E inputs, H units), float32, one forward + backward of the
layer (dout on h_T): ours at each core count (`numpy_lstm.set_num_processes`; the engine chooses
how to use them by shape, `numpy_lstm.engine.strategy`), then torch.nn.LSTM at each thread count
with subnormals flushed (bench_lstm.import_torch), on the same weights, its h_T checked equal to
ours within 1e-4. Each time is the median of the repeats after one warm-up; ours are interleaved
with each other, then PyTorch's with each other (bench_lstm.bench_shape says why not all in one).
"ours / PyTorch" sets our best core count against PyTorch's best thread count. "floor" is the
least any LSTM loop of NumPy calls in one process can take at the shape (`numpy_floor`): per
step, the recurrent matmul of forward and of backward and the two tanh calls, nothing else, at
the best of 1 and 2 BLAS threads and of both orientations; "floor / PyTorch" above 1 means no
such loop can reach PyTorch there, however few its other calls. The shapes run one after
another in one process, after the machine's sgemm peak: ratios of one run are what to read on a
shared machine.

--sweep runs SWEEP_SHAPES (issue 15's grid, then T from 50 to 1,000 at the tutorial's B, E, H),
writes the JSON to bench/sweep.json and draws time and ratio against B, H and T to
bench/sweep.png (sweep_plot.py), unless --json-file / --plot say otherwise.
"""
import functools
import json
import os
import time

import numpy as np
from bench_lstm import interleaved_medians, lstm_flops, machine_info, peak_gflops, torch_lstm_like

from numpy_lstm import LSTM, engine
from numpy_lstm.engine import cores

GRID = [(1, 500, 32, 100), (8, 500, 32, 100), (64, 500, 32, 100), (256, 500, 32, 100),
        (64, 100, 32, 256), (64, 100, 256, 512), (16, 100, 512, 1024)]
T_SWEEP = [(64, T, 32, 100) for T in (50, 100, 250, 1000)]     # T = 500 is in the grid
SWEEP_SHAPES = GRID + T_SWEEP
HERE = os.path.dirname(os.path.abspath(__file__))


def parse_shapes(text):
    """"B,T,E,H;B,T,E,H" -> [(B, T, E, H), ...]; ValueError on anything else."""
    shapes = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        fields = part.split(",")
        if len(fields) != 4 or not all(f.strip().isdigit() and int(f) > 0 for f in fields):
            raise ValueError(f"a shape is four positive integers B,T,E,H, got {part!r}")
        shapes.append(tuple(int(f) for f in fields))
    if not shapes:
        raise ValueError("--shapes needs at least one B,T,E,H")
    return shapes


def numpy_floor(B, T, H, threads_list, repeats):
    """Seconds (median) of the calls every one-process NumPy LSTM loop makes at each of T steps:
    forward's recurrent matmul (4H, H) @ (H, B), tanh on the four gates' pre-activations (4H, B)
    and on c_t (H, B), and backward's dh_{t-1} = (H, 4H) @ (4H, B); the best of the BLAS thread
    counts and of the two orientations of the matmuls (batch-last as written, or batch-first:
    (B, H) @ (H, 4H), as the engine runs them at many units). The input part and the weight
    gradients (a block of steps per matmul) and every other element-wise call are left out, which
    keeps this a lower bound."""
    rng = np.random.default_rng(0)
    # float32 throughout, as the engine runs: a float64 scale here once made w float64 (NumPy 2
    # keeps an np.float64 scalar's type), every matmul cast it, and the floor came out 1.6-3.1x
    # too high.
    w = rng.standard_normal((4 * H, H), dtype=np.float32) / np.float32(np.sqrt(H))
    w_t = np.ascontiguousarray(w.T)
    h = rng.standard_normal((H, B), dtype=np.float32)
    h_rows = np.ascontiguousarray(h.T)
    z, z_rows = np.empty((4 * H, B), np.float32), np.empty((B, 4 * H), np.float32)
    dh, dh_rows = np.empty((H, B), np.float32), np.empty((B, H), np.float32)
    # (forward matmul's operands, h, z, dh, backward matmul's operands) of each orientation
    orientations = [((w, h), h, z, dh, (w_t, z)),                              # batch-last
                    ((h_rows, w_t), h_rows, z_rows, dh_rows, (z_rows, w))]     # batch-first
    assert all(a.dtype == np.float32 for a in (w, w_t, h, h_rows, z, z_rows, dh, dh_rows))

    def steps(forward, h, z, dh, backward):
        for _ in range(T):
            np.matmul(*forward, out=z)
            np.tanh(z, out=z)
            np.tanh(h, out=dh)
        for _ in range(T):
            np.matmul(*backward, out=dh)

    cases = {(k, n): (lambda: None, functools.partial(_with_blas_threads, k, functools.partial(steps, *arrays)))
             for k in threads_list for n, arrays in enumerate(orientations)}
    return min(interleaved_medians(cases, repeats).values())


def _with_blas_threads(k, fn):
    with cores.blas_threads(k):
        fn()


def time_shape(shape, threads_list, repeats, torch):
    """One shape's row: ms of ours and of PyTorch at each core / thread count, and the check."""
    B, T, E, H = shape
    rng = np.random.default_rng(0)
    lstm = LSTM(E, H, rng)
    lstm.bias[:] = rng.uniform(-0.5, 0.5, lstm.bias.shape)
    x = rng.standard_normal((B, T, E), dtype=np.float32)
    dout = rng.standard_normal((B, H), dtype=np.float32)

    def ours():
        _, cache = lstm.forward(x)
        lstm.backward(dout, cache)

    cases = {k: (functools.partial(cores.set_num_processes, k), ours) for k in threads_list}
    row = {"B": B, "T": T, "E": E, "H": H,
           "strategy": {k: engine.strategy(B, H, k) for k in threads_list}}
    medians = interleaved_medians(cases, repeats)
    row["ours_ms"] = {k: 1000 * medians[k] for k in threads_list}
    if torch is not None:
        module = torch_lstm_like(lstm, torch)
        tx = torch.from_numpy(x).requires_grad_(True)
        tdout = torch.from_numpy(dout)

        def theirs():
            module.zero_grad(set_to_none=True)
            tx.grad = None
            _, (h_n, _) = module(tx)
            h_n[0].backward(tdout)

        with torch.no_grad():
            _, (h_n, _) = module(tx)
        row["max_abs_output_diff"] = float(np.abs(lstm.forward(x)[0] - h_n[0].numpy()).max())
        time.sleep(0.5)        # let PyTorch's threads, woken by the check, go to sleep first
        cases = {k: (functools.partial(torch.set_num_threads, k), theirs) for k in threads_list}
        medians = interleaved_medians(cases, repeats)
        row["torch_ms"] = {k: 1000 * medians[k] for k in threads_list}
        time.sleep(0.5)
    row["floor_ms"] = 1000 * numpy_floor(B, T, H, threads_list, repeats)
    flops = sum(lstm_flops(B, T, E, H))
    row["ours_best_ms"] = min(row["ours_ms"].values())
    row["ours_gflops"] = flops / row["ours_best_ms"] / 1e6
    if "torch_ms" in row:
        row["torch_best_ms"] = min(row["torch_ms"].values())
        row["torch_gflops"] = flops / row["torch_best_ms"] / 1e6
        row["ratio"] = row["ours_best_ms"] / row["torch_best_ms"]
        row["floor_ratio"] = row["floor_ms"] / row["torch_best_ms"]
    return row


def report(result, threads_list):
    m = result["machine"]
    print(f"{m['cpu']}, {m['cpus']} CPUs; NumPy {m['numpy']}, torch {m['torch'] or 'not installed'}; "
          f"load average at start {' '.join(f'{v:.1f}' for v in m['load_average'])}, at end "
          f"{' '.join(f'{v:.1f}' for v in m['load_average_end'])}")
    print(f"LSTM layer forward + backward, float32, median of {result['repeats']} after a warm-up; "
          "float32 matmul peak (2048^3): " + ", ".join(
              f"{k} thr {v:.0f} GFLOP/s" for k, v in result["peak_gflops"].items()))
    head = (f"{'B':>4} {'T':>5} {'E':>4} {'H':>5} |" + "".join(f"{f'ours {k}c':>9}" for k in threads_list)
            + f"{'GF/s':>6} |" + "".join(f"{f'torch {k}t':>9}" for k in threads_list)
            + f"{'GF/s':>6} | ours/torch | {'floor':>7} floor/torch | strategy at {threads_list[-1]} cores")
    print(head)
    for r in result["shapes"]:
        line = f"{r['B']:>4} {r['T']:>5} {r['E']:>4} {r['H']:>5} |"
        line += "".join(f"{r['ours_ms'][k]:>9.1f}" for k in threads_list) + f"{r['ours_gflops']:>6.0f} |"
        if "torch_ms" in r:
            line += "".join(f"{r['torch_ms'][k]:>9.1f}" for k in threads_list)
            line += f"{r['torch_gflops']:>6.0f} | {r['ratio']:>10.2f}"
        line += f" | {r['floor_ms']:>7.1f}" + (f" {r['floor_ratio']:>11.2f}" if "floor_ratio" in r else " " * 12)
        line += f" | {r['strategy'][threads_list[-1]]}"
        print(line)
    print(f"(times in ms; took {result['seconds']:.0f} s)")


def main(args, repeats, threads_list, torch):
    shapes = SWEEP_SHAPES if args.sweep else parse_shapes(args.shapes)
    started = time.perf_counter()
    result = {"machine": machine_info(torch), "repeats": repeats,
              "peak_gflops": peak_gflops(threads_list, repeats), "shapes": []}
    for shape in shapes:
        result["shapes"].append(time_shape(shape, threads_list, repeats, torch))
    cores.set_num_processes(None)
    result["machine"]["load_average_end"] = os.getloadavg()
    result["seconds"] = time.perf_counter() - started
    json_file = args.json_file or (os.path.join(HERE, "sweep.json") if args.sweep else None)
    plot = args.plot or (os.path.join(HERE, "sweep.png") if args.sweep else None)
    if json_file:
        with open(json_file, "w") as f:
            json.dump(result, f, indent=1)
    if plot:
        import sweep_plot
        sweep_plot.draw(result, plot)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        report(result, threads_list)
