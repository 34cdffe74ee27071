"""Results as data: the tables of docs/results.md and README.md's summary, rebuilt from recorded runs.

    python tools/results.py                   rewrite the generated tables from results/
    python tools/results.py --check           exit 1 if a generated table differs from what is written
    python tools/results.py --record RUNS     record the finished runs RUNS/<recipe>-<seed>/, then rewrite
    python tools/results.py --print RUN...    print the tables of any run directories; write nothing

A recorded run, results/runs/<recipe>-<seed>/, holds its run directory's small files: config.json,
metrics.json, history.csv (and a student's student/history.csv); never weights. results/yardsticks.json
holds the numbers no run here produces (papers, other code), each with its source, and
results/machine.json what recorded the runs. Only the text between `<!-- results:NAME -->` and
`<!-- /results:NAME -->` is rewritten: the prose around each table is written by hand. A recorded run
must be its recipe as the package defines it now, or --check fails: a changed recipe needs a rerun
(tools/rerun_results.sh), never an edit of the numbers.
"""
import argparse
import dataclasses
import json
import os
import pathlib
import platform
import re
import sys

import numpy as np

from numpy_lstm import RECIPES, NumpyLSTMError, TrainConfig, recipe_config
from numpy_lstm.fileio import write_text

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL_FILES = ("config.json", "metrics.json", "history.csv", "student/history.csv")
MAX_BYTES = 1 << 20                     # a run's small file is a few KB; refuse anything near this
RUN_NAME = re.compile(r"([a-z]+)-([0-9]+)\Z")
REPORTED_SEEDS = (0, 1, 2)              # each recipe is reported over seeds 0-2; other seeds are a check
IGNORED_SETTINGS = ("data",)            # where the data was read from changes no number
GRAMS = {1: "unigram", 2: "bigram", 3: "trigram"}


class Problem(Exception):
    """Bad input, explained in one line."""


# ---- reading ---------------------------------------------------------------------------------------

def read_small(path):
    """The text of `path`, a regular file (not a link) of at most MAX_BYTES."""
    try:
        info = os.lstat(path)
    except OSError as e:
        raise Problem(f"cannot read {path}: {e.strerror}") from None
    if not os.path.isfile(path) or os.path.islink(path):
        raise Problem(f"{path} is not a regular file")
    if info.st_size > MAX_BYTES:
        raise Problem(f"{path} is {info.st_size} bytes, more than a run's small file can be ({MAX_BYTES})")
    with open(path, encoding="utf-8") as f:
        return f.read()


def read_json(path):
    try:
        return json.loads(read_small(path))
    except (ValueError, RecursionError) as e:
        raise Problem(f"{path} is not valid JSON: {e}") from None


def load_run(path):
    """{"name", "config", "metrics"} of a run directory or a recorded run."""
    path = pathlib.Path(path)
    run = {"name": path.name, "config": read_json(path / "config.json"), "metrics": read_json(path / "metrics.json")}
    if not isinstance(run["config"], dict) or not isinstance(run["metrics"], dict):
        raise Problem(f"{path}: config.json and metrics.json must each hold a JSON object")
    for key in ("recipe", "seed", "val_accuracy", "test_accuracy", "test_n", "val_n", "train_seconds"):
        if key not in run["metrics"]:
            raise Problem(f"{path / 'metrics.json'} has no {key!r}")
    return run


def recorded_runs(root):
    """Every run under root/results/runs, in recipe order, then by seed."""
    runs_dir = root / "results" / "runs"
    names = sorted(os.listdir(runs_dir)) if runs_dir.is_dir() else []
    runs = [load_run(runs_dir / name) for name in names if RUN_NAME.match(name)]
    return sorted(runs, key=lambda r: (recipe_rank(r["metrics"]["recipe"]), r["metrics"]["seed"]))


def recipe_rank(recipe):
    return list(RECIPES).index(recipe) if recipe in RECIPES else len(RECIPES)


