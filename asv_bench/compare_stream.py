"""The softmax family on inputs larger than the caches, beside NumPy moving the same bytes.

Usage: python asv_bench/compare_stream.py [--repeat N] [--threads 1 2] [--dtypes float32 float64]

Issue 22 asks the softmax family to run within 1.5x of the time to stream
its bytes where a row does not fit in cache. compare_shapes.py's ``stream``
column charges every byte at one rate, that of ``np.copyto`` of 256 MiB.
This script times NumPy moving each call's own bytes instead, on arrays of
the call's own shape in the same rotation of two inputs:

- ``copy``: ``np.copyto(out, x)`` into a preallocated array, the traffic of
  softmax and log_softmax (read x, write an output of its size);
- ``read``: ``np.max(x, axis=-1)``, a read of x with hardly any arithmetic,
  the traffic of logsumexp (read x, write one value a row).

It prints each call's time over its reference. The two rates differ on the
machines this project runs on: on the Intel Xeon of 2026-12-07 one core
reads 15 GB/s alone, while a copy of 256 MiB moves 25 GB/s counted as
read plus written (glibc's memcpy writes such a copy by non-temporal
stores; under about 128 MiB it does not, and moves 14 GB/s), so a read at
the copy's rate per byte is out of any code's reach at one thread.
NumPy runs on one thread: at two threads the references are one thread's.
Each figure is the median of ``--repeat`` calls (ms).
"""
import argparse
import statistics
import timeit

import numpy as np

import softarray as sa

SHAPES = [(1024, 32000), (64, 128000), (8, 1_000_000)]


def median_ms(fn, repeat):
    return statistics.median(timeit.repeat(fn, number=1, repeat=repeat)) * 1e3


def alternating(inputs):
    """A call that returns the next of the inputs, in turn."""
    state = {"i": 0}

    def take():
        state["i"] = (state["i"] + 1) % len(inputs)
        return inputs[state["i"]]
    return take


def rows_for(shape, dtype, threads, repeat, rng):
    xs = [rng.standard_normal(shape).astype(dtype) for _ in range(2)]
    out = np.empty_like(xs[0])
    take = alternating(xs)
    copy = median_ms(lambda: np.copyto(out, take()), repeat)
    read = median_ms(lambda: np.max(take(), axis=-1), repeat)
    name = f"{shape[0]}x{shape[1]} {np.dtype(dtype).name}"
    with sa.threads(threads):
        for call, reference, ref_ms in (("softmax", "copy", copy), ("log_softmax", "copy", copy),
                                        ("logsumexp", "read", read)):
            f = getattr(sa, call)
            t = median_ms(lambda: f(take(), axis=-1), repeat)
            print(f"| {call} | {name} | {threads} | {t:.3g} | {reference} {ref_ms:.3g} | {t / ref_ms:.2f} |",
                  flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| call | shape | threads | softarray ms | NumPy moving the same bytes, ms | ratio |")
    print("|---|---|---|---|---|---|")
    for threads in args.threads:
        for shape in SHAPES:
            for dtype in args.dtypes:
                rows_for(shape, dtype, threads, args.repeat, rng)


if __name__ == "__main__":
    main()
