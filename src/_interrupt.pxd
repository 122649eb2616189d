# Interrupting long calls: the declarations of src/_interrupt.h (read its
# comment), shared by every kernel module. In a wrapper: sa_interrupt_start
# before the nogil work, sa_interrupt_poll between blocks of it, and
# sa_interrupt_finish (it raises) after it, before any other Python call.
cdef extern from "_interrupt.h" nogil:
    ctypedef struct sa_interrupt:
        pass
    enum:
        SA_INTERRUPT_WORK
    Py_ssize_t sa_interrupt_chunk(Py_ssize_t n_items, Py_ssize_t item_size, Py_ssize_t n_parts)
    void sa_interrupt_start(sa_interrupt *s)
    bint sa_interrupt_poll(sa_interrupt *s, Py_ssize_t work)
    int sa_interrupt_finish(sa_interrupt *s) except -1
