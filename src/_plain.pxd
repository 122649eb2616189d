# The small calls' fast path in C: the conditions of
# softarray._dispatch.plain_rows, checked without a Python attribute lookup.
# Inline, so each module compiles its own copy; a module that cimports this
# calls cnp.import_array() once at import.
cimport numpy as cnp

cdef enum:
    # The most entries the compiled fast paths take: beyond, a call's Python
    # overhead is a small share of its time, and its output may come from the
    # output cache (softarray._output_cache), which only the general path uses.
    PLAIN_MAX_ENTRIES = 1 << 20


cdef inline Py_ssize_t plain_row_length(object x, object axis) except -2:
    """The length of x's rows when x is a plain NumPy array that the row
    kernels read as it is (float32 or float64 in native byte order, aligned,
    C-contiguous, with 1 to PLAIN_MAX_ENTRIES entries) and axis is -1 or
    x.ndim - 1 as an int; else -1, and the caller takes its general path."""
    if type(x) is not cnp.ndarray or type(axis) is not int:
        return -1
    cdef cnp.ndarray a = <cnp.ndarray> x
    cdef int nd = cnp.PyArray_NDIM(a)
    if nd == 0 or not (axis == -1 or axis == nd - 1):
        return -1
    cdef int typenum = cnp.PyArray_TYPE(a)
    if typenum != cnp.NPY_FLOAT and typenum != cnp.NPY_DOUBLE:
        return -1
    if not cnp.PyArray_ISCARRAY_RO(a) or not cnp.PyArray_ISNOTSWAPPED(a):
        return -1
    cdef Py_ssize_t size = cnp.PyArray_SIZE(a)
    if size == 0 or size > PLAIN_MAX_ENTRIES:
        return -1
    return cnp.PyArray_DIM(a, nd - 1)
