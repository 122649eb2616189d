/*
 * Interrupting long calls: Ctrl-C (or any Python signal handler that
 * raises) stops a kernel between two blocks of its work.
 *
 * Python runs signal handlers only in the main thread, and only when that
 * thread executes bytecode or calls PyErr_CheckSignals(). A kernel runs
 * with the GIL released, so without help a SIGINT waits for the call to
 * end. Here the calling thread (the Python thread that called the kernel,
 * also OpenMP's master thread in every parallel region the kernel opens)
 * reads a monotonic clock between blocks and, once a period has passed,
 * takes the GIL for a moment and calls PyErr_CheckSignals(). When a handler
 * raises, the exception stays set in that thread's state and the shared
 * `stop` flag is raised; every thread reads it between blocks and skips the
 * rest of its work. After the parallel region the Cython wrapper, holding
 * the GIL again, calls sa_interrupt_finish() first of all, which reports the
 * exception (`except -1`): the call raises it and returns nothing, so its
 * half-written outputs are never seen.
 *
 * Use, in a Cython wrapper:
 *
 *     cdef sa_interrupt intr
 *     sa_interrupt_start(&intr)                      # GIL held
 *     with nogil:
 *         ... between blocks: if sa_interrupt_poll(&intr, work): skip the rest
 *     sa_interrupt_finish(&intr)                     # GIL held; raises if stopped
 *
 * Cost: other threads read one flag per poll; the calling thread also adds
 * up the work and reads the clock once per SA_INTERRUPT_WORK entries, and
 * takes the GIL once per SA_INTERRUPT_PERIOD_NS. Taking the GIL waits while
 * another Python thread runs bytecode (up to its switch interval, 5 ms by
 * default), so the next check is put off by SA_INTERRUPT_BACKOFF times the
 * wait: such waits then cost at most 1 / SA_INTERRUPT_BACKOFF of the time.
 * A call from a thread other than the main one still takes the GIL once per
 * period, and PyErr_CheckSignals() returns 0 there at once.
 */
#ifndef SOFTARRAY_INTERRUPT_H
#define SOFTARRAY_INTERRUPT_H

#include <Python.h>
#include <pythread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "_simd.h"

/* Time between two looks for a pending signal: the delay between a signal
 * and the end of the call is this plus one block of work. */
#define SA_INTERRUPT_PERIOD_NS 20000000
/* Entries of work (about 10-100 us) between two reads of the clock. */
#define SA_INTERRUPT_WORK (1 << 16)
/* Entries in a work item that a parallel loop hands out when it polls
 * between items (a millisecond or so): small enough for a quick stop, large
 * enough that handing it out costs nothing. */
#define SA_INTERRUPT_BLOCK (1 << 18)
/* A wait for the GIL of w puts the next check off by this times w. */
#define SA_INTERRUPT_BACKOFF 20
/* The calling thread's nap between polls while it waits for the other
 * threads of a team (sa_interrupt_team_done). */
#define SA_INTERRUPT_NAP_NS 100000

/* The slow path of a poll: kept out of the loops that poll. Not `inline`
 * (GCC warns that an inline function cannot be noinline); `unused` keeps a
 * module that includes this header but never polls free of a warning. */
#if defined(__GNUC__)
#  define SA_INTERRUPT_COLD __attribute__((cold, noinline, unused))
#else
#  define SA_INTERRUPT_COLD
#endif

typedef struct {
    atomic_int stop;                /* raised once, by the calling thread; read by all */
    atomic_int done;                /* the other threads of a team done with their shares */
    unsigned long owner;            /* the calling thread (PyThread_get_thread_ident) */
    /* Written by the calling thread only: a cache line of their own, so
     * that the other threads' reads of stop do not miss. */
    _Alignas(64) ptrdiff_t work;    /* entries since the clock was last read */
    int64_t next_check_ns;
} sa_interrupt;

/* Items (of item_size entries each) per work item, to cut n_items into
 * about n_parts items of at most SA_INTERRUPT_BLOCK entries (at least one
 * item each). */
