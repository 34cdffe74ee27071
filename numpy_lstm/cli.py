"""`numpy-lstm`: train, predict, evaluate and inspect from the command line.

Errors the user can fix (a bad path, a nonsense flag, a broken run directory, a full disk) print
one line and exit with status 2. Ctrl-C and SIGTERM stop `train` after the batch in hand, exit
with 130 and 143, and say how to resume. Output cut short by its reader (`| head`) ends the
command quietly with 141, as SIGPIPE would.
"""
import argparse
import dataclasses
import datetime
import os
import sys
import typing

from . import __version__
from .bench_cli import add_bench_parser, cmd_bench
from .config import MAX_TEST_LIMIT, RECIPES, SETTINGS, TrainConfig, recipe_config
from .engine import start_workers
from .errors import NumpyLSTMError
from .evaluation import evaluate
from .inspect_cli import add_inspect_parser, cmd_inspect
from .predict_cli import add_predict_parser, cmd_predict
from .prepare import load_test_set
from .run import fit
from .rundir import RunDir
from .stopping import Stopped

GROUPS = ("data", "model", "optimisation")


def add_train_parser(subparsers):
    p = subparsers.add_parser(
        "train", help="train a model (the tutorial's experiment) into a run directory",
        description="Train the Embedding -> LSTM -> Dense(sigmoid) sentiment model on IMDB reviews. "
                    "A recipe sets every default; any flag below overrides it.")
    p.add_argument("--recipe", metavar="{" + ",".join(RECIPES) + "}",
                   help="tutorial: the Keras tutorial as written; tuned (the default): our best recipe on the same "
                        "1,000 reviews; semi: those 1,000 plus the text, without labels, of the other 24,000 "
                        "training reviews; full: all 25,000 training reviews (see README)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an interrupted run from its last checkpoint (its own settings are used)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/<timestamp>)")
    p.add_argument("--quiet", action="store_true", help="print nothing (errors still go to standard error)")
    groups = {name: p.add_argument_group(name) for name in GROUPS}
    for field in dataclasses.fields(TrainConfig):
        if "group" in field.metadata:
            add_setting(groups[field.metadata["group"]], field)


def add_setting(group, field):
    """The flag --FIELD-NAME (and its aliases) for a TrainConfig field, from the field's metadata.

    Its default is None ("the recipe's value"); the ranges and choices are checked by
    TrainConfig.validate, so that a bad value is reported in one line like any other error.
    """
    meta = field.metadata
    flags = ["--" + field.name.replace("_", "-"), *meta["aliases"]]
    help = meta["help"]
    if meta["recipe_values"]:
        values = (RECIPES[name].get(field.name, field.default) for name in RECIPES)
        help += " [" + "; ".join(f"{name}: {value}" for name, value in zip(RECIPES, values)) + "]"
    kind = (typing.get_args(field.type) or (field.type,))[0]  # Optional[int] -> int
    if kind is bool:
        group.add_argument(*flags, dest=field.name, default=None, action=argparse.BooleanOptionalAction, help=help)
        return
    metavar = meta["metavar"] or "{" + ",".join(meta["choices"]) + "}"
    group.add_argument(*flags, dest=field.name, default=None, type=kind, metavar=metavar, help=help)


