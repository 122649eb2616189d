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
    """
    int sa_openmp_enabled() nogil
    int sa_omp_max_threads() nogil


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(sa_openmp_enabled())


def omp_max_threads():
    """OpenMP's current thread limit for this thread: OMP_NUM_THREADS, or what
    threadpoolctl / omp_set_num_threads last set; 1 without OpenMP."""
    return sa_omp_max_threads()


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
