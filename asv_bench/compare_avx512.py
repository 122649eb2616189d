"""AVX2 vs AVX-512 exponential loops, float32 and float64, one thread.

Runs each case in two subprocesses, SOFTARRAY_SIMD=avx2 and the default
(AVX-512 where the CPU has it), alternating, and prints the medians (the
float64 cases on smaller arrays, 1024x4096 and 16384x1000):

    python asv_bench/compare_avx512.py [rounds]
"""
import os
import statistics
import subprocess
import sys

CHILD = r"""
import time, numpy as np, softarray as sa
sa.set_num_threads(1)
rng = np.random.default_rng(0)
case, dtype = {case!r}.split()
rows = 1024 if dtype == "float64" else 4096
if case == "softmax":
    x = rng.standard_normal((rows, 4096)).astype(dtype)
    f = lambda: sa.softmax(x, axis=-1)
elif case == "log_softmax":
    x = rng.standard_normal((1024, 4096)).astype(dtype)
    f = lambda: sa.log_softmax(x, axis=-1)
else:
    x = rng.standard_normal((8 * rows * 2, 1000)).astype(dtype)
    y = rng.integers(0, 1000, len(x))
    f = lambda: sa.cross_entropy(x, y, reduction="none")
f()
ts = []
for _ in range(3):
    t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
print(min(ts))
"""

CASES = tuple(f"{case} {dtype}" for dtype in ("float32", "float64")
              for case in ("softmax", "cross_entropy", "log_softmax"))


def run(case, simd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("SOFTARRAY_SIMD", None)
    if simd:
        env["SOFTARRAY_SIMD"] = simd
    out = subprocess.run([sys.executable, "-c", CHILD.format(case=case)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1]) * 1e3


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    for case in CASES:
        a, b = [], []
        for _ in range(rounds):
            a.append(run(case, "avx2"))
            b.append(run(case, None))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{case:22s} avx2 {ma:8.2f} ms   avx512 {mb:8.2f} ms   speedup {ma / mb:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
