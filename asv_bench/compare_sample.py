"""Sampling one token per row from language-model logits: softarray.sample
beside the same steps composed in torch (temperature, topk or a full sort,
softmax, a cumulative sum for top-p, multinomial), in one process.

    python asv_bench/compare_sample.py [--threads 1 2] [--repeat 7]

Prints medians in milliseconds and torch's time over softarray's (above 1:
softarray is faster), per shape and filter, each library limited to the
same thread count.
"""
import argparse
import os
import statistics
import time

import numpy as np
import torch

import softarray as sa
from benchmarks._common import limit_threads
from benchmarks.bench_gating import torch_sample

SHAPES = [(1, 128000), (8, 128000), (64, 32000)]
FILTERS = [{"top_k": 50}, {"top_p": 0.9}, {"top_k": 50, "top_p": 0.9}, {"min_p": 0.05}]


def median_ms(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count()])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"softarray {sa.__version__}, torch {torch.__version__}, float32, temperature 0.8, "
          f"median of {args.repeat}")
    print(f"{'shape':<12} {'filters':<28} {'threads':>7} {'softarray ms':>13} {'torch ms':>9} "
          f"{'torch / softarray':>18}")
    for shape in SHAPES:
        x = (rng.standard_normal(shape, dtype=np.float32) * 3)
        t = torch.from_numpy(x)
        for filters in FILTERS:
            for threads in args.threads:
                generator, seeds = torch.Generator().manual_seed(0), np.random.default_rng(0)
                with limit_threads(threads):
                    ours = median_ms(lambda: sa.sample(x, temperature=0.8, rng=seeds, **filters),
                                     args.repeat)
                    theirs = median_ms(lambda: torch_sample(t, generator, **filters), args.repeat)
                label = ", ".join(f"{k}={v}" for k, v in filters.items())
                print(f"{'x'.join(map(str, shape)):<12} {label:<28} {threads:>7} {ours:13.3f} "
                      f"{theirs:9.3f} {theirs / ours:18.2f}")


if __name__ == "__main__":
    main()