def not_its_recipe(run):
    """How a run's settings differ from its recipe's now ("" if they do not): 'key: run's (recipe's)'."""
    metrics = run["metrics"]
    if metrics["recipe"] not in RECIPES:
        return f"recipe {metrics['recipe']!r} is not one of the package's"
    try:
        expected = dataclasses.asdict(recipe_config(metrics["recipe"], seed=metrics["seed"]))
    except NumpyLSTMError as e:
        return str(e)
    actual = {**dataclasses.asdict(TrainConfig()), **run["config"]}      # an older run lacks newer settings
    differ = [f"{key}: {actual.get(key)!r} ({expected.get(key)!r})" for key in sorted({*expected, *actual})
              if key not in IGNORED_SETTINGS and actual.get(key) != expected.get(key)]
    return "; ".join(differ)


# ---- recording -------------------------------------------------------------------------------------

def record(runs_dir, root, note, say):
    """Copy each finished <recipe>-<seed> run's small files into root/results/runs/; returns how many
    runs were refused (not their recipe, or their name and metrics disagree)."""
    refused = 0
    try:
        names = sorted(os.listdir(runs_dir))
    except OSError as e:
        raise Problem(f"cannot read {runs_dir}: {e.strerror}") from None
    for name in names:
        path = pathlib.Path(runs_dir) / name
        match = RUN_NAME.match(name)
        if path.is_symlink() or not path.is_dir() or not match:
            say(f"skipped {path}: not a <recipe>-<seed> run directory")
            continue
        if not (path / "metrics.json").exists():
            say(f"skipped {path}: not finished (no metrics.json)")
            continue
        run = load_run(path)
        differ = not_its_recipe(run)
        if (run["metrics"]["recipe"], str(run["metrics"]["seed"])) != match.groups():
            differ = f"its metrics.json says recipe {run['metrics']['recipe']!r}, seed {run['metrics']['seed']}"
        if differ or not run["metrics"]["test_n"]:
            say(f"refused {path}: " + (differ or "it did not read the official test set"))
            refused += 1
            continue
        texts = {file: read_small(path / file) for file in SMALL_FILES if (path / file).exists()}
        for file, text in texts.items():
            write_text(root / "results" / "runs" / name / file, text)
        say(f"recorded {path}")
    machine = root / "results" / "machine.json"
    old_note = read_json(machine).get("note", "") if machine.exists() else ""
    write_text(machine, json.dumps(this_machine(old_note if note is None else note), indent=2) + "\n")
    return refused


def this_machine(note):
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "usable_cores": cores, "system": platform.system(), "python": platform.python_version(),
            "numpy": np.__version__, "note": note}


# ---- formatting ------------------------------------------------------------------------------------

def spread(values, digits):
    """'mean ± sd (min-max)' of values (the standard deviation over the seeds, ddof 0); one value alone."""
    a = np.asarray(values, dtype=np.float64)
    if len(a) == 1:
        return f"{a[0]:.{digits}f}"
    return f"{a.mean():.{digits}f} ± {a.std():.{digits}f} ({a.min():.{digits}f}-{a.max():.{digits}f})"


def count_range(values):
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def duration(seconds):
    """'mean (min-max)' of times in seconds, as seconds below 2 minutes, else as minutes."""
    unit, scale, digits = ("s", 1, 0) if np.mean(seconds) < 120 else ("min", 60, 1)
    low, high, mean = (f"{v / scale:.{digits}f}" for v in (min(seconds), max(seconds), np.mean(seconds)))
    return f"{mean} {unit}" + ("" if low == high else f" ({low}-{high})")


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def labeled_reviews(config):
    return 25000 if config.get("per_class") is None else 2 * config["per_class"]


def training_data(config):
    text = f"{labeled_reviews(config):,}"
    return text + (" + the other training reviews' text, unlabeled" if config.get("unlabeled") else "")


