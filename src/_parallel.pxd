# What every kernel module shares about spreading work over OpenMP threads:
# when a team is worth waking, how rows are cut into work items for a
# dynamic prange, and strides in elements. Inline, so each module compiles
# its own copy of these few lines.
from _interrupt cimport sa_interrupt_chunk

cdef enum:
    # Below this much work (elements read) one thread is faster than waking a team.
    PARALLEL_MIN_ELEMENTS = 1 << 15
    # Work items per thread: enough to even out rows of unequal cost (each at
    # most SA_INTERRUPT_BLOCK elements: an interrupt is seen between them).
    CHUNKS_PER_THREAD = 4


cdef inline Py_ssize_t elements(Py_ssize_t stride_bytes, Py_ssize_t itemsize) except? -1:
    """A memoryview's stride in elements (the Python layer never passes another)."""
    if stride_bytes % itemsize:
        raise ValueError("internal error: stride is not a multiple of the item size")
    return stride_bytes // itemsize


cdef inline int team_size(Py_ssize_t n_items, Py_ssize_t work, int n_threads) noexcept nogil:
    """Threads for n_items items of `work` elements in all: one below PARALLEL_MIN_ELEMENTS."""
    if n_threads <= 1 or work < PARALLEL_MIN_ELEMENTS or n_items < 2:
        return 1
    return n_threads


# n_items rows cut into `count` work items of `size` rows (the last one
# shorter) for `for c in prange(count, num_threads=team, schedule='dynamic')`:
# item c covers rows [c * size, min((c + 1) * size, n_items)).
cdef struct work_items:
    int team
    Py_ssize_t size
    Py_ssize_t count


cdef inline work_items row_items(Py_ssize_t n_items, Py_ssize_t item_size,
                                 int n_threads) noexcept nogil:
    """About CHUNKS_PER_THREAD items per thread, each small enough for
    sa_interrupt_poll to see an interrupt between them."""
    cdef work_items w
    w.team = team_size(n_items, n_items * item_size, n_threads)
    w.size = sa_interrupt_chunk(n_items, item_size, min(n_items, <Py_ssize_t> w.team * CHUNKS_PER_THREAD))
    w.count = (n_items + w.size - 1) // w.size
    return w
