"""Subnormal numbers flushed to zero while the LSTM's loops run (x86-64 Linux; elsewhere a no-op).

Backprop through a long sequence shrinks dh and dc by a roughly constant factor per step, so at
the tutorial's 500 steps the gradients of the early steps pass through the subnormal range (below
1.2e-38 in float32) on their way to zero. Many x86 CPUs take a slow microcode path for arithmetic
on subnormals, which makes a whole backward pass several times slower (docs/engine.md,
"Subnormals flushed to zero"). Two bits of the SSE control register MXCSR avoid it: FTZ (a
result that would be subnormal is 0) and DAZ (a subnormal input reads as 0). The price is every
value below 1.2e-38 (float32) or 2.2e-308 (float64), some 30 orders of magnitude below anything
that moves a weight; PyTorch offers the same switch as `torch.set_flush_denormal`.

MXCSR belongs to the thread, and `flush_subnormals()` sets the bits only for the duration of a
block, restoring the register as it found it: code outside the LSTM's loops sees no change. It is
reached through glibc's fegetenv / fesetenv, whose x86-64 `fenv_t` ends with MXCSR.
"""
import contextlib
import ctypes
import ctypes.util
import platform
import sys

_FTZ_DAZ = 0x8000 | 0x0040      # MXCSR bit 15 (flush to zero) and bit 6 (denormals are zero)
_FENV_SIZE, _MXCSR_OFFSET = 32, 28


def _find_fenv():
    """(fegetenv, fesetenv) of the C library, or (None, None) where MXCSR cannot be reached."""
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
        return None, None
    try:
        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        get, set_ = libm.fegetenv, libm.fesetenv
    except (OSError, AttributeError):
        return None, None
    get.argtypes = set_.argtypes = [ctypes.c_char_p]
    get.restype = set_.restype = ctypes.c_int
    env = ctypes.create_string_buffer(_FENV_SIZE)
    # The exception mask bits 7-12 of MXCSR are all set by default (and NumPy keeps them so):
    # if the word at the offset does not look like that, the layout is not the one assumed.
    if get(env) != 0 or _mxcsr(env) & 0x1F80 != 0x1F80:
        return None, None
    return get, set_


def _mxcsr(env):
    return int.from_bytes(env.raw[_MXCSR_OFFSET:_MXCSR_OFFSET + 4], "little")


_fegetenv, _fesetenv = _find_fenv()


def available():
    """True when flush_subnormals() really sets FTZ and DAZ here."""
    return _fegetenv is not None


@contextlib.contextmanager
def flush_subnormals():
    """Inside the block, this thread's float arithmetic treats subnormals as zero."""
    if _fegetenv is None:
        yield
        return
    saved = ctypes.create_string_buffer(_FENV_SIZE)
    _fegetenv(saved)
    flushing = ctypes.create_string_buffer(saved.raw, _FENV_SIZE)
    flushing[_MXCSR_OFFSET:_MXCSR_OFFSET + 4] = (_mxcsr(saved) | _FTZ_DAZ).to_bytes(4, "little")
    _fesetenv(flushing)
    try:
        yield
    finally:
        _fesetenv(saved)
