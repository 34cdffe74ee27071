"""Atomic file writes: a reader never sees a half-written file, a crash never destroys the old one.

A write the system refuses (a full disk, a read-only or forbidden folder) is a WriteError, one
line naming the file and the reason; the file it was to replace is left as it was.
"""
import contextlib
import os
import tempfile

from .errors import NumpyLSTMError


class WriteError(NumpyLSTMError):
    """`path` could not be written: `reason` is the system's word for why (its errno text)."""

    def __init__(self, path, error):
        self.path, self.reason = os.fspath(path), error.strerror or str(error)
        super().__init__(f"cannot write {self.path}: {self.reason}")


@contextlib.contextmanager
def refused_as_write_error(path):
    """Inside the block, an OSError is a WriteError about `path`."""
    try:
        yield
    except OSError as e:
        raise WriteError(path, e) from None


def make_dirs(path):
    """os.makedirs(path, exist_ok=True), refusals as a WriteError."""
    with refused_as_write_error(path):
        os.makedirs(path, exist_ok=True)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is renamed over `path`.

    The temporary file lives in the same directory so the final `os.replace` is a rename on
    one filesystem, which POSIX makes atomic. On any exception the temporary file is removed
    and `path` is left as it was; an OSError in the block (the caller writing the temporary
    file) or in these steps is raised as a WriteError about `path`.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    make_dirs(directory)
    with refused_as_write_error(path):
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
        os.close(fd)
        # mkstemp makes the file private (0600); give it the mode open() would, as the umask allows
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        try:
            yield tmp
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            raise


def write_text(path, text):
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def check_writable_folder(path, flag):
    """Before any long work: refuse, in one line, a file `path` whose folder does not exist or
    takes no new file (probed with a temporary file of ours, removed at once, as `atomic_path`
    would make it)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise NumpyLSTMError(f"{flag} {path}: the folder {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    except OSError as e:
        raise NumpyLSTMError(f"{flag} {path}: cannot write in {directory}: {e.strerror or e}") from None
    os.close(fd)
    os.remove(tmp)
