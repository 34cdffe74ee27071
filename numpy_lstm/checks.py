"""Range and type checks on settings, each refusal one line: the bottom of the library.

A `Rule` names the values a setting may take; `check` raises a one-line NumpyLSTMError for any
other value. The settings of a run (numpy_lstm/config.py), the model's sizes and rates
(numpy_lstm/model.py) and the data's selection (numpy_lstm/data.py) are checked with the same
rules, so that a bad value reads the same wherever it is caught.
"""
import dataclasses
from typing import Callable

import numpy as np

from .errors import NumpyLSTMError


def _integer(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _real(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Rule:
    """The values a setting may take: `allows(value)`, described by `words` ("must be <words>")."""

    words: str
    allows: Callable[[object], bool]


POSITIVE_INTEGER = Rule("a positive integer", lambda v: _integer(v) and v >= 1)


def at_most(limit, low=1, words="a positive integer"):
    """The integers from `low` to `limit`: a setting that sizes an array or a count of models
    is bounded, so that no number typed by mistake (or read from an edited file) allocates
    without end. The bounds are far above any run of this project (numpy_lstm/memory.py then
    checks that the settings together fit in the machine)."""
    return Rule(f"{words}, at most {limit:,}", lambda v: _integer(v) and low <= v <= limit)


VOCAB_SIZE = at_most(10_000_000, 3, "at least 3 (ids 0 and 1 are reserved)")
WIDTH = at_most(10_000)                 # embed_dim, units
BIGRAM_BUCKETS = at_most(1 << 24, 0, "0 (off) or a positive integer")
LAYERS = at_most(16)
POSITIVE = Rule("positive", lambda v: _real(v) and v > 0)
OFF_OR_POSITIVE = Rule("0 (off) or positive", lambda v: _real(v) and v >= 0)
COUNT = Rule("0 or a positive integer", lambda v: _integer(v) and v >= 0)
RATE = Rule("in [0, 1)", lambda v: _real(v) and 0 <= v < 1)
FRACTION = Rule("between 0 and 1", lambda v: _real(v) and 0 < v < 1)
GRAM_LENGTH = Rule("0 (off), 1, 2 or 3", lambda v: _integer(v) and 0 <= v <= 3)

# The choices of the model's settings
POOLINGS = ("last", "mean", "max")            # what the output layer reads of the LSTM's states
IMPLEMENTATIONS = ("fast", "reference")       # of the LSTM: the engine, or the plain equations


def _either(choices):
    return ", ".join(choices[:-1]) + " or " + choices[-1]


def check(name, value, rule=None, choices=None, optional=False, kind=None):
    """Raise a one-line NumpyLSTMError unless `value` is allowed for the setting `name`.

    rule: a `Rule`; choices: the values allowed; optional: None is allowed too; kind: bool or
    str, the type the value must have (a value from an edited file may be anything). A float
    must also be finite.
    """
    if value is None and optional:
        return
    problem = _problem(value, rule, choices, kind)
    if problem:
        shown = repr(value)     # a value from an edited file may be a number of 400 digits
        raise NumpyLSTMError(f"{name} must be {problem}, got {shown if len(shown) <= 40 else shown[:37] + '...'}")


def _problem(value, rule, choices, kind):
    """What `value` must be, or None when it is allowed."""
    if kind in (bool, str) and not isinstance(value, kind):
        return "true or false" if kind is bool else "a text"
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):   # ints are always finite
        return "a finite number"
    if rule is not None and not rule.allows(value):
        return rule.words
    if choices is not None and value not in choices:
        return _either(choices)
    return None
