"""checkpoint.npz: everything a run needs to continue exactly, written atomically, read checked.

Arrays: weights/i (the model's weights in `get_weights()` order), adam_m/i and adam_v/i (Adam's
moments, once it has taken a step), best/i (the best epoch's weights, with early stopping), and
`state`, a JSON text: epoch, history, early stopping's counters, Adam's iterations, the random
generator's state and, for a run stopped inside an epoch, its place there ("position").

A checkpoint is read only into a model built from its run's config: every array's header must
give that model's shape and dtype, and every number must be finite, before anything is read or
changed. A damaged checkpoint is one line, and the run's other files stay as they were.
"""
import contextlib
import functools
import zipfile

import numpy as np

from .errors import NumpyLSTMError
from .fileio import atomic_path
from .memory import file_limit
from .safe_files import MB, NpzFile, parse_json, to_json

GROUPS = ("weights", "adam_m", "adam_v", "best")
# What a run passes for its best epoch's weights once they are written: they stay in the
# checkpoint on disk, not in memory (a copy of the weights, 74 MB with a bigram table of 2^18
# buckets), are copied from the old checkpoint into the next one array by array, and are read
# back by `saved_best` if training ends past the best epoch.
ON_DISK = "on disk"


def save_checkpoint(path, model, optimizer, rng, state, best):
    """Write what `load_checkpoint` restores: weights, Adam's moments, RNG state, history.

    best: the best epoch's weights: None (no best epoch yet), a list of arrays (the weights to
    record, such as the model's own at an epoch that did best), or ON_DISK, those of the
    checkpoint now at path.
    """
    arrays = {f"weights/{i}": w for i, w in enumerate(model.weights)}
    opt = optimizer.state()
    if opt["m"] is not None:
        arrays.update({f"adam_m/{i}": a for i, a in enumerate(opt["m"])})
        arrays.update({f"adam_v/{i}": a for i, a in enumerate(opt["v"])})
    state = {**state, "iterations": opt["iterations"], "rng": rng.bit_generator.state}
    with contextlib.ExitStack() as stack:
        if best is ON_DISK:
            old = stack.enter_context(best_arrays(path, model))
            arrays.update({f"best/{i}": functools.partial(old.array, f"best/{i}") for i in range(len(model.weights))})
        elif best is not None:
            arrays.update({f"best/{i}": w for i, w in enumerate(best)})
        tmp = stack.enter_context(atomic_path(path))
        with open(tmp, "wb") as f:
            write_npz(f, {"state": np.array(to_json(state)), **arrays})


def write_npz(f, arrays):
    """np.savez's format (a zip of .npy members, stored), one array at a time: a value may be a
    function that returns the array, called only when its turn comes."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as npz:
        for name, value in arrays.items():
            with npz.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value() if callable(value) else value),
                                          allow_pickle=False)


def best_arrays(path, model):
    """The checkpoint at path opened, its best/i checked to be the model's shapes and dtypes."""
    npz = NpzFile(path, "checkpoint", file_limit())
    with contextlib.ExitStack() as stack:
        stack.enter_context(npz)
        for i, (w, name) in enumerate(zip(model.weights, model.weight_names)):
            npz.expect(f"best/{i}", w.shape, (w.dtype,), f"best of {name}")
        stack.pop_all()
    return npz


def saved_best(path, model):
    """The best epoch's weights, read from the checkpoint at path (where ON_DISK says they are)."""
    with best_arrays(path, model) as npz:
        return [npz.array(f"best/{i}") for i in range(len(model.weights))]


def load_checkpoint(path, model, optimizer, rng, epochs, batches):
    """Restore what save_checkpoint wrote into model, optimizer and rng; returns (state, best):
    best is ON_DISK when the checkpoint holds a best epoch's weights (checked, then let go), else None.

    epochs: the run's epochs; batches: its batches per epoch (a saved place must lie inside one).
    """
    try:
        with NpzFile(path, "checkpoint", file_limit()) as npz:
            state = parse_json(npz.text("state", 16 * MB), f"the state in {path}")
            check_state(state, path, epochs, batches)
            present = {group: group == "weights" or f"{group}/0" in npz.shapes for group in GROUPS}
            if present["adam_m"] != present["adam_v"]:
                raise damaged(path, "one of Adam's two moments without the other")
            arrays = {}
            for group in (g for g in GROUPS if present[g]):
                for i, (w, name) in enumerate(zip(model.weights, model.weight_names)):
                    npz.expect(f"{group}/{i}", w.shape, (w.dtype,), f"{group} of {name}")
                if group == "best":     # read only to check it (finite), an array at a time: it stays on disk
                    for i in range(len(model.weights)):
                        npz.array(f"best/{i}")
                    arrays["best"] = ON_DISK
                else:
                    arrays[group] = [npz.array(f"{group}/{i}") for i in range(len(model.weights))]
    except FileNotFoundError:
        raise NumpyLSTMError(f"no checkpoint at {path}: nothing to resume") from None
    model.set_weights(arrays["weights"])
    try:
        optimizer.load_state({"iterations": state["iterations"], "m": arrays.get("adam_m"), "v": arrays.get("adam_v")})
        rng.bit_generator.state = state["rng"]
    except (KeyError, TypeError, ValueError) as e:
        what = {KeyError: "a part is missing", TypeError: "a part has the wrong type"}.get(type(e), "a value is wrong")
        raise damaged(path, f"{what}: {str(e)[:80]}") from None
    return state, arrays.get("best")


def damaged(path, what):
    return NumpyLSTMError(f"{path} is not a readable checkpoint (its state is damaged: {what})")


def _integer(value, low=0, high=None):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value and (high is None or value <= high)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)   # finite: parse_json refuses the rest


def check_state(state, path, epochs, batches):
    """Refuse a checkpoint's state (parsed JSON) that is not one a run of `epochs` epochs of
    `batches` batches wrote."""
    if not isinstance(state, dict):
        raise damaged(path, "not a JSON object")
    epoch = state.get("epoch")
    history = state.get("history")
    place = state.get("position")
    checks = {
        "epoch": _integer(epoch, 0, epochs),
        "history": isinstance(history, list) and len(history) == epoch
        and all(isinstance(row, dict) and all(_number(v) for v in row.values()) for row in history),
        "best_val_loss": state.get("best_val_loss") is None or _number(state["best_val_loss"]),
        "best_epoch": state.get("best_epoch") is None or _integer(state["best_epoch"], 1, epoch),
        "wait": _integer(state.get("wait")),
        "stopped_early": isinstance(state.get("stopped_early"), bool),
        "train_seconds": _number(state.get("train_seconds")),
        "iterations": _integer(state.get("iterations")),
        "rng": isinstance(state.get("rng"), dict),
        "position": place is None or (
            isinstance(place, dict) and _integer(place.get("batch"), 1, batches - 1)
            and _integer(place.get("seen"), 1) and _integer(place.get("correct"), 0, place["seen"])
            and _number(place.get("loss_sum")) and isinstance(place.get("order_rng"), dict)),
    }
    wrong = [name for name, good in checks.items() if not good]
    if wrong:
        raise damaged(path, f"its {wrong[0]} is not what a run of {epochs} epochs of {batches} batches writes")
