"""`numpy-lstm`: train, predict and evaluate from the command line.

Errors the user can fix (a bad path, a nonsense flag, a broken run directory) print one line
and exit with status 2; Ctrl-C exits with 130 and says how to resume.
"""
import argparse
import dataclasses
import datetime
import os
import sys

from .engine import start_workers
from .errors import NumpyLSTMError
from .train import RECIPES, RunDir, TrainConfig, encode, evaluate, fit, load_test_set, recipe_config

DEFAULTS = TrainConfig()


def add_train_parser(subparsers):
    p = subparsers.add_parser(
        "train", help="train a model (the tutorial's experiment) into a run directory",
        description="Train the Embedding -> LSTM -> Dense(sigmoid) sentiment model on IMDB reviews. "
                    "A recipe sets every default; any flag below overrides it.")
    p.add_argument("--recipe", choices=sorted(RECIPES), default="tuned",
                   help="tutorial: the Keras tutorial as written; tuned: our best recipe on the same "
                        "1,000 reviews; full: all 25,000 training reviews (see README)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an interrupted run from its last checkpoint (its own settings are used)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/<timestamp>)")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    data = p.add_argument_group("data")
    data.add_argument("--data", metavar="PATH",
                      help="aclImdb folder or .tar.gz (default: $NUMPY_LSTM_DATA, then the download cache)")
    data.add_argument("--test-limit", type=int, metavar="N",
                      help="evaluate on a seeded, balanced subset of N official test reviews (default: all)")
    add_setting(data, "--per-class", type=int, metavar="N", help="first N positive and N negative training reviews")
    add_setting(data, "--val-split", type=float, metavar="F", help="held-out fraction")
    add_setting(data, "--keep-negations", action=argparse.BooleanOptionalAction,
                help="keep not/no/nor and the n't stems, which the stopword list removes")
    add_setting(data, "--keep-stopwords", action=argparse.BooleanOptionalAction,
                help="keep every stopword (the tutorial removes NLTK's English stopwords)")
    add_setting(data, "--vocab-size", type=int, metavar="N",
                help="vocabulary size, counting the padding and out-of-vocabulary ids")
    add_setting(data, "--min-films", type=int, metavar="N",
                help="keep only vocabulary words found in reviews of at least N films")
    add_setting(data, "--maxlen", type=int, metavar="N", help="pad or truncate reviews to N tokens")
    add_setting(data, "--oov", choices=("keep", "skip"),
                help="words outside the vocabulary: keep them as one unknown-word id, or skip them")
    model = p.add_argument_group("model")
    add_setting(model, "--embed-dim", type=int, metavar="N", help="embedding width")
    add_setting(model, "--units", type=int, metavar="N", help="LSTM units")
    add_setting(model, "--nb-init", type=float, metavar="SCALE",
                help="start embedding column 0 at SCALE times each word's naive Bayes log-count ratio "
                     "in the training reviews (0: off)")
    add_setting(model, "--ppmi-init", type=float, metavar="STD",
                help="start the embedding columns (all but --nb-init's) at word vectors learned without labels from "
                     "the training reviews (PPMI + SVD of word co-occurrences), scaled to this "
                     "standard deviation (0: off)")
    add_setting(model, "--mask", action=argparse.BooleanOptionalAction,
                help="mask padding and bucket batches by length")
    add_setting(model, "--dropout", type=float, metavar="RATE", help="LSTM input dropout")
    add_setting(model, "--recurrent-dropout", type=float, metavar="RATE",
                help="dropout on the previous state where the LSTM's recurrent matmul reads it")
    add_setting(model, "--word-dropout", type=float, metavar="RATE",
                help="drop whole tokens (their embedding vectors) during training")
    add_setting(model, "--pooling", choices=("last", "mean", "max"),
                help="what the output layer reads: the last LSTM state, or the mean / max over time")
    add_setting(model, "--layers", dest="num_layers", type=int, metavar="N", help="stacked LSTMs")
    add_setting(model, "--bidirectional", action=argparse.BooleanOptionalAction,
                help="read each review forward and backward")
    add_setting(model, "--implementation", choices=("fast", "reference"), help="LSTM code: the engine, or reference.py")
    opt = p.add_argument_group("optimisation")
    add_setting(opt, "--epochs", type=int, metavar="N", help="epochs")
    add_setting(opt, "--batch-size", type=int, metavar="N", help="batch size")
    add_setting(opt, "--lr", type=float, metavar="LR", help="Adam learning rate")
    add_setting(opt, "--lr-schedule", choices=("constant", "linear"),
                help="constant, or linear warm-up over the first epoch and decay to 0 at the last")
    add_setting(opt, "--clipnorm", type=float, metavar="NORM", help="clip gradients to this global norm")
    add_setting(opt, "--patience", type=int, metavar="N",
                help="stop after N epochs without a better held-out loss and keep the best epoch")
    add_setting(opt, "--ensemble", type=int, metavar="N",
                help="train N models, each from its own initialisation and batch order, and average "
                     "their logits (N times the training time)")
    add_setting(opt, "--seed", type=int, metavar="N", help="seed of the split, the initialisation and the shuffling")


