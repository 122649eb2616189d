"""Calls on a busy machine: softarray's default thread count against one
thread, both under the same load from other processes.

Usage: python -P asv_bench/compare_load.py [--hogs N] [--repeat N] [--calls N]

The load is N other processes each spinning one core (default: as many as
this machine has cores), started before and stopped after the
measurements. Each sample times --calls back-to-back calls of one case at
the default thread count, then the same at ``sa.threads(1)``; the samples
alternate so both see the same machine state. A time is the median per
call over --repeat samples. ratio = default / one thread: at most 1.5 is
the target (docs/threads.md, "A busy machine"); far above it means the
default's OpenMP threads wait on each other while other processes hold the
cores. ``--hogs 0`` gives the quiet-machine figures.
"""
import argparse
import multiprocessing
import os
import statistics
import time

import numpy as np
import softarray as sa


def spin(stop):
    while not stop.is_set():
        pass


def make_cases():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 1000), dtype=np.float32)
    big = rng.standard_normal((2048, 4096), dtype=np.float32)
    logits = rng.standard_normal((16384, 100), dtype=np.float32)
    target = rng.integers(0, 100, 16384)
    xy = rng.random((5000, 2), dtype=np.float32) * 1000
    boxes = np.concatenate([xy, xy + rng.random((5000, 2), dtype=np.float32) * 50 + 1], axis=1)
    scores = rng.random(5000, dtype=np.float32)
    return {
        "softmax 1000x1000": lambda: sa.softmax(x),
        "softmax 2048x4096": lambda: sa.softmax(big),
        "log_softmax 1000x1000": lambda: sa.log_softmax(x),
        "cross_entropy 16384x100 +grad": lambda: sa.cross_entropy(logits, target, return_grad=True),
        "topk 1000x1000 k=8": lambda: sa.topk(x, 8),
        "box_iou 1000x1000": lambda: sa.box_iou(boxes[:1000], boxes[1000:2000]),
    }


def per_call(call, calls, n_threads):
    with sa.threads(n_threads):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        return (time.perf_counter() - start) / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hogs", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()

    cases = make_cases()
    for call in cases.values():
        call()                                     # warm up: pool, caches
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=spin, args=(stop,), daemon=True)
            for _ in range(args.hogs)]
    for hog in hogs:
        hog.start()
    time.sleep(1.0)
    try:
        default_threads = sa.get_num_threads()
        print(f"{args.hogs} spinning processes on {os.cpu_count()} cores; default threads "
              f"{default_threads}, OpenMP wait policy: {sa.show_config(False)['openmp_wait_policy']}")
        print(f"{'case':<32}{'default ms':>12}{'1 thread ms':>13}{'ratio':>8}")
        for name, call in cases.items():
            default, single = [], []
            for _ in range(args.repeat):
                default.append(per_call(call, args.calls, default_threads))
                single.append(per_call(call, args.calls, 1))
            d, s = statistics.median(default) * 1e3, statistics.median(single) * 1e3
            print(f"{name:<32}{d:>12.3f}{s:>13.3f}{d / s:>8.2f}", flush=True)
    finally:
        stop.set()
        for hog in hogs:
            hog.join()


if __name__ == "__main__":
    main()