def cmd_train(args):
    overrides = {field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)
                 if field.name != "recipe"}
    if args.resume:
        given = [name for name, value in overrides.items() if value is not None]
        given += ["recipe"] * (args.recipe is not None) + ["out"] * (args.out is not None)
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise NumpyLSTMError(f"--resume continues with the run's own settings and folder: drop {flag}")
        if os.path.islink(os.path.normpath(args.resume)):
            raise NumpyLSTMError(f"--resume {args.resume} is a symbolic link, which numpy-lstm does not follow: "
                                 "give the run folder itself")
        return fit(None, args.resume, resume=True, quiet=args.quiet)
    try:
        config = recipe_config(args.recipe or "tuned", **overrides)
    except NumpyLSTMError as e:
        raise NumpyLSTMError(flag_named(str(e))) from None
    args.out = args.out or os.path.join("runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    return fit(config, args.out, quiet=args.quiet)


def flag_named(message):
    """A settings error as the command line says it: the setting it opens with as its flag
    ("per_class must be ..." -> "--per-class must be ..."); other messages as they are."""
    name, _, rest = message.partition(" ")
    return f"--{name.replace('_', '-')} {rest}" if name in SETTINGS and rest else message


def cmd_evaluate(args):
    model, vocab, config = RunDir(args.run_dir).load_model()
    if args.data:
        config.data = args.data
    if args.limit is not None and not 1 <= args.limit <= MAX_TEST_LIMIT:
        raise NumpyLSTMError(f"--limit must be a positive number of reviews, at most {MAX_TEST_LIMIT:,}, "
                             f"got {args.limit}")
    # A run trained with --test-limit 0 never read the test set: evaluating it reads all of it.
    config.test_limit = args.limit if args.limit is not None else (config.test_limit or None)
    test = load_test_set(config.validate(), vocab)
    if test is None:
        raise NumpyLSTMError("the data has no official test split (aclImdb/test)")
    loss, accuracy = evaluate(model, *test)
    print(f"test accuracy {accuracy:.4f}  loss {loss:.4f}  ({len(test[1])} reviews)")


class Parser(argparse.ArgumentParser):
    """argparse's parser, its errors one line like the others (argparse prints the usage first;
    for `train` that is 22 lines). Subcommands' parsers are of the same class.

    No abbreviations: argparse would take `--epoch 1` for `--epochs 1` silently, and a flag added
    later could change what an abbreviation means."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = Parser(
        prog="numpy-lstm", description="An LSTM sentiment classifier for IMDB reviews, by hand on NumPy.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_train_parser(subparsers)
    add_predict_parser(subparsers)
    p = subparsers.add_parser("evaluate", help="accuracy of a trained run on the official test set")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", metavar="PATH", help="dataset to evaluate on (default: the run's)")
    p.add_argument("--limit", type=int, metavar="N",
                   help="a seeded, balanced subset of N test reviews (default: the run's own --test-limit, so that "
                        "the number is its metrics.json's; all of them for a run that read none or all)")
    add_inspect_parser(subparsers)
    add_bench_parser(subparsers)
    parser.subcommands = subparsers.choices
    return parser


# Path arguments, by their dest and how the command line names them: an empty one is refused
# (argparse takes "" as given, and the commands would read it as "not given" and use a default)
PATHS = {"run_dir": "RUN_DIR", "resume": "--resume", "data": "--data", "out": "--out", "json": "--json",
         "plot": "--plot", "compare": "--compare"}


def check_paths(args):
    """Refuse, in one line, an empty path argument of the command (PATHS)."""
    for dest, name in PATHS.items():
        value = getattr(args, dest, None)
        if isinstance(value, str) and not value.strip():
            hint = ", or leave the flag out for runs/<timestamp>" if args.command == "train" and dest == "out" else ""
            raise NumpyLSTMError(f"{name} is empty: give a path{hint}")


def main(argv=None):
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    words = not any(arg.startswith("-") for arg in extra)
    # Texts after an option (predict RUN_DIR --json TEXT), which argparse leaves over
    if args.command == "predict" and words:
        args.texts += extra
    elif args.command == "inspect" and words and len(extra) == 1 and args.text is None:
        args.text = extra[0]
    elif extra:
        parser.subcommands[args.command].error("unrecognized arguments: " + " ".join(extra))
    try:
        check_paths(args)
        if args.command != "predict":  # a few reviews run on one core: no worker to fork
            start_workers()            # before any data is loaded: see start_workers
        if args.command == "train":
            cmd_train(args)
        elif args.command == "predict":
            cmd_predict(args)
        elif args.command == "inspect":
            cmd_inspect(args)
        elif args.command == "bench":
            cmd_bench(args)
        else:
            cmd_evaluate(args)
    except NumpyLSTMError as e:
        print(f"numpy-lstm: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader is gone: point stdout at /dev/null, or Python's flush at exit fails again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt as e:     # Stopped, or a Ctrl-C outside `train`
        what = str(e) if isinstance(e, Stopped) else "interrupted"
        if args.command == "train":
            where = args.resume or args.out or "RUN_DIR"
            what += f"; continue with: numpy-lstm train --resume {where}"
        print(f"\nnumpy-lstm: {what}", file=sys.stderr)
        return e.exit_status if isinstance(e, Stopped) else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
