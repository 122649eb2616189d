"""Training steps through PyTorch autograd: softarray's functions on tensors
that require grad (the autograd adapter) beside torch's own, in one process.

Usage: python asv_bench/compare_autograd.py [--repeat N] [--threads 1 2]
           [--lce-n N --lce-d D --lce-v V] [--skip-lce]

Issue 20's targets, float32, forward + ``backward()``, median over N repeats,
each library limited to the same thread count:

* cross_entropy 16384 x 1000: >= 3x torch.nn.functional.cross_entropy;
* softmax(x).square().sum() 16384 x 1000: >= 2x torch.softmax (the
  square and the sum, forward and backward, are torch's in both columns);
  the softmax alone (forward, then backward of a fixed cotangent through
  torch.autograd.grad) is timed beside it;
* linear_cross_entropy N=4096, D=512, V=32768 (embeddings and classifier
  require grad): <= 1.0x torch's matmul + cross_entropy, with extra peak
  memory < 5% of the N x V float32 logits: tracemalloc's peak during one
  step (softarray's and NumPy's allocations) less the gradients that the
  step returns, measured once outside the timing, at the default tile and
  with ``--lce-chunk`` vocabulary entries per tile.
"""
import argparse
import os
import tracemalloc

import numpy as np
import torch
import torch.nn.functional as F

import softarray as sa
from benchmarks._common import limit_threads, median_seconds
from benchmarks.bench_autograd import training_step as _step


def _vjp(fn, x):
    c = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)

    def run():
        torch.autograd.grad(fn(x), x, grad_outputs=c)
    return run


def cases(args):
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((16384, 1000), dtype=np.float32)).requires_grad_()
    y = torch.from_numpy(rng.integers(0, 1000, 16384))
    out = [
        ("cross_entropy fwd+bwd 16384x1000", _step(lambda v: sa.cross_entropy(v, y), x),
         _step(lambda v: F.cross_entropy(v, y), x), "ratio >= 3"),
        ("softmax(x).square().sum() fwd+bwd 16384x1000", _step(lambda v: sa.softmax(v).square().sum(), x),
         _step(lambda v: torch.softmax(v, -1).square().sum(), x), "ratio >= 2"),
        ("softmax alone fwd+bwd 16384x1000", _vjp(sa.softmax, x), _vjp(lambda v: torch.softmax(v, -1), x),
         "(information)"),
    ]
    if not args.skip_lce:
        n, d, v = args.lce_n, args.lce_d, args.lce_v
        emb = torch.from_numpy(rng.standard_normal((n, d), dtype=np.float32)).requires_grad_()
        cls = torch.from_numpy((rng.standard_normal((v, d), dtype=np.float32) * 0.05)).requires_grad_()
        t = torch.from_numpy(rng.integers(0, v, n))
        out.append((f"linear_cross_entropy fwd+bwd N={n} D={d} V={v}",
                    _step(lambda e, c: sa.linear_cross_entropy(e, c, t), emb, cls),
                    _step(lambda e, c: F.cross_entropy(e @ c.T, t), emb, cls), "ratio >= 1"))
        out.append((f"  the same, chunk_size={args.lce_chunk}",
                     _step(lambda e, c: sa.linear_cross_entropy(e, c, t, chunk_size=args.lce_chunk), emb, cls),
                     out[-1][2], "ratio >= 1"))
    return out


def extra_peak(step):
    """Peak bytes traced by tracemalloc during one step (NumPy's and
    softarray's allocations; torch's own allocator is not traced)."""
    step()
    tracemalloc.start()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}))
    parser.add_argument("--lce-n", type=int, default=4096)
    parser.add_argument("--lce-d", type=int, default=512)
    parser.add_argument("--lce-v", type=int, default=32768)
    parser.add_argument("--lce-chunk", type=int, default=8192)
    parser.add_argument("--skip-lce", action="store_true")
    args = parser.parse_args()
    print(f"softarray {sa.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, median of {args.repeat}")
    print(f"{'case':48s} {'threads':>7s} {'softarray ms':>13s} {'torch ms':>10s} {'ratio':>6s}  target")
    table = cases(args)
    for n in args.threads:
        with limit_threads(n):
            for label, ours, theirs, target in table:
                a, b = median_seconds(ours, args.repeat), median_seconds(theirs, args.repeat)
                print(f"{label:48s} {n:7d} {a * 1e3:13.1f} {b * 1e3:10.1f} {b / a:6.2f}  {target}")
    if not args.skip_lce:
        logits = args.lce_n * args.lce_v * 4
        grads = (args.lce_n + args.lce_v) * args.lce_d * 4
        with limit_threads(max(args.threads)):
            for label, ours, _, _ in table[-2:]:
                extra = extra_peak(ours) - grads
                print(f"{label.strip()}: extra peak {extra / 2**20:.1f} MiB = {100 * extra / logits:.2f}% "
                      f"of the {logits / 2**20:.0f} MiB N x V float32 logits")

if __name__ == "__main__":
    main()