SA_INLINE ptrdiff_t sa_interrupt_chunk(ptrdiff_t n_items, ptrdiff_t item_size, ptrdiff_t n_parts)
{
    const ptrdiff_t even = (n_items + n_parts - 1) / n_parts;
    const ptrdiff_t bounded = item_size > 0 ? SA_INTERRUPT_BLOCK / item_size : n_items;
    return bounded < 1 ? 1 : (even < bounded ? even : bounded);
}

static inline int64_t sa_interrupt_clock_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Before the call's work, with the GIL held, in the calling thread. */
static inline void sa_interrupt_start(sa_interrupt *s)
{
    atomic_init(&s->stop, 0);
    atomic_init(&s->done, 0);
    s->owner = PyThread_get_thread_ident();
    s->work = 0;
    s->next_check_ns = sa_interrupt_clock_ns() + SA_INTERRUPT_PERIOD_NS;
}

/* The calling thread, once per SA_INTERRUPT_WORK entries: run Python's
 * signal handlers when the period has passed. */
static SA_INTERRUPT_COLD int sa_interrupt_check(sa_interrupt *s)
{
    const int64_t now = sa_interrupt_clock_ns();
    if (now < s->next_check_ns)
        return 0;
    PyGILState_STATE gil = PyGILState_Ensure();
    const int raised = PyErr_CheckSignals() < 0;
    PyGILState_Release(gil);
    const int64_t after = sa_interrupt_clock_ns();
    s->next_check_ns = after + SA_INTERRUPT_PERIOD_NS + SA_INTERRUPT_BACKOFF * (after - now);
    if (raised)
        atomic_store_explicit(&s->stop, 1, memory_order_relaxed);
    return raised;
}

/* Between two blocks of work, in any thread of the call, GIL released (or
 * held by the calling thread): 1 when the call is to stop. work: about how
 * many entries the thread read or wrote since its last poll. */
SA_INLINE int sa_interrupt_poll(sa_interrupt *s, ptrdiff_t work)
{
    if (atomic_load_explicit(&s->stop, memory_order_relaxed))
        return 1;
    if (PyThread_get_thread_ident() != s->owner)
        return 0;
    s->work += work;
    if (s->work < SA_INTERRUPT_WORK)
        return 0;
    s->work = 0;
    return sa_interrupt_check(s);
}

/* In every thread of a parallel region, when its share of the work is done
 * (then comes the region's barrier). Where the shares can end far apart (a
 * dynamic schedule of items of very different sizes), the calling thread
 * would wait at the barrier, where no signal is seen: it waits here
 * instead, polling, until the others are done. */
static inline void sa_interrupt_team_done(sa_interrupt *s)
{
#ifdef _OPENMP
    if (PyThread_get_thread_ident() != s->owner) {
        atomic_fetch_add_explicit(&s->done, 1, memory_order_relaxed);
        return;
    }
    const int others = omp_get_num_threads() - 1;
    const struct timespec nap = {0, SA_INTERRUPT_NAP_NS};
    while (atomic_load_explicit(&s->done, memory_order_relaxed) < others) {
        sa_interrupt_poll(s, SA_INTERRUPT_WORK);
        nanosleep(&nap, NULL);
    }
    atomic_store_explicit(&s->done, 0, memory_order_relaxed);
#else
    (void)s;
#endif
}

/* The end of the block of a long loop that starts at entry k of n, when
 * the loop polls once per SA_INTERRUPT_WORK entries:
 *     for (k = 0; k < n; k = end) {
 *         end = sa_interrupt_block_end(k, n);
 *         if (sa_interrupt_poll(s, end - k)) return ...;
 *         for (i = k; i < end; i++) ...     (the loop as it was)
 *     } */
SA_INLINE ptrdiff_t sa_interrupt_block_end(ptrdiff_t k, ptrdiff_t n)
{
    return n - k > SA_INTERRUPT_WORK ? k + SA_INTERRUPT_WORK : n;
}

/* After the parallel regions, with the GIL held, before any other Python
 * call: -1 when a signal handler raised (its exception is set), else 0. */
static inline int sa_interrupt_finish(sa_interrupt *s)
{
    return atomic_load_explicit(&s->stop, memory_order_relaxed) ? -1 : 0;
}

#endif /* SOFTARRAY_INTERRUPT_H */
