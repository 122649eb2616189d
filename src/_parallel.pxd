# What every kernel module shares about spreading work over OpenMP threads:
# when a team is worth waking, how rows are cut into work items for a
# dynamic prange, and strides in elements. Inline, so each module compiles
# its own copy of these few lines.
from _interrupt cimport sa_interrupt_chunk

cdef enum:
    # Below this much work (elements read) one thread is faster than waking a team.
    PARALLEL_MIN_ELEMENTS = 1 << 15
    # The same rule in bytes, for the softmax family's rows and the losses'
    # samples, whose entries cost what their bytes do (a float64 exponential
    # takes twice a float32 one's time). Against PARALLEL_MIN_ELEMENTS entries
    # of any type, on Zen 1 at two threads (compare_shapes --grid
    # --max-elements 66000, fresh inputs, us): float64 softmax 1x32000
    # 143 -> 73, 8x1000 37 -> 21, 1024x10 76 -> 40; float32 1x32000 57 -> 33;
    # cross_entropy (each library in its own process, medians of 400 calls)
    # float32 1024x10 57 -> 39, float64 1024x10 96 -> 58, 8x1000 36 -> 25.
    # Half of it (16 KiB) measured no gain more for float32 softmax
    # 8x1000 (16.3 us either way: the two cores share little but the
    # wake-up). While other processes hold the cores a team of two waits on
    # a descheduled thread (5-10x slower calls measured at this size,
    # 2026-12-04), as every parallel call does; OMP_NUM_THREADS=1 or
    # threadpoolctl avoids it.
    PARALLEL_MIN_BYTES = 1 << 15
    # Fewer rows than threads, each at least this long: the softmax family's
    # rows and the losses' samples are cut across the threads and the
    # segments' (max, sum) states merged.
    SPLIT_MIN_LENGTH = 1 << 14
    # Work items per thread: enough to even out rows of unequal cost (each at
    # most SA_INTERRUPT_BLOCK elements: an interrupt is seen between them).
    CHUNKS_PER_THREAD = 4


cdef inline Py_ssize_t elements(Py_ssize_t stride_bytes, Py_ssize_t itemsize) except? -1:
    """A memoryview's stride in elements (the Python layer never passes another)."""
    if stride_bytes % itemsize:
        raise ValueError("internal error: stride is not a multiple of the item size")
    return stride_bytes // itemsize


cdef inline int team_size(Py_ssize_t n_items, Py_ssize_t work, Py_ssize_t min_work, int n_threads) noexcept nogil:
    """Threads for n_items items of `work` in all: one below min_work."""
    if n_threads <= 1 or work < min_work or n_items < 2:
        return 1
    return n_threads


cdef inline Py_ssize_t split_segment(Py_ssize_t n, int n_threads, Py_ssize_t multiple) noexcept nogil:
    """The length of the segments a row of n entries split across n_threads
    is cut into: one per thread, rounded up to a multiple of `multiple`
    (the last segment shorter, and fewer segments than threads if need be)."""
    cdef Py_ssize_t seg = (n + n_threads - 1) // n_threads
    return (seg + multiple - 1) // multiple * multiple


# n_items rows cut into `count` work items of `size` rows (the last one
# shorter) for `for c in prange(count, num_threads=team, schedule='dynamic')`:
# item c covers rows [c * size, min((c + 1) * size, n_items)).
cdef struct work_items:
    int team
    Py_ssize_t size
    Py_ssize_t count


cdef inline work_items _cut_rows(Py_ssize_t n_items, Py_ssize_t item_size, int team) noexcept nogil:
    """About CHUNKS_PER_THREAD items per thread of the team, each small
    enough for sa_interrupt_poll to see an interrupt between them."""
    cdef work_items w
    w.team = team
    w.size = sa_interrupt_chunk(n_items, item_size, min(n_items, <Py_ssize_t> team * CHUNKS_PER_THREAD))
    w.count = (n_items + w.size - 1) // w.size
    return w


cdef inline work_items row_items(Py_ssize_t n_items, Py_ssize_t item_size,
                                 int n_threads) noexcept nogil:
    """Rows of item_size elements, a team from PARALLEL_MIN_ELEMENTS of them."""
    return _cut_rows(n_items, item_size, team_size(n_items, n_items * item_size, PARALLEL_MIN_ELEMENTS, n_threads))


cdef inline work_items row_items_by_bytes(Py_ssize_t n_items, Py_ssize_t item_size, Py_ssize_t itemsize,
                                          int n_threads) noexcept nogil:
    """Rows of item_size elements of itemsize bytes, a team from PARALLEL_MIN_BYTES."""
    return _cut_rows(n_items, item_size,
                     team_size(n_items, n_items * item_size * itemsize, PARALLEL_MIN_BYTES, n_threads))
