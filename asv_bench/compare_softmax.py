"""softarray beside scipy.special and torch, and against the memory-stream bound.

Usage: python asv_bench/compare_softmax.py [--repeat N]

softarray keeps large freed outputs for reuse (softarray/_output_cache.py),
so its repeated calls skip the system's zeroing of fresh pages; SciPy's and
PyTorch's do not. Run with SOFTARRAY_OUTPUT_CACHE_MB=0 for the figures
without that cache.

Every library runs in this one process on the same float32 input (reduced
over the last axis), at one thread and at all threads, so the ratios do not
mix machine states the way comparing separate runs would. Each time is the
median over N repeats of a timeit loop sized by ``Timer.autorange``.

The stream bound is the time the kernel's memory traffic (TRAFFIC below) takes
at the bandwidth of ``np.copyto(out, x)`` (one read plus one write of ``x``)
with the same threads.
"""
import argparse
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy
import scipy.special
import softarray as sa
from benchmarks._common import limit_threads, median_seconds

try:
    import torch
except ImportError:
    torch = None

ALL_THREADS = os.cpu_count() or 1
THREADS = sorted({1, ALL_THREADS})
BIG = (4096, 4096)
ROWS = (100_000, 10)
CASES = [("softmax", BIG), ("softmax", ROWS), ("log_softmax", BIG), ("logsumexp", BIG)]
LIBRARIES = {"softarray": sa, "scipy": scipy.special}
if torch is not None:
    LIBRARIES["torch"] = torch

# Memory traffic in units of x's size. softmax and log_softmax read x twice
# (running max and rescaled sum, then the output pass) and write an output of
# x's size once; logsumexp needs only the first pass and writes one value per
# row, so it reads x once.
TRAFFIC = {"softmax": 3, "log_softmax": 3, "logsumexp": 1}

# The foundation issue's targets, all for softmax (the other functions' rows
# are for reading alongside): (label, whether a row of (function, shape,
# threads) is judged by it, checks); a check is (ratio, ">=" or "<=", threshold).
TARGETS = [
    (
        "softmax 4096x4096 f32 1 thread: >=3x scipy, >=1.5x torch",
        lambda function, shape, threads: function == "softmax" and shape == BIG and threads == 1,
        [("scipy/sa", ">=", 3.0), ("torch/sa", ">=", 1.5)],
    ),
    (
        "softmax 4096x4096 f32 all threads: within 1.5x of stream bound",
        lambda function, shape, threads: (
            function == "softmax" and shape == BIG and threads == ALL_THREADS
        ),
        [("sa/bound", "<=", 1.5)],
    ),
    (
        "softmax 100000x10: >=3x torch",
        lambda function, shape, threads: function == "softmax" and shape == ROWS,
        [("torch/sa", ">=", 3.0)],
    ),
]


def copy_bandwidth(x, n_threads, repeat):
    """Bytes per second of ``np.copyto`` (one read and one write of x): the
    better of one thread and x's rows split over n_threads, as a parallel
    kernel splits them (copyto releases the GIL). Taking the better keeps the
    thread pool's dispatch cost on small inputs out of the bound."""
    out = np.empty_like(x)
    seconds = median_seconds(lambda: np.copyto(out, x), repeat)
    if n_threads > 1:
        blocks = list(zip(np.array_split(out, n_threads), np.array_split(x, n_threads)))
        with ThreadPoolExecutor(n_threads) as pool:
            parallel = median_seconds(
                lambda: list(pool.map(lambda b: np.copyto(*b), blocks)), repeat
            )
        seconds = min(seconds, parallel)
    return 2 * x.nbytes / seconds


def measure(function, shape, n_threads, repeat):
    """Seconds per call of each library's ``function`` and the stream bound."""
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    times = {}
    with limit_threads(n_threads):
        for library, module in LIBRARIES.items():
            arg = torch.from_numpy(x) if library == "torch" else x
            fn = getattr(module, function)
            times[library] = median_seconds(lambda: fn(arg, -1), repeat)
        bandwidth = copy_bandwidth(x, n_threads, repeat)
    times["bound"] = TRAFFIC[function] * x.nbytes / bandwidth
    return times


def ratios(times):
    """Peer time over softarray's (speed-up) and softarray's over the bound."""
    sa_time = times["softarray"]
    torch_time = times.get("torch")
    return {
        "scipy/sa": times["scipy"] / sa_time,
        "torch/sa": None if torch_time is None else torch_time / sa_time,
        "sa/bound": sa_time / times["bound"],
    }


def verdict(checks, row_ratios):
    """'met', 'MISSED' or 'n/a' (torch checks without torch), with evidence."""
    judged, evidence = [], []
    for name, op, threshold in checks:
        value = row_ratios[name]
        if value is None:
            evidence.append(f"{name} n/a, torch not installed")
            continue
        ok = value >= threshold if op == ">=" else value <= threshold
        judged.append(ok)
        evidence.append(f"{name} {value:.2f}x, need {op} {threshold}: {'ok' if ok else 'no'}")
    status = "n/a" if not judged else "met" if all(judged) else "MISSED"
    return f"{status} ({'; '.join(evidence)})"


def fmt_ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"


def fmt_ratio(value):
    return "-" if value is None else f"{value:.2f}x"


def print_header(repeat):
    torch_version = torch.__version__ if torch is not None else "not installed"
    print(
        f"softarray {sa.__version__}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, torch {torch_version}; "
        f"{ALL_THREADS} CPUs; float32, last axis; median of {repeat} repeats"
    )
    print(
        "bound = traffic / copy bandwidth; copy bandwidth = 2 * nbytes / "
        "time(np.copyto(out, x)), better of 1 thread and the row's threads;\n"
        "traffic = 3 * nbytes for softmax and log_softmax (read twice, write "
        "once), 1 * nbytes for logsumexp (read once)\n"
    )
    print(
        f"{'function':<12} {'shape':<10} {'threads':>7} | {'softarray':>9} "
        f"{'scipy':>9} {'torch':>9} {'bound':>9} (ms) | "
        f"{'scipy/sa':>8} {'torch/sa':>8} {'sa/bound':>8}"
    )


def print_row(function, shape, n_threads, times):
    row_ratios = ratios(times)
    shape_text = "x".join(map(str, shape))
    print(
        f"{function:<12} {shape_text:<10} {n_threads:>7} | "
        f"{fmt_ms(times['softarray']):>9} {fmt_ms(times['scipy']):>9} "
        f"{fmt_ms(times.get('torch')):>9} {fmt_ms(times['bound']):>9}      | "
        f"{fmt_ratio(row_ratios['scipy/sa']):>8} {fmt_ratio(row_ratios['torch/sa']):>8} "
        f"{fmt_ratio(row_ratios['sa/bound']):>8}"
    )
    for label, applies, checks in TARGETS:
        if applies(function, shape, n_threads):
            print(f"    target {label}: {verdict(checks, row_ratios)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="samples per median")
    args = parser.parse_args()
    print_header(args.repeat)
    for n_threads in THREADS:
        for function, shape in CASES:
            times = measure(function, shape, n_threads, args.repeat)
            print_row(function, shape, n_threads, times)


if __name__ == "__main__":
    main()
