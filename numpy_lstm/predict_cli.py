"""`numpy-lstm predict`: P(positive) and a label for each review, one output row per review.

The reviews are the arguments, else the lines of standard input, split at "\\n" (a "\\r" before
it dropped) and nowhere else: a form feed, U+2028 or \\x1c inside a review does not make two rows
of one, as str.splitlines would. Every line gets its row, a blank one too, so that row k is the
verdict on line k. A review with no word the model reads (blank, stopwords only, or only unknown
words the run skips) gets "-" for its probability and label (null in JSON), and a line on
standard error says how many did; when no review has such a word, the command fails as `inspect`
does.

The plain output escapes control characters, the Unicode line and paragraph separators and the
bidirectional controls (\\xNN, \\uNNNN), so that a review cannot move the terminal's cursor,
recolour it or split a row; --json escapes them as JSON does.
"""
import json
import re
import sys

from .errors import NumpyLSTMError
from .prepare import encode
from .rundir import RunDir
from .text import standard_input_text, user_text

NO_WORD = ("nothing to predict: no word of the review reaches the model (after the run's preprocessing: "
           "stopwords and unknown words dropped)")
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def add_predict_parser(subparsers):
    p = subparsers.add_parser("predict", help="print P(positive) and a label for each review text")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("texts", nargs="*", default=[], metavar="TEXT",
                   help="review texts (default: standard input, one review per line, each line a row)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per review and line: text, probability (of positive), label")


def read_texts(texts):
    """The reviews: the arguments, else the lines of standard input (split at "\\n" only)."""
    if texts:
        return [user_text(text) for text in texts]
    if sys.stdin.isatty():
        raise NumpyLSTMError("give review texts as arguments, or one review per line on standard input")
    text = standard_input_text()
    if not text.strip():
        raise NumpyLSTMError("standard input holds no review: give one per line, or as arguments")
    lines = text.split("\n")
    if lines[-1] == "":          # the newline that ends the last line
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def printable(text):
    """`text` with its control characters written as escapes: \\x1b for ESC, \\u2028 for U+2028."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


def cmd_predict(args):
    model, vocab, config = RunDir(args.run_dir).load_model()
    texts = read_texts(args.texts)
    ids = encode(texts, vocab, config)
    read = (ids != 0).any(axis=1)           # a row of padding alone: no word reaches the model
    if not read.any():
        raise NumpyLSTMError(NO_WORD if len(texts) == 1 else NO_WORD.replace("the review", "any review"))
    probabilities = model.predict(ids)
    for text, p, has_words in zip(texts, probabilities, read):
        label = ("positive" if p > 0.5 else "negative") if has_words else None
        if args.json:
            print(json.dumps({"text": text, "probability": float(p) if has_words else None, "label": label}))
        else:
            snippet = text if len(text) <= 60 else text[:57] + "..."
            print(f"{p:.4f}\t{label}\t" if has_words else "-\t-\t", printable(snippet), sep="")
    unread = int((~read).sum())
    if unread:
        print(f"numpy-lstm: {unread} of {len(texts)} reviews have no word the model reads (after the run's "
              f"preprocessing): their rows show - for the probability and label", file=sys.stderr)
