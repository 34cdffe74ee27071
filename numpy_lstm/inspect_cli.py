"""`numpy-lstm inspect`: the page of one review (or of the test set's worst errors), and its JSON."""
import json
import os
import sys

from .data import load_imdb
from .errors import MissingSplitError, NumpyLSTMError
from .inspection import confident_errors, inspect_review
from .report import write_errors_report, write_report
from .rundir import RunDir
from .text import standard_input_text, user_text

# Each review of an errors page is inspected whole (attributions, occlusion): a page of more than
# this many would take long to make and be too long to read.
MAX_ERRORS = 1000
# The longest review inspect takes: its page holds every word, the longest IMDB review has about
# 14,000 characters, and a model reads at most 100,000 words (--maxlen)
MAX_REVIEW_CHARACTERS = 1_000_000


def add_inspect_parser(subparsers):
    p = subparsers.add_parser(
        "inspect", help="a page of what a trained model does with a review: gates, cell states, word attributions",
        description="Write RUN_DIR/inspect/report.html (or --out DIR), one self-contained page: the review as "
                    "the model read it, the running verdict, the gates, candidate, cell state and output of every "
                    "unit, word attributions (integrated gradients, occlusion) and the gradient through time, "
                    "drawn in the browser (hover for the numbers). With --errors N, a page of the N official "
                    "test reviews the model gets most confidently wrong instead.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("text", nargs="?", metavar="TEXT", help="the review (default: standard input)")
    p.add_argument("--out", metavar="DIR",
                   help="where to write the page (default: RUN_DIR/inspect); a file there by the page's name "
                        "that numpy-lstm did not write is left alone, and the command refuses")
    p.add_argument("--json", action="store_true",
                   help="also print the numbers as one JSON object (with the states of every unit: \"states\")")
    p.add_argument("--errors", type=int, metavar="N",
                   help="write DIR/errors.html: the N official test reviews the model gets most confidently wrong "
                        f"(at most {MAX_ERRORS:,})")
    p.add_argument("--data", metavar="PATH", help="dataset whose test reviews --errors reads (default: the run's)")


def cmd_inspect(args):
    if args.errors is not None and not 1 <= args.errors <= MAX_ERRORS:
        raise NumpyLSTMError(f"--errors must be a positive integer, at most {MAX_ERRORS:,}, got {args.errors}")
    out = args.out or os.path.join(args.run_dir, "inspect")
    check_folder(out)
    model, vocab, config = RunDir(args.run_dir).load_model()
    if args.errors is not None:
        if args.text is not None:
            raise NumpyLSTMError("give either a review text or --errors N, not both")
        return _errors(args, model, vocab, config, out)
    ins = inspect_review(model, vocab, config, _read_text(args.text))
    path = write_report(ins, out, args.run_dir)
    if args.json:
        print(json.dumps(ins.to_json()))
    else:
        label = "positive" if ins.probability > 0.5 else "negative"
        print(f"{ins.probability:.4f}\t{label}\t{path}")


def check_folder(out):
    """Refuse, before any work, an --out that is a link, a file, or lies under a file: the page
    goes inside it."""
    if os.path.islink(os.path.normpath(out)):
        raise NumpyLSTMError(f"--out {out} is a symbolic link, which numpy-lstm does not follow: choose another --out")
    path = os.path.abspath(out)
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        where = "exists" if path == os.path.abspath(out) else f"is under {path}, which exists"
        raise NumpyLSTMError(f"--out {out} {where} and is not a folder: choose another --out")


def _read_text(text):
    """The review: the argument, else all of standard input as one review (its lines joined by
    spaces: the cleaning splits words at spaces only)."""
    if text is None:
        if sys.stdin.isatty():
            raise NumpyLSTMError("give the review text as an argument, or on standard input")
        text = " ".join(standard_input_text().splitlines())
    else:
        text = user_text(text)
    if not text.strip():
        raise NumpyLSTMError("the review text is empty")
    if len(text) > MAX_REVIEW_CHARACTERS:
        raise NumpyLSTMError(f"the review has {len(text):,} characters; inspect reads at most "
                             f"{MAX_REVIEW_CHARACTERS:,} (its page shows every word)")
    return text


def _errors(args, model, vocab, config, out):
    try:
        test = load_imdb(args.data or config.data, split="test")
    except MissingSplitError:
        raise NumpyLSTMError("the data has no official test split (aclImdb/test)") from None
    indices, _ = confident_errors(model, test.texts, test.labels, vocab, config, args.errors)
    items = [(inspect_review(model, vocab, config, test.texts[i]), int(test.labels[i]), int(i)) for i in indices]
    path = write_errors_report(items, out, args.run_dir, len(test.texts))
    if args.json:
        print(json.dumps({"errors": [{**ins.to_json(), "label": label, "index": index}
                                     for ins, label, index in items]}))
    else:
        print(f"{len(items)} of {len(test.texts)} test reviews\t{path}")
