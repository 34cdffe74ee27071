"""Reading the files numpy-lstm keeps, each checked before its contents size anything.

Every file read here (config.json, vocab.json, the run marker, model.npz, checkpoint.npz,
ngrams.npz, the parse cache, review files) must be a regular file: a FIFO or a device put in its
place would hang the read or never end it, so it is opened without waiting (O_NONBLOCK) and its
type checked on the open descriptor. Its size is bounded by what a file of its kind can be.

JSON is strict: NaN and Infinity are refused, a number too large for a float (1e400) too, and a
nesting deeper than the parser's recursion limit is an error, not a crash. An .npz is a zip of
.npy arrays; each array's header (a few bytes: dtype and shape) is read and checked against the
caller's expectations before any array is read, so a header claiming 10^11 elements costs nothing.

Reading follows a symbolic link (a user may keep a run's files elsewhere): what is read is
checked all the same. Writing never does (numpy_lstm/fileio.py).
"""
import json
import math
import os
import stat
import zipfile
import zlib

import numpy as np

from .errors import NumpyLSTMError

KB, MB = 1 << 10, 1 << 20


def open_regular(path, what):
    """`path` opened for binary reading, refused unless it is a regular file.

    what: the kind of file, for the message ("vocabulary file"). FileNotFoundError passes through
    (the callers say what a missing file means); any other refusal is one line.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as e:
        raise NumpyLSTMError(f"cannot read the {what} {path}: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NumpyLSTMError(f"{path} is not a regular file (a FIFO, a device or a folder?), "
                             f"so it cannot be a {what}")
    return os.fdopen(fd, "rb")


def too_large(path, what, size, limit):
    return NumpyLSTMError(f"{path} is {size:,} bytes, more than a {what} can be ({limit:,}): not one of ours")


def read_bytes(path, what, limit):
    """The bytes of the regular file `path`, at most `limit` of them (else one line)."""
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise too_large(path, what, size, limit)
        try:
            # A read of n bytes takes a buffer of n first: sized by the length just checked, never
            # by the limit (4 GB for the parse cache, which would fail where memory is capped)
            data = f.read(size + 1)
            while size < len(data) <= limit:    # it grew while being read: the rest, by megabytes
                more = f.read(min(MB, limit + 1 - len(data)))
                if not more:
                    break
                data += more
        except OSError as e:
            raise NumpyLSTMError(f"cannot read the {what} {path}: {e.strerror}") from None
    if len(data) > limit:
        raise too_large(path, what, len(data), limit)
    return data


def _refuse_constant(name):
    raise ValueError(f"{name} is not a number strict JSON allows")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a number")
    return value


def _unique_keys(pairs):
    """A JSON object as a dict, refusing a key given twice (json.loads keeps the last silently)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"the key {twice!r} is given twice")
    return result


def parse_json(text, where):
    """The value of the strict JSON `text`; `where` names it in the one-line error."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                          object_pairs_hook=_unique_keys)
    except RecursionError:
        raise NumpyLSTMError(f"{where} is not a file of ours: its JSON is nested too deep") from None
    except ValueError as e:              # JSONDecodeError, an integer of over 4300 digits
        raise NumpyLSTMError(f"{where} is not valid JSON: {e}") from None


def read_json(path, what, limit):
    """The value of the strict JSON file `path` (a `what` of at most `limit` bytes)."""
    data = read_bytes(path, what, limit)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NumpyLSTMError(f"{path} is not a {what}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return parse_json(text, f"{path} ({what})")


def to_json(value, **options):
    """json.dumps of `value` as strict JSON: a float that is not finite (a metric of no reviews)
    is written as null, the one value JSON has for "no number"."""
    return json.dumps(_finite(value), allow_nan=False, **options)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class NpzFile:
    """An .npz read member by member, each array's header checked before the array is read.

    path: the file; what: its kind, for messages; limit: the most bytes its arrays may declare in
    all. `shapes` maps each array's name to (shape, dtype) from the headers alone. Use as a
    context manager; a damaged zip or header is one line.
    """

    MAX_MEMBERS = 10_000

    def __init__(self, path, what, limit):
        self.path, self.what = os.fspath(path), what
        self._file = open_regular(self.path, what)
        try:
            self._zip = zipfile.ZipFile(self._file)
            self.shapes = self._read_headers(limit)
        except BaseException as e:
            self._file.close()
            if isinstance(e, (NumpyLSTMError, zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError,
                              zlib.error)):
                raise self.damaged(e) from None
            raise

    def damaged(self, e):
        reason = str(e) if isinstance(e, NumpyLSTMError) else type(e).__name__
        return NumpyLSTMError(f"{self.path} is not a readable {self.what} (truncated or corrupt?): {reason}")

    def _read_headers(self, limit):
        infos = self._zip.infolist()
        if len(infos) > self.MAX_MEMBERS:
            raise NumpyLSTMError(f"{len(infos)} members")
        shapes, total = {}, 0
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise NumpyLSTMError(f"a member {info.filename!r} that is not an array")
            with self._zip.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    raise NumpyLSTMError(f"array {info.filename} in .npy format {version}")
            if dtype.hasobject:
                raise NumpyLSTMError(f"array {info.filename} holds Python objects")
            nbytes = math.prod(shape) * dtype.itemsize
            total += nbytes
            if nbytes > info.file_size or total > limit:
                raise NumpyLSTMError(f"array {info.filename} declares {shape} {dtype}, "
                                     f"more than the file holds or a {self.what} can be")
            shapes[info.filename[:-4]] = (tuple(shape), dtype)
        return shapes

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._zip.close()
        self._file.close()

    def expect(self, name, shape, dtypes, meaning=""):
        """Refuse unless the array `name` is there with `shape` and a dtype among `dtypes`;
        meaning: what the array is, for the message ("the weight lstm/kernel")."""
        called = f"{name} ({meaning})" if meaning else name
        if name not in self.shapes:
            raise NumpyLSTMError(f"{self.path} lacks the array {called} (not a {self.what} of this run?)")
        found, dtype = self.shapes[name]
        if found != tuple(shape) or dtype not in [np.dtype(d) for d in dtypes]:
            raise NumpyLSTMError(f"{self.path}: array {called} is {dtype} {found}, expected "
                                 f"{' or '.join(np.dtype(d).name for d in dtypes)} {tuple(shape)}")

    def array(self, name):
        """The array `name`, read after its header was checked; a float array must be finite."""
        try:
            with self._zip.open(name + ".npy") as member:
                value = np.lib.format.read_array(member, allow_pickle=False)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, zlib.error) as e:
            raise self.damaged(e) from None
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            raise NumpyLSTMError(f"{self.path}: array {name} holds numbers that are not finite (NaN or inf)")
        return value

    def text(self, name, limit):
        """The string of the 0-d text array `name` (a JSON document inside the .npz), at most
        `limit` characters."""
        if name not in self.shapes:
            raise NumpyLSTMError(f"{self.path} lacks its {name} (not a {self.what})")
        shape, dtype = self.shapes[name]
        if shape != () or dtype.kind != "U" or dtype.itemsize // 4 > limit:
            raise NumpyLSTMError(f"{self.path}: its {name} is {dtype} {shape}, not a text of at most {limit:,} "
                                 f"characters (not a {self.what})")
        return str(self.array(name))