def groups(runs):
    """[(recipe, seeds text, runs)]: per recipe, seeds 0-2, then any other seeds as a check."""
    out = []
    for recipe in dict.fromkeys(r["metrics"]["recipe"] for r in runs):
        mine = [r for r in runs if r["metrics"]["recipe"] == recipe]
        reported = [r for r in mine if r["metrics"]["seed"] in REPORTED_SEEDS]
        others = [r for r in mine if r["metrics"]["seed"] not in REPORTED_SEEDS]
        for part, suffix in ((reported, ""), (others, " (a check: chosen on none)")):
            if part:
                out.append((recipe, ", ".join(str(r["metrics"]["seed"]) for r in part) + suffix, part))
    return out


def values(runs, key):
    return [r["metrics"][key] for r in runs]


def recipes_table(runs):
    rows = []
    for recipe, seeds, part in groups(runs):
        rows.append([f"`{recipe}`", training_data(part[0]["config"]), seeds,
                     f"{spread(values(part, 'val_accuracy'), 3)}, n = {count_range(values(part, 'val_n'))}",
                     f"**{spread(values(part, 'test_accuracy'), 4)}**, n = {count_range(values(part, 'test_n'))}",
                     duration(values(part, "train_seconds"))])
    return table(["recipe", "labeled training reviews", "seeds", "held-out accuracy", "official test accuracy",
                  "LSTM training"], rows)


def views_table(runs):
    rows = []
    for recipe, seeds, part in groups(runs):
        if not all("test_accuracy_lstm" in r["metrics"] for r in part):
            continue
        config = part[0]["config"]
        lstm = "its student LSTM alone" if config.get("student") else "its LSTM alone"
        grams = GRAMS.get(config.get("ngrams"), f"{config.get('ngrams')}-gram")
        parts = (("the model: both views mixed", ""), (lstm, "_lstm"), (f"its {grams} view alone", "_ngrams"))
        for label, suffix in parts:
            rows.append([f"`{recipe}`, seed{'s' * (len(part) > 1)} {seeds}" if not suffix else "", label,
                         spread(values(part, "val_accuracy" + suffix), 3),
                         spread(values(part, "test_accuracy" + suffix), 4)])
    return table(["recipe", "part", "held-out accuracy", "official test accuracy"], rows)


def epochs(metrics):
    def one(run, best):
        return f"{run}" + ("" if best is None else f" (best {best})")
    text = one(metrics.get("epochs_run"), metrics.get("best_epoch"))
    if "student_epochs_run" in metrics:
        text += "; student " + one(metrics["student_epochs_run"], metrics.get("student_best_epoch"))
    return text


def optional(metrics, key, digits):
    return "" if metrics.get(key) is None else f"{metrics[key]:.{digits}f}"


def runs_table(runs):
    rows = [[f"`{r['name']}`", f"{m['val_accuracy']:.3f} ({m['val_n']:,})", f"{m['test_accuracy']:.4f}",
             optional(m, "test_accuracy_lstm", 4), optional(m, "test_accuracy_ngrams", 4),
             optional(m, "unlabeled_positive_share", 3), epochs(m), duration([m["train_seconds"]])]
            for r in runs for m in [r["metrics"]]]
    return table(["run", "held-out (reviews)", "official test", "LSTM alone", "n-gram view alone",
                  "unlabeled called positive", "epochs (best)", "LSTM training"], rows)


def yardsticks_table(yardsticks):
    rows = [[y["name"], f"{y['labeled_reviews']:,}", f"{y['test_accuracy']}", y["detail"], y["source"]]
            for y in yardsticks]
    return table(["yardstick", "labeled training reviews", "official test accuracy", "how", "source"], rows)


