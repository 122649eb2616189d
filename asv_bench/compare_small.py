"""Small calls side by side: microseconds per call of softarray and its peers
(PyTorch, scipy.special, torchvision, scikit-learn) on tiny and medium
inputs, one thread, float32, in one process.

    python asv_bench/compare_small.py [--repeat 9] [--threads 1] [--cases softmax nms ...]

Each figure is the median over ``--repeat`` samples of the mean time of a
loop of calls (the loop sized to about 20 ms); the ratio is the fastest
peer's time over softarray's (above 1: softarray faster). NumPy input for
softarray and SciPy, a tensor of the same data for torch; the "tensor" rows
give softarray the torch tensor. The cases are the asv suite's
(benchmarks/bench_small.py).
"""
import argparse
import os
import statistics
import sys
import timeit

# ``python -P`` does not put this script's folder on sys.path; the case
# table lives in the asv suite beside it.
HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import softarray as sa  # noqa: E402
from benchmarks.bench_small import CASES, torch  # noqa: E402


def per_call(f, repeat):
    """Median over repeat samples of the seconds per call of f."""
    f()
    number = max(1, int(0.02 / max(timeit.timeit(f, number=1), 1e-7)))
    samples = [timeit.timeit(f, number=number) / number for _ in range(repeat)]
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cases", nargs="*", help="substrings of the case names to run")
    args = parser.parse_args()
    if torch:
        torch.set_num_threads(args.threads)
    print(f"us per call, median of {args.repeat}; {args.threads} thread(s); "
          f"ratio = fastest peer / softarray")
    print(f"{'call':<40} {'softarray':>10}  peers")
    with sa.threads(args.threads):
        for name, (ours, peers) in CASES.items():
            if args.cases and not any(c in name for c in args.cases):
                continue
            mine = per_call(ours, args.repeat)
            theirs = {peer: per_call(f, args.repeat) for peer, f in peers.items()}
            ratio = f"{min(theirs.values()) / mine:5.2f}x" if theirs else "   -  "
            listed = "  ".join(f"{peer} {t * 1e6:8.1f}" for peer, t in theirs.items())
            print(f"{name:<40} {mine * 1e6:10.1f}  {ratio}  {listed}", flush=True)


if __name__ == "__main__":
    main()
