"""Two Python threads calling large kernels at once, against one thread making
both calls in turn: the kernels release the GIL, so with OpenMP limited to one
thread the pair should take about half the wall time on two free cores.

Usage: python -P asv_bench/compare_concurrency.py [--repeat N]

Each case is one large call (float32):

* softmax, 4096 x 4096 (memory-bound: two threads share the memory bandwidth);
* cross_entropy, 65536 x 1000, with the gradient;
* nms, 50,000 boxes (the data of ``benchmarks/bench_boxes.py``), IoU 0.5.

OpenMP is limited to one thread (``threadpool_limits(1)``, which binds
softarray's kernels in every Python thread). "serial" is one worker making the call twice in turn; "parallel" is
two workers of the same pool making it once each, started together. The
samples alternate serial and parallel so both see the same machine state; a
time is the median of N samples. ratio = parallel / serial: 0.5 is perfect
scaling, 1.0 would mean the calls held the GIL (or fought over one core).
"""
import argparse
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import softarray as sa
from threadpoolctl import threadpool_limits

# ``python -P`` leaves the script's folder (asv_bench/) off sys.path, where
# the shared benchmark data lives; appended last, it cannot shadow softarray.
sys.path.append(os.path.dirname(os.path.abspath(__file__)))
from benchmarks.bench_boxes import make_boxes  # noqa: E402


def make_cases():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, 4096), dtype=np.float32)
    logits = rng.standard_normal((65536, 1000), dtype=np.float32)
    target = rng.integers(0, 1000, 65536)
    boxes, scores = make_boxes(50_000)
    boxes = boxes.astype(np.float32, copy=False)
    return {
        "softmax 4096x4096": lambda: sa.softmax(x),
        "cross_entropy 65536x1000 +grad": lambda: sa.cross_entropy(logits, target, return_grad=True),
        "nms 50000 boxes": lambda: sa.nms(boxes, scores, 0.5),
        # control: a NumPy ufunc, which releases the GIL too; if its ratio is
        # also far above 0.5 the machine lacks two free cores.
        "control: np.exp 4096x4096": lambda: np.exp(x),
    }


def one_thread(call, times):
    with sa.threads(1):
        for _ in range(times):
            call()


def serial_seconds(pool, call):
    start = time.perf_counter()
    pool.submit(one_thread, call, 2).result()
    return time.perf_counter() - start


def parallel_seconds(pool, call):
    barrier = threading.Barrier(3)

    def worker():
        barrier.wait()
        one_thread(call, 1)

    futures = [pool.submit(worker) for _ in range(2)]
    barrier.wait()                     # both workers are ready: start the clock
    start = time.perf_counter()
    for f in futures:
        f.result()
    return time.perf_counter() - start


def measure(pool, call, repeat):
    """Median seconds of the serial pair and of the parallel pair."""
    pool.submit(one_thread, call, 1).result()        # warm-up: first-call costs
    serial, parallel = [], []
    for _ in range(repeat):
        serial.append(serial_seconds(pool, call))
        parallel.append(parallel_seconds(pool, call))
    return statistics.median(serial), statistics.median(parallel)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="samples per median")
    args = parser.parse_args()
    print(
        f"softarray {sa.__version__}, numpy {np.__version__}; {os.cpu_count()} CPUs; "
        f"OpenMP 1 thread per call; median of {args.repeat} samples"
    )
    print(f"{'case':<32} {'serial (2 calls, 1 thread)':>27} {'parallel (2 threads)':>21} {'ratio':>6}")
    with threadpool_limits(1), ThreadPoolExecutor(2) as pool:
        for name, call in make_cases().items():
            serial, parallel = measure(pool, call, args.repeat)
            print(f"{name:<32} {serial * 1e3:>24.1f} ms {parallel * 1e3:>18.1f} ms "
                  f"{parallel / serial:>6.2f}")


if __name__ == "__main__":
    main()
