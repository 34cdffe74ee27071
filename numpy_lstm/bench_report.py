"""What `numpy-lstm bench` shows: its table, the comparison with an earlier run, the table of
targets for docs/performance.md, and the plot.

    python -m numpy_lstm.bench_report RESULT.json      # the targets table, in Markdown, of a recorded run

A result is the JSON the bench writes (`benchmark.run` plus "machine" and "torch"); every figure
here is read from it, none typed in.
"""
import os
import sys

from .machine import summary

HEADER = (f"{'B':>4} {'T':>5} {'E':>4} {'H':>5} | {'ours ms':>9} {'spread':>15} {'%peak':>5} | "
          f"{'floor ms':>9} | {'torch ms':>9} {'flushed':>9} {'as is':>9} {'faster setting':<19} | "
          f"{'ours/torch':>10} {'floor/torch':>11}")


def _ms(value):
    return f"{value:,.1f}" if value is not None else "-"


def _ratio(value):
    return f"{value:.2f}" if value is not None else "-"


def shape_text(shape, sep=","):
    return sep.join(f"{n}" for n in shape)


def header_lines(result):
    """The machine, PyTorch's state and the method, as lines of text."""
    lines = summary(result["machine"])
    torch = result.get("torch")
    if torch:
        lines.append(f"torch {torch['version']}, in processes of its own, subnormals flushed "
                     f"({'set' if torch['flushing'] else 'NOT supported on this CPU'}) and as they come; "
                     f"its times are the faster of 1 and 2 threads")
    else:
        lines.append(f"torch is not importable ({result.get('torch_missing')}): ours and the floor only")
    peak = ", ".join(f"{k} thread{'s' * (k != '1')} {v:.0f} GFLOP/s" for k, v in result["peak_gflops"].items())
    lines.append(f"float32 matmul peak ({result['peak_size']}^3): {peak}")
    lines.append(f"LSTM layer forward + backward, float32; median of {result['repeats']} rounds after a warm-up, "
                 f"ours, the floor and torch interleaved in each round")
    return lines


def row_line(row):
    """A shape's line under HEADER."""
    B, T, E, H = row["shape"]
    spread = f"({_ms(row['ours_min_ms'])}-{_ms(row['ours_max_ms'])})"
    return (f"{B:>4} {T:>5} {E:>4} {H:>5} | {_ms(row['ours_ms']):>9} {spread:>15} "
            f"{100 * row['peak_fraction']:>4.0f}% | "
            f"{_ms(row['floor_ms']):>9} | {_ms(row['torch_ms']):>9} {_ms(row['torch_flushed_ms']):>9} "
            f"{_ms(row['torch_unflushed_ms']):>9} {row['torch_how'] or '-':<19} | "
            f"{_ratio(row['ratio']):>10} {_ratio(row['floor_ratio']):>11}")


def footer_lines(result):
    rows = result["shapes"]
    cores = sorted({row["ours_cores"] for row in rows})
    on = f"{'/'.join(map(str, cores))} core{'s' * (cores != [1])}"
    lines = [f"ours: numpy_lstm.LSTM on {on}; spread: its least and most of the rounds; "
             "floor: the calls each step's recurrence forces (the recurrent matmul and 4 element-wise calls "
             "forward, the matmul and 2 backward) and the matmuls of the inputs, dx and the weight gradients "
             "over blocks of steps, the fastest way one process or a split of the rows runs them "
             "(docs/performance.md)"]
    lines.append(f"(took {result['seconds']:.0f} s)")
    return lines


def compare_lines(old, new):
    """Each shape that both results timed: ours, torch and the ratio, old against new."""
    before = {tuple(row["shape"]): row for row in old["shapes"]}
    lines = ["compared with the earlier run (" + summary(old["machine"])[0] + "):",
             f"{'B':>4} {'T':>5} {'E':>4} {'H':>5} | {'ours old':>9} {'new':>9} {'new/old':>7} | "
             f"{'torch old':>9} {'new':>9} | {'ratio old':>9} {'new':>6}"]
    common = 0
    for row in new["shapes"]:
        was = before.get(tuple(row["shape"]))
        if was is None:
            continue
        common += 1
        B, T, E, H = row["shape"]
        lines.append(f"{B:>4} {T:>5} {E:>4} {H:>5} | {_ms(was['ours_ms']):>9} {_ms(row['ours_ms']):>9} "
                     f"{row['ours_ms'] / was['ours_ms']:>7.2f} | {_ms(was.get('torch_ms')):>9} "
                     f"{_ms(row['torch_ms']):>9} | {_ratio(was.get('ratio')):>9} {_ratio(row['ratio']):>6}")
    if not common:
        return ["the earlier run timed none of these shapes: nothing to compare"]
    return lines