def summary_table(runs, yardsticks):
    """The README's: one row per recipe (seeds 0-2) and per yardstick, by training data, then accuracy."""
    rows = []
    for recipe, seeds, part in groups(runs):
        if all(r["metrics"]["seed"] in REPORTED_SEEDS for r in part):
            test = values(part, "test_accuracy")
            rows.append((labeled_reviews(part[0]["config"]), float(np.mean(test)),
                         [f"`--recipe {recipe}`", training_data(part[0]["config"]), seeds, f"**{spread(test, 4)}**"]))
    for y in yardsticks:
        rows.append((y["labeled_reviews"], y["test_accuracy"],
                     [f"yardstick: {y['name']}", f"{y['labeled_reviews']:,}", "", f"{y['test_accuracy']}"]))
    rows.sort(key=lambda row: row[:2])
    return table(["model", "labeled training reviews", "seeds", "official test accuracy"], [row for *_, row in rows])


def machine_text(root, runs):
    path = root / "results" / "machine.json"
    if not path.exists():
        return "No runs are recorded.\n"
    m = read_json(path)
    recipes = len({r["metrics"]["recipe"] for r in runs})
    text = (f"{len(runs)} runs of {recipes} recipes, recorded on {m['cpu']} ({m['usable_cores']} usable cores, "
            f"{m['system']}), Python {m['python']}, NumPy {m['numpy']}.")
    return text + (f" {m['note']}" if m.get("note") else "") + "\n"


# ---- the documents ---------------------------------------------------------------------------------

def generated(root):
    """{file: {marker name: text}} for every table this tool writes."""
    runs, yardsticks = recorded_runs(root), read_json(root / "results" / "yardsticks.json")
    return {"docs/results.md": {"machine": machine_text(root, runs), "recipes": recipes_table(runs),
                                "views": views_table(runs), "runs": runs_table(runs),
                                "yardsticks": yardsticks_table(yardsticks)},
            "README.md": {"summary": summary_table(runs, yardsticks)}}


def rewritten(path, text, blocks):
    """`text` with each block's text between its markers."""
    for name, body in blocks.items():
        start, end = f"<!-- results:{name} -->\n", f"<!-- /results:{name} -->"
        i, j = text.find(start), text.find(end)
        if i < 0 or j < i:
            raise Problem(f"{path} has no {start.strip()} ... {end} markers")
        text = text[:i + len(start)] + body + text[j:]
    return text


def regenerate(root, check, say):
    """Rewrite the generated tables (or, with check, only say which differ); returns the files that differ."""
    stale = []
    for name, blocks in generated(root).items():
        path = root / name
        text = read_small(path)
        new = rewritten(path, text, blocks)
        if new != text:
            stale.append(name)
            if not check:
                write_text(path, new)
                say(f"rewrote the tables of {name}")
    for run in recorded_runs(root):
        differ = not_its_recipe(run)
        if differ:
            stale.append(f"results/runs/{run['name']}")
            say(f"results/runs/{run['name']} is not its recipe now ({differ}): rerun it")
    return stale


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table is out of date")
    parser.add_argument("--record", metavar="RUNS_DIR", help="record the finished runs RUNS_DIR/<recipe>-<seed>/")
    parser.add_argument("--note", help="with --record: a sentence on the machine (say, that it was shared); "
                                       "without it, the note recorded before is kept")
    parser.add_argument("--print", nargs="+", metavar="RUN_DIR", dest="print_runs",
                        help="print the tables of these run directories, recording nothing")
    parser.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)   # the tests' copy of the files
    args = parser.parse_args(argv)
    root = pathlib.Path(args.root)

    def say(line):
        print(line, file=sys.stderr)

    try:
        if args.print_runs:
            runs = [load_run(path) for path in args.print_runs]
            print(recipes_table(runs) + "\n" + views_table(runs) + "\n" + runs_table(runs), end="")
            return 0
        refused = record(args.record, root, args.note, say) if args.record else 0
        stale = regenerate(root, args.check, say)
    except Problem as e:
        say(f"results.py: {e}")
        return 2
    if args.check and stale:
        say("out of date: " + ", ".join(stale) + " (python tools/results.py rewrites the tables)")
        return 1
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
