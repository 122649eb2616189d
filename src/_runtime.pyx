# cython: language_level=3
"""What the compiled build is: OpenMP on or off, its thread count, the SIMD path."""

cdef extern from "_simd.h" nogil:
    const char *sa_simd_path()

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int sa_openmp_enabled(void) { return 1; }
    static int sa_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int sa_openmp_enabled(void) { return 0; }
    static int sa_omp_max_threads(void) { return 1; }
    #endif
    #include <pthread.h>

    /* One thread limit for the whole process (0: follow OpenMP's limit).
       OpenMP's own limit (omp_set_num_threads, which threadpoolctl calls)
       belongs to the thread that set it; this one binds kernels called from
       every Python thread. A plain int: a call reads it once, and a call
       that starts while another thread changes it uses the old or the new
       count, either of which is valid. */
    static volatile int sa_thread_limit = 0;

    /* GNU libgomp's thread pool does not survive fork(): a child that
       starts a parallel region of more than one thread waits forever for
       the parent's workers. After a fork, a child whose parent may have
       started the pool runs every kernel on one thread (as PyTorch does). */
    static volatile int sa_pool_may_exist = 0;
    static volatile int sa_forked_after_pool = 0;

    static void sa_after_fork_in_child(void) {
        if (sa_pool_may_exist) sa_forked_after_pool = 1;
    }

    static int sa_register_fork_handler(void) {
        return pthread_atfork(NULL, NULL, sa_after_fork_in_child);
    }

    /* The thread count for the kernel call about to start. */
    static int sa_threads_for_call(void) {
        int n;
        if (sa_forked_after_pool) return 1;
        n = sa_thread_limit > 0 ? sa_thread_limit : sa_omp_max_threads();
        if (n > 1) sa_pool_may_exist = 1;
        return n < 1 ? 1 : n;
    }

    /* What threadpoolctl's controller for softarray reads through ctypes:
       the count a kernel called now would use, without marking the pool. */
    __attribute__((visibility("default"))) int softarray_get_thread_limit(void) {
        int n;
        if (sa_forked_after_pool) return 1;
        n = sa_thread_limit > 0 ? sa_thread_limit : sa_omp_max_threads();
        return n < 1 ? 1 : n;
    }
    """
    int sa_openmp_enabled() nogil
    int sa_omp_max_threads() nogil
    int sa_thread_limit
    int sa_forked_after_pool
    int sa_register_fork_handler() nogil
    int sa_threads_for_call() nogil
    int softarray_get_thread_limit() nogil


if sa_register_fork_handler() != 0:
    raise ImportError("softarray: pthread_atfork failed; forked children could hang")


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(sa_openmp_enabled())


def omp_max_threads():
    """OpenMP's current thread limit for this thread: OMP_NUM_THREADS, or what
    threadpoolctl / omp_set_num_threads last set in this thread; 1 without
    OpenMP."""
    return sa_omp_max_threads()


def threads_for_call():
    """The thread count for the kernel call about to start: 1 in a forked
    child of a parent that may have started OpenMP's pool, else the process
    limit, else OpenMP's limit for this thread."""
    return sa_threads_for_call()


def thread_limit():
    """The count a kernel called now would use (reads, marks nothing)."""
    return softarray_get_thread_limit()


def set_thread_limit(int n):
    """Set the process-wide limit (0: follow OpenMP's limit)."""
    global sa_thread_limit
    sa_thread_limit = n


def explicit_thread_limit():
    """The process-wide limit as set (0 when none is set)."""
    return sa_thread_limit


def in_forked_child():
    """True in a forked child that runs its kernels on one thread."""
    return bool(sa_forked_after_pool)


def simd_path():
    """The code path the kernels run on this CPU."""
    return sa_simd_path().decode()


# ------------------------------------------------------------ output cache

cdef extern from "_output_cache.h":
    object sa_cache_init()
    void sa_cache_set_limit(size_t limit) nogil
    size_t sa_cache_get_limit() nogil
    size_t sa_cache_get_held() nogil
    size_t SA_CACHE_MIN_BYTES
    object PyDataMem_SetHandler(object handler)

import numpy as np

_HANDLER = sa_cache_init()
OUTPUT_CACHE_MIN_BYTES = SA_CACHE_MIN_BYTES


def empty_cached(shape, dtype):
    """np.empty(shape, dtype) through the output cache's memory handler: a
    kept block of the same size if there is one, and the block is kept for
    reuse when the array is freed (see _output_cache.h)."""
    previous = PyDataMem_SetHandler(_HANDLER)
    try:
        return np.empty(shape, dtype)
    finally:
        PyDataMem_SetHandler(previous)


def set_output_cache_limit(size_t limit):
    """Free the kept blocks and let the cache hold up to limit bytes (0: off)."""
    sa_cache_set_limit(limit)


def output_cache_limit():
    return sa_cache_get_limit()


def output_cache_held():
    """Bytes the cache holds now."""
    return sa_cache_get_held()
