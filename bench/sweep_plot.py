"""Draw a `bench_lstm.py --sweep` result: time and ours / PyTorch against B, H and T.

    python bench/sweep_plot.py bench/sweep.json bench/sweep.png    # redraw a recorded run

Three columns of panels, one per varied size: B (T 500, E 32, H 100), H (the grid's shapes with
H above 100, each tick naming its whole shape, since B, T and E change with it) and T (B 64,
E 32, H 100). Top row: milliseconds of one forward + backward, ours (best core count) and
PyTorch (best thread count), log scale, and the one-process NumPy floor where the run has it
(`shapes.numpy_floor`); bottom row: their ratio, and the floor's to PyTorch.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def panels(shapes):
    """[(title, x label, [(x, tick label, row)])] for the B, H and T panels."""
    by_b = sorted((r["B"], str(r["B"]), r) for r in shapes if (r["T"], r["E"], r["H"]) == (500, 32, 100))
    by_h = sorted((r["H"], f"{r['H']}\n({r['B']},{r['T']},{r['E']})", r) for r in shapes
                  if r["H"] > 100 or (r["B"], r["T"], r["E"], r["H"]) == (64, 100, 32, 100))
    by_t = sorted((r["T"], str(r["T"]), r) for r in shapes if (r["B"], r["E"], r["H"]) == (64, 32, 100))
    return [("against batch B (T 500, E 32, H 100)", "B", by_b),
            ("against units H (ticks: H and (B, T, E))", "H", by_h),
            ("against steps T (B 64, E 32, H 100)", "T", by_t)]


def draw(result, path):
    shapes = [r for r in result["shapes"] if "ratio" in r]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), dpi=80)
    for col, (title, xlabel, points) in enumerate(panels(shapes)):
        top, bottom = axes[0, col], axes[1, col]
        if not points:
            top.set_visible(False)
            bottom.set_visible(False)
            continue
        xs = range(len(points))
        ticks = [label for _, label, _ in points]
        rows = [r for _, _, r in points]
        top.plot(xs, [r["ours_best_ms"] for r in rows], "o-", label="ours (NumPy), best of 1 / 2 cores")
        top.plot(xs, [r["torch_best_ms"] for r in rows], "s--", label="torch.nn.LSTM, best of 1 / 2 threads")
        if all("floor_ratio" in r for r in rows):
            top.plot(xs, [r["floor_ms"] for r in rows], "^:", color="grey",
                     label="floor: 2 matmuls + 2 tanh a step, one process")
            bottom.plot(xs, [r["floor_ratio"] for r in rows], "^:", color="grey", label="floor / PyTorch")
        top.set_yscale("log")
        top.set_title(title, fontsize=10)
        top.set_ylabel("ms, forward + backward")
        bottom.plot(xs, [r["ratio"] for r in rows], "o-", color="C2", label="ours / PyTorch")
        for x, r in zip(xs, rows):
            bottom.annotate(f"{r['ratio']:.2f}", (x, r["ratio"]), textcoords="offset points",
                            xytext=(0, 6), ha="center", fontsize=8)
        bottom.axhline(1.0, color="grey", lw=0.8, ls=":")
        bottom.set_ylabel("ours / PyTorch")
        bottom.set_xlabel(xlabel)
        highest = max(max(r["ratio"], r.get("floor_ratio", 0)) for r in rows)
        bottom.set_ylim(0, max(1.6, 1.15 * highest))
        for ax in (top, bottom):
            ax.set_xticks(list(xs))
            ax.set_xticklabels(ticks, fontsize=8)
            ax.grid(alpha=0.3)
    for row in axes:
        drawn = [ax for ax in row if ax.get_visible() and ax.get_legend_handles_labels()[0]]
        if drawn:
            drawn[0].legend(fontsize=8)
    fig.suptitle("LSTM layer forward + backward, float32 (bench_lstm.py --sweep); "
                 "ratio below 1: NumPy faster", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        draw(json.load(f), sys.argv[2])
