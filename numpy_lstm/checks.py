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
VOCAB_SIZE = Rule("at least 3 (ids 0 and 1 are reserved)", lambda v: _integer(v) and v >= 3)
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


def check(name, value, rule=None, choices=None, optional=False):
    """Raise a one-line NumpyLSTMError unless `value` is allowed for the setting `name`.

    rule: a `Rule`; choices: the values allowed; optional: None is allowed too. A float must
    also be finite.
    """
    if value is None and optional:
        return
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):   # ints are always finite
        raise NumpyLSTMError(f"{name} must be a finite number, got {value!r}")
    if rule is not None and not rule.allows(value):
        raise NumpyLSTMError(f"{name} must be {rule.words}, got {value!r}")
    if choices is not None and value not in choices:
        raise NumpyLSTMError(f"{name} must be {_either(choices)}, got {value!r}")
