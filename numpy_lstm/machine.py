"""The machine a benchmark runs on: CPU model, cores, memory, Python, NumPy and NumPy's BLAS.

A timing means little without the machine beside it: the BLAS that NumPy loaded (OpenBLAS, MKL or
BLIS) and its thread count, as threadpoolctl reports them, decide the matmuls; the load average at
the start and the end says whether other jobs shared the cores.
"""
import os
import platform

import numpy as np
from threadpoolctl import threadpool_info


def cpu_model():
    """The CPU's model name ("AMD EPYC 7B13", say), from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cpus():
    """The CPUs this process may run on (its affinity), else the CPU count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def available_memory():
    """Bytes of memory available to a new allocation (MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def load_average():
    """The 1, 5 and 15 minute load averages, or None where the system has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def describe():
    """The machine as a JSON-ready dict: cpu, cpus, usable_cpus, python, numpy, blas (one entry
    per BLAS library NumPy loaded: its name, version, threads, architecture), load_average."""
    blas = [{"library": lib.get("internal_api"), "version": lib.get("version"),
             "threads": lib.get("num_threads"), "architecture": lib.get("architecture"),
             "threading_layer": lib.get("threading_layer")}
            for lib in threadpool_info() if lib.get("user_api") == "blas"]
    return {"cpu": cpu_model(), "cpus": os.cpu_count(), "usable_cpus": usable_cpus(),
            "python": platform.python_version(), "numpy": np.__version__, "blas": blas,
            "load_average": load_average()}


def summary(machine):
    """Two lines of text about `machine` (a `describe` dict, perhaps read back from JSON)."""
    blas = ", ".join(f"{b.get('library')} {b.get('version') or ''} ({b.get('architecture') or '?'}, "
                     f"{b.get('threads')} thread{'s' * (b.get('threads') != 1)})".replace("  ", " ")
                     for b in machine.get("blas") or []) or "no BLAS found by threadpoolctl"
    load = machine.get("load_average")
    load_text = " ".join(f"{v:.1f}" for v in load) if load else "unknown"
    return [f"{machine.get('cpu')}, {machine.get('usable_cpus')} usable of {machine.get('cpus')} CPUs; "
            f"load average {load_text}",
            f"Python {machine.get('python')}, NumPy {machine.get('numpy')}, BLAS: {blas}"]