def targets_markdown(result):
    """The Markdown table of each shape against issue 34's target: ours, floor, torch, the ratios,
    whether the target is met, and whether a loop of NumPy calls could meet it on this machine
    (out of reach when floor / torch is already above the target)."""
    lines = ["| B, T, E, H | ours ms | floor ms | torch ms (flushed / as is) | ours / torch | floor / torch "
             "| target | met | reach |", "|---|---|---|---|---|---|---|---|---|"]
    for row in result["shapes"]:
        goal, ratio, floor = row.get("target"), row["ratio"], row["floor_ratio"]
        met = "-" if goal is None or ratio is None else ("**yes**" if ratio <= goal else "no")
        if goal is None or floor is None:
            reach = "-"
        else:
            reach = "out of reach: the floor alone is above it" if floor > goal else "within reach"
        torch = (f"{_ms(row['torch_ms'])} ({_ms(row['torch_flushed_ms'])} / {_ms(row['torch_unflushed_ms'])})"
                 if row["torch_ms"] is not None else "-")
        lines.append(f"| {shape_text(row['shape'], ', ')} | {_ms(row['ours_ms'])} | {_ms(row['floor_ms'])} | "
                     f"{torch} | {_ratio(ratio)} | {_ratio(floor)} | {_ratio(goal)} | {met} | {reach} |")
    return "\n".join(lines)


def draw(result, path):
    """A PNG at `path` (a file name the caller may write): per shape, ms of ours, the floor and
    PyTorch's two settings (log scale), and below, ours / PyTorch and floor / PyTorch with the
    target. Needs matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["shapes"]
    xs = range(len(rows))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6, 1.3 * len(rows) + 2), 7), dpi=80, sharex=True)
    series = [("ours_ms", "o", "ours (NumPy)"), ("floor_ms", "^", "NumPy floor"),
              ("torch_flushed_ms", "s", "torch.nn.LSTM, subnormals flushed"),
              ("torch_unflushed_ms", "x", "torch.nn.LSTM, as they come")]
    for key, style, label in series:
        if all(row[key] is not None for row in rows):
            top.plot(xs, [row[key] for row in rows], style, label=label)
    top.set_yscale("log")
    top.set_ylabel("ms, forward + backward")
    top.legend(fontsize=8)
    if all(row["ratio"] is not None for row in rows):
        bottom.plot(xs, [row["ratio"] for row in rows], "o", color="C2", label="ours / torch (faster setting)")
        bottom.plot(xs, [row["floor_ratio"] for row in rows], "^", color="grey", label="floor / torch")
        targets = [(x, row["target"]) for x, row in zip(xs, rows) if row["target"]]
        if targets:
            bottom.plot(*zip(*targets), "_", color="C3", markersize=18, mew=2, label="target")
        for x, row in zip(xs, rows):
            bottom.annotate(_ratio(row["ratio"]), (x, row["ratio"]), textcoords="offset points", xytext=(0, 6),
                            ha="center", fontsize=8)
        bottom.axhline(1.0, color="grey", lw=0.8, ls=":")
        bottom.legend(fontsize=8)
    bottom.set_ylabel("ratio to torch")
    bottom.set_xticks(list(xs))
    bottom.set_xticklabels([shape_text(row["shape"]) for row in rows], fontsize=8)
    bottom.set_xlabel("shape B, T, E, H")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.suptitle(f"LSTM layer forward + backward, float32 ({result['machine']['cpu']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": "numpy-lstm bench"})
    plt.close(fig)


if __name__ == "__main__":
    from .bench_cli import read_result
    from .errors import NumpyLSTMError
    if len(sys.argv) != 2:
        sys.exit("usage: python -m numpy_lstm.bench_report RESULT.json")
    try:
        print(targets_markdown(read_result(sys.argv[1], "RESULT.json")), flush=True)
    except NumpyLSTMError as e:
        sys.exit(f"numpy_lstm.bench_report: error: {e}")
    except BrokenPipeError:           # its reader is gone (| head): end quietly, as SIGPIPE would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
