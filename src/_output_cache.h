/*
 * A NumPy memory handler (NEP 49) that keeps a few large freed output
 * buffers for reuse.
 *
 * Why: a fresh buffer of tens of MiB comes from mmap, and the kernel zeroes
 * every page on its first write. For a 4096 x 4096 float32 softmax that
 * zeroing costs about as much as the kernel's own output pass; called in a
 * loop on same-sized batches, every call paid it again, because glibc returns
 * blocks above its mmap threshold (at most 32 MiB) to the system on free.
 * Keeping the last few freed blocks and handing one back for a request of
 * the same size removes the zeroing after the first call.
 *
 * Only arrays softarray allocates as outputs use this handler (the Python
 * layer installs it around np.empty for large outputs), and only blocks of
 * at least SA_CACHE_MIN_BYTES are kept, at most SA_CACHE_SLOTS of them and at
 * most sa_cache_limit bytes in all (0 turns the cache off). A kept block is
 * marked MADV_FREE on Linux: under memory pressure the kernel may take its
 * pages back (a later write then faults in zero pages, as for a fresh block),
 * so what the cache holds is never memory the system cannot reclaim.
 *
 * Every block carries a SA_CACHE_HEADER-byte header recording its size, so
 * free() does not depend on the size NumPy passes. Calls come with the GIL
 * held (array creation and deallocation); the lock guards the slots anyway.
 */
#ifndef SOFTARRAY_OUTPUT_CACHE_H
#define SOFTARRAY_OUTPUT_CACHE_H

#define NPY_NO_DEPRECATED_API NPY_1_25_API_VERSION
#define NPY_TARGET_VERSION NPY_1_25_API_VERSION
#include <Python.h>
#include <pythread.h>
#include <numpy/arrayobject.h>
#include <stdlib.h>
#include <stdint.h>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#define SA_CACHE_HEADER 64
#define SA_CACHE_SLOTS 4
/* Below 32 MiB glibc keeps freed blocks on its heap and reuses them itself
 * (its mmap threshold follows freed blocks up to 32 MiB), faster than a kept
 * block's MADV_FREE (docs/threads.md). */
#define SA_CACHE_MIN_BYTES ((size_t)32 << 20)
#define SA_CACHE_HUGE_PAGE ((size_t)2 << 20)     /* x86-64's and most arm64 systems' */

typedef struct {
    char *base;         /* the block, header included; NULL when the slot is empty */
    size_t size;        /* bytes after the header */
} sa_cache_slot;

static sa_cache_slot sa_cache_slots[SA_CACHE_SLOTS];
static size_t sa_cache_limit = 0;
static size_t sa_cache_held = 0;
static unsigned sa_cache_next = 0;      /* the slot to reuse when all are full (oldest first) */
static PyThread_type_lock sa_cache_lock = NULL;

/* madvise over the whole pages inside [start, start + size), where the
 * system has it. */
static void sa_cache_advise(char *start, size_t size, int advice)
{
#if defined(__linux__)
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = ((uintptr_t)start + page - 1) & ~(page - 1);
    const uintptr_t hi = ((uintptr_t)start + size) & ~(page - 1);
    if (advice >= 0 && hi > lo)
        (void)madvise((void *)lo, hi - lo, advice);
#else
    (void)start; (void)size; (void)advice;
#endif
}

#if defined(__linux__) && defined(MADV_FREE)
#define SA_ADVICE_RECLAIMABLE MADV_FREE
#else
#define SA_ADVICE_RECLAIMABLE (-1)
#endif
#if defined(__linux__) && defined(MADV_HUGEPAGE)
#define SA_ADVICE_HUGE_PAGES MADV_HUGEPAGE
#else
#define SA_ADVICE_HUGE_PAGES (-1)
#endif

static void *sa_cache_wrap(char *base, size_t size)
{
    if (base == NULL)
        return NULL;
    *(size_t *)base = size;
    return base + SA_CACHE_HEADER;
}

/* A kept block of exactly size bytes, or NULL. */
static char *sa_cache_take(size_t size)
{
    char *found = NULL;
    if (size < SA_CACHE_MIN_BYTES)
        return NULL;
    PyThread_acquire_lock(sa_cache_lock, WAIT_LOCK);
    for (int i = 0; i < SA_CACHE_SLOTS; i++) {
        if (sa_cache_slots[i].base != NULL && sa_cache_slots[i].size == size) {
            found = sa_cache_slots[i].base;
            sa_cache_slots[i].base = NULL;
            sa_cache_held -= size;
            break;
        }
    }
    PyThread_release_lock(sa_cache_lock);
    return found;
}

/* Keep the block if it may be kept: into the oldest slot (next), after
 * freeing that slot's block and, while the bytes still exceed the limit,
 * the next oldest ones. */
