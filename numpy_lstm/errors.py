"""The one exception type users see: a message that fits on one line."""


class NumpyLSTMError(Exception):
    """Bad input or a broken file, explained in one line; the CLI prints it and exits non-zero."""


class MissingSplitError(NumpyLSTMError):
    """The dataset has no reviews for the requested split (say, a copy without aclImdb/test)."""
