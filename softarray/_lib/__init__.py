"""Compiled extension modules, built by meson from ``src/``.

Importing this package loads the OpenMP runtime that the kernels link to,
and asks it to wait passively (docs/threads.md, "A busy machine"): an OpenMP
thread that has no work sleeps at once instead of spinning. On a machine
kept busy by other processes a spinning thread takes the core that the
thread it waits for needs, and a 1 ms call took 10-50 ms; sleeping costs a
few tens of microseconds per parallel call, which the kernels' parallel
thresholds keep out of short calls.

Each module picks its code path when it is loaded (src/_simd.h): the
x86-64-v3 code where the CPU has it, unless ``SOFTARRAY_SIMD=baseline`` asks
for the baseline code; on CPUs with AVX-512, its float32 exponential loops
run AVX-512 kernels unless ``SOFTARRAY_SIMD=avx2`` asks for the AVX2 ones
(so that tests can compare the two on one machine). The value is checked here, before any module loads,
so that a misspelt request fails instead of silently testing the v3 code.
"""
import os

SIMD_CHOICES = ("auto", "baseline", "avx2")

_request = os.environ.get("SOFTARRAY_SIMD", "")
if _request not in ("",) + SIMD_CHOICES:
    raise ValueError(f"SOFTARRAY_SIMD must be one of {', '.join(SIMD_CHOICES)} (or unset), got {_request!r}")

# Variables with which a user chooses the wait policy: theirs wins.
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def _openmp_runtime_loaded():
    """Whether a shared OpenMP runtime (the system's libgomp or libomp, not
    a wheel's private copy) is in this process already; it read its
    environment when it was loaded."""
    try:
        with open("/proc/self/maps") as maps:
            return any(line.rstrip().endswith(("/libgomp.so.1", "/libomp.so", "/libomp.so.5"))
                       for line in maps)
    except OSError:
        return False


def _source_tree_error(error):
    """The ImportError for ``import softarray`` run from a checkout, where the
    uncompiled source folder shadows the installed build (as NumPy says
    when imported from its source directory)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkout = os.path.dirname(package)
    if not os.path.exists(os.path.join(checkout, "meson.build")):
        return error
    return ImportError(
        f"softarray's compiled kernels are missing: Python imported softarray from its "
        f"source folder {package}, which has none. Install it (`pip install .` in "
        f"{checkout}) and run Python from another directory, or keep the current directory "
        f"off the import path with `python -P` (`python -P -m softarray`, "
        f"`python -P -m pytest`)."
    )


def _import_runtime():
    try:
        from . import _runtime
    except ImportError as error:
        raise _source_tree_error(error) from error
    return _runtime


def _load_runtime():
    """Import the runtime module (and with it OpenMP) and say which wait
    policy OpenMP took."""
    if any(name in os.environ for name in _WAIT_VARIABLES):
        return _import_runtime(), "from the environment"
    if _openmp_runtime_loaded():
        return _import_runtime(), "OpenMP's default (its runtime was loaded before softarray)"
    # OpenMP reads the variable once, while it loads; the process's
    # environment is restored right after, so nothing else inherits it.
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        runtime = _import_runtime()
    finally:
        del os.environ["OMP_WAIT_POLICY"]
    return runtime, "passive"


_runtime, OPENMP_WAIT_POLICY = _load_runtime()