static int sa_cache_keep(char *base, size_t size)
{
    if (size < SA_CACHE_MIN_BYTES)
        return 0;
    PyThread_acquire_lock(sa_cache_lock, WAIT_LOCK);
    const int keep = size <= sa_cache_limit;
    for (int i = 0; keep && i < SA_CACHE_SLOTS; i++) {
        sa_cache_slot *slot = &sa_cache_slots[(sa_cache_next + i) % SA_CACHE_SLOTS];
        if (i > 0 && sa_cache_held + size <= sa_cache_limit)
            break;
        if (slot->base != NULL) {
            free(slot->base);
            sa_cache_held -= slot->size;
            slot->base = NULL;
        }
    }
    if (keep) {
        sa_cache_advise(base, SA_CACHE_HEADER + size, SA_ADVICE_RECLAIMABLE);   /* from base: whole huge pages (sa_cache_alloc_huge) */
        sa_cache_slots[sa_cache_next].base = base;
        sa_cache_slots[sa_cache_next].size = size;
        sa_cache_held += size;
        sa_cache_next = (sa_cache_next + 1) % SA_CACHE_SLOTS;
    }
    PyThread_release_lock(sa_cache_lock);
    return keep;
}

/* A block that may be kept: on transparent huge pages, as NumPy's own
 * handler asks for large arrays, and aligned to them, so that the block is
 * whole huge pages and sa_cache_keep's MADV_FREE covers each one entirely.
 * Why: MADV_FREE over part of a huge page, or over 4 KiB pages, makes the
 * next call's writes fault those pages in again. With malloc's alignment a
 * 1024 x 4096 float32 softmax (16 MiB, cached then) took 1.53-1.60 ms a
 * call through the cache against 1.40 ms without it; aligned, 1.41-1.44. */
static char *sa_cache_alloc_huge(size_t bytes)
{
#if defined(__linux__)
    void *base = NULL;
    if (posix_memalign(&base, SA_CACHE_HUGE_PAGE, bytes) != 0)
        return NULL;
    sa_cache_advise(base, bytes, SA_ADVICE_HUGE_PAGES);
    return base;
#else
    return malloc(bytes);
#endif
}

static void *sa_cache_malloc(void *ctx, size_t size)
{
    (void)ctx;
    char *base = sa_cache_take(size);
    if (base == NULL) {
        if (size > SIZE_MAX - SA_CACHE_HEADER)
            return NULL;
        base = size >= SA_CACHE_MIN_BYTES ? sa_cache_alloc_huge(size + SA_CACHE_HEADER)
                                          : malloc(size + SA_CACHE_HEADER);
    }
    return sa_cache_wrap(base, size);
}

static void *sa_cache_calloc(void *ctx, size_t n, size_t itemsize)
{
    (void)ctx;
    if (itemsize != 0 && n > (SIZE_MAX - SA_CACHE_HEADER) / itemsize)
        return NULL;
    return sa_cache_wrap(calloc(1, n * itemsize + SA_CACHE_HEADER), n * itemsize);
}

static void *sa_cache_realloc(void *ctx, void *ptr, size_t size)
{
    if (ptr == NULL)
        return sa_cache_malloc(ctx, size);
    if (size > SIZE_MAX - SA_CACHE_HEADER)
        return NULL;
    return sa_cache_wrap(realloc((char *)ptr - SA_CACHE_HEADER, size + SA_CACHE_HEADER), size);
}

static void sa_cache_free(void *ctx, void *ptr, size_t size_from_numpy)
{
    (void)ctx; (void)size_from_numpy;
    if (ptr == NULL)
        return;
    char *base = (char *)ptr - SA_CACHE_HEADER;
    if (!sa_cache_keep(base, *(size_t *)base))
        free(base);
}

static PyDataMem_Handler sa_cache_handler = {
    "softarray_output_cache",
    1,
    {NULL, sa_cache_malloc, sa_cache_calloc, sa_cache_realloc, sa_cache_free},
};

/* Free every kept block and set a new limit. */
static void sa_cache_set_limit(size_t limit)
{
    PyThread_acquire_lock(sa_cache_lock, WAIT_LOCK);
    for (int i = 0; i < SA_CACHE_SLOTS; i++) {
        free(sa_cache_slots[i].base);
        sa_cache_slots[i].base = NULL;
    }
    sa_cache_held = 0;
    sa_cache_limit = limit;
    PyThread_release_lock(sa_cache_lock);
}

static size_t sa_cache_get_limit(void) { return sa_cache_limit; }
static size_t sa_cache_get_held(void) { return sa_cache_held; }

/* NumPy's C API and the lock; the handler as a "mem_handler" capsule (new
 * reference), or NULL with an exception set. */
static PyObject *sa_cache_init(void)
{
    if (_import_array() < 0)
        return NULL;
    if (sa_cache_lock == NULL && (sa_cache_lock = PyThread_allocate_lock()) == NULL)
        return PyErr_NoMemory();
    return PyCapsule_New(&sa_cache_handler, "mem_handler", NULL);
}

#endif /* SOFTARRAY_OUTPUT_CACHE_H */