def add_setting(group, flag, help, dest=None, **kwargs):
    """A flag overriding a recipe setting; its help ends with each recipe's value."""
    dest = dest or flag[2:].replace("-", "_")
    values = "; ".join(f"{name}: {RECIPES[name].get(dest, getattr(DEFAULTS, dest))}" for name in RECIPES)
    group.add_argument(flag, dest=dest, default=None, help=f"{help} [{values}]", **kwargs)


def cmd_train(args):
    if args.resume:
        return fit(None, args.resume, resume=True, quiet=args.quiet)
    overrides = {field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)
                 if field.name != "recipe"}
    config = recipe_config(args.recipe, **overrides)
    args.out = args.out or os.path.join("runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    return fit(config, args.out, quiet=args.quiet)


def read_texts(texts):
    if texts:
        return texts
    if sys.stdin.isatty():
        raise NumpyLSTMError("give review texts as arguments, or one review per line on standard input")
    return [line.rstrip("\n") for line in sys.stdin if line.strip()]


def cmd_predict(args):
    model, vocab, config = RunDir(args.run_dir).load_model()
    texts = read_texts(args.texts)
    probabilities = model.predict(encode(texts, vocab, config))
    for text, p in zip(texts, probabilities):
        label = "positive" if p > 0.5 else "negative"
        snippet = text if len(text) <= 60 else text[:57] + "..."
        print(f"{p:.4f}\t{label}\t{snippet}")


def cmd_evaluate(args):
    model, vocab, config = RunDir(args.run_dir).load_model()
    if args.data:
        config.data = args.data
    if args.limit is not None:
        config.test_limit = args.limit
    test = load_test_set(config.validate(), vocab)
    if test is None:
        raise NumpyLSTMError("the data has no official test split (aclImdb/test)")
    loss, accuracy = evaluate(model, *test)
    print(f"test accuracy {accuracy:.4f}  loss {loss:.4f}  ({len(test[1])} reviews)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="numpy-lstm", description="An LSTM sentiment classifier for IMDB reviews, by hand on NumPy.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_train_parser(subparsers)
    p = subparsers.add_parser("predict", help="print P(positive) and a label for each review text")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="review texts (default: lines on standard input)")
    p = subparsers.add_parser("evaluate", help="accuracy of a trained run on the official test set")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", metavar="PATH", help="dataset to evaluate on (default: the run's)")
    p.add_argument("--limit", type=int, metavar="N", help="a seeded, balanced subset of N test reviews")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        start_workers()                # before any data is loaded: see start_workers
        if args.command == "train":
            cmd_train(args)
        elif args.command == "predict":
            cmd_predict(args)
        else:
            cmd_evaluate(args)
    except NumpyLSTMError as e:
        print(f"numpy-lstm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = getattr(args, "resume", None) or getattr(args, "out", None) or "RUN_DIR"
        print(f"\nnumpy-lstm: interrupted; continue with: numpy-lstm train --resume {where}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
