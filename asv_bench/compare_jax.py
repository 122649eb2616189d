"""softarray on JAX arrays beside JAX's own formulation, in one process:
eager calls (softarray runs its compiled kernels on the arrays' memory),
``jax.jit(jax.value_and_grad(...))`` training steps (softarray's portable
implementation, traced by JAX), and the cost of a ``jax.pure_callback``
round trip, the reason traced calls do not run the compiled kernels.

    python asv_bench/compare_jax.py [--threads 1] [--repeat 7]

Prints medians in milliseconds and JAX's time over softarray's (above 1:
softarray is faster). ``--threads 1`` limits both: softarray through
sa.threads, XLA through XLA_FLAGS set before jax is imported.
"""
import argparse
import os
import statistics
import time

import numpy as np


def median_ms(fn, repeat, jax):
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def cases(jax, sa, rng):
    """(name, softarray's call, JAX's call) with their arguments bound."""
    from benchmarks.bench_autograd import jax_cross_entropy   # after XLA_FLAGS: it imports jax
    jnp = jax.numpy
    for n, c in [(8, 10), (1024, 1000), (16384, 1000)]:
        x = jnp.asarray(rng.standard_normal((n, c), dtype=np.float32))
        y = jnp.asarray(rng.integers(0, c, n))
        jax.block_until_ready((x, y))
        softmax_jit = jax.jit(jax.nn.softmax)
        yield f"softmax {n}x{c}, eager", lambda x=x: sa.softmax(x), lambda x=x: softmax_jit(x)
        ce_jit = jax.jit(jax_cross_entropy)
        yield (f"cross_entropy {n}x{c}, eager", lambda x=x, y=y: sa.cross_entropy(x, y),
               lambda x=x, y=y: ce_jit(x, y))
        ours = jax.jit(jax.value_and_grad(sa.cross_entropy))
        theirs = jax.jit(jax.value_and_grad(jax_cross_entropy))
        yield (f"cross_entropy {n}x{c}, jit(value_and_grad)", lambda x=x, y=y, f=ours: f(x, y),
               lambda x=x, y=y, f=theirs: f(x, y))
        ours = jax.jit(jax.value_and_grad(lambda z: jnp.sum(sa.softmax(z) ** 2)))
        theirs = jax.jit(jax.value_and_grad(lambda z: jnp.sum(jax.nn.softmax(z) ** 2)))
        yield (f"softmax(x)**2 sum {n}x{c}, jit(value_and_grad)", lambda x=x, f=ours: f(x),
               lambda x=x, f=theirs: f(x))


def callback_round_trip(jax, repeat):
    """A jitted identity through jax.pure_callback on 64 MiB of float32,
    beside NumPy copying the same array."""
    jnp = jax.numpy
    x = jnp.asarray(np.ones((16384, 1024), np.float32))
    jax.block_until_ready(x)
    shape = jax.ShapeDtypeStruct(x.shape, x.dtype)
    identity = jax.jit(lambda v: jax.pure_callback(lambda a: np.asarray(a), shape, v))
    host = np.asarray(x)
    return median_ms(lambda: identity(x), repeat, jax), median_ms(lambda: host.copy(), repeat, jax)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    if args.threads == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    import jax

    import softarray as sa

    threads = args.threads or os.cpu_count()
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__}, softarray {sa.__version__}, float32, {threads} thread(s), "
          f"median of {args.repeat}")
    print(f"{'case':<48} {'softarray ms':>13} {'jax ms':>10} {'jax / softarray':>16}")
    with sa.threads(threads):
        for name, ours, theirs in cases(jax, sa, rng):
            a, b = median_ms(ours, args.repeat, jax), median_ms(theirs, args.repeat, jax)
            print(f"{name:<48} {a:13.3f} {b:10.3f} {b / a:16.2f}")
        trip, copy = callback_round_trip(jax, args.repeat)
    print(f"jax.pure_callback identity round trip, 64 MiB: {trip:.1f} ms (NumPy copy: {copy:.1f} ms)")


if __name__ == "__main__":
    main()
