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
