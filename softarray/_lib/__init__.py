"""Compiled extension modules, built by meson from ``src/``.

Importing this package loads the OpenMP runtime that the kernels link to,
and asks it to spin only briefly (docs/threads.md, "A busy machine"): an
OpenMP thread that has no work spins for about 20 us (GNU libgomp's
GOMP_SPINCOUNT=1000; LLVM's libomp sleeps at once, KMP_BLOCKTIME=0), then
sleeps. On a machine kept busy by other processes a long-spinning thread
takes the core that the thread it waits for needs, and a 1 ms call took
10-50 ms at libgomp's default spin; sleeping at once instead costs a
wake-up of about 70 us per parallel region on a KVM guest, which made
every two-thread call under a millisecond slower than one thread. The
brief spin keeps the regions of one call (and of calls back to back)
awake and bounds what a waiting thread takes from a busy core.

Each module picks its code path when it is loaded (src/_simd.h): the
x86-64-v3 code where the CPU has it, unless ``SOFTARRAY_SIMD=baseline`` asks
for the baseline code; on CPUs with AVX-512, its exponential loops
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
# softarray's choice otherwise: libgomp spins 1000 pause loops (about 20 us
# measured on a Zen 4 KVM guest) before sleeping; libomp sleeps at once.
_BRIEF_SPIN = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "0"}
BRIEF_SPIN_POLICY = "brief spin (GOMP_SPINCOUNT=1000, KMP_BLOCKTIME=0)"


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
    # OpenMP reads the variables once, while it loads; the process's
    # environment is restored right after, so nothing else inherits them.
    os.environ.update(_BRIEF_SPIN)
    try:
        runtime = _import_runtime()
    finally:
        for name in _BRIEF_SPIN:
            del os.environ[name]
    return runtime, BRIEF_SPIN_POLICY


_runtime, OPENMP_WAIT_POLICY = _load_runtime()
