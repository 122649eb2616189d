"""linear_cross_entropy: cross-entropy of a linear layer's output, fused so
that the (N, V) logits are never held in memory. It validates, then hands
the work to the compiled kernel (``softarray._lib._linear_cross_entropy``)
or to the portable array-API implementation
(``softarray._portable.linear_cross_entropy``); ``softarray._dispatch``
decides which.
"""
import contextlib
import threading

import array_api_compat
import numpy as np
import threadpoolctl

from . import _dispatch
from ._declare import ReturnedGradient, RowsOfLinearLoss, declare
from ._lib import _linear_cross_entropy as _kernels
from ._portable import linear_cross_entropy as _portable
from ._reduction import grad_scale, reduce_losses
from ._threads import threads_for_call
from ._validate import (check_bool, check_ignore_index, check_int, check_real, check_reduction, isdtype,
                        known_any)

# The logits tile is the one scratch buffer that grows with the problem; it
# takes at most TILE_BYTES (with float32, N = 8192 and V = 65536: 1.6% of the
# 2 GiB of logits). Its shape is a trade-off of BLAS costs. Every tile's
# product packs the classifier rows it reads again, which costs ~V*D/rows per
# row of the problem: tall tiles amortize it. The backward wants whole
# vocabulary rows (it then starts from the forward's exponentials instead of
# recomputing the logits: 3 products, not 4), so it takes up to GRAD_ROWS of
# them; BLAS reaches its full speed from about 128 rows, and below MIN_ROWS
# whole rows the vocabulary is chunked instead. The forward alone has no use
# for whole rows: FORWARD_ROWS rows by TILE_BYTES / FORWARD_ROWS entries pack
# the classifier 8x less often than 256 whole rows (docs/performance.md,
# "Choices measured inside the kernels", gives the timings).
TILE_BYTES = 32 * 2**20
GRAD_ROWS = 256
# A gradient tile of whole rows holds at most 1/TILE_SHARE of the N x V
# logits (4%) where that leaves it FULL_SPEED_ROWS rows or more: with
# N = 4096 and V = 32768, 256 rows would be 6.3% of them, and the 163 rows
# taken instead cost about 1% more time (docs/linear_cross_entropy.md).
TILE_SHARE = 25
FULL_SPEED_ROWS = 128
FORWARD_ROWS = 1024
MIN_ROWS = 64
# A narrow vocabulary gets taller tiles, up to this many entries (256 KiB of
# float64: in a core's L2), so that each BLAS call has enough work to pay
# for itself; taller tiles leave L2 and are slower (docs/performance.md).
SMALL_TILE_ENTRIES = 32768
# SciPy's BLAS takes 32-bit integer sizes.
BLAS_INT_MAX = 2**31 - 1


# The rows a "mean" counts and a row's gradient factor: the NumPy route's
# and the Dask adapter's (the declaration below), so both divide alike.
def _kept_rows(arguments):
    """Rows whose target is not ``ignore_index``, of a NumPy call's arguments."""
    target = arguments["target"]
    ignore_index = _normalize_ignore_index(np, target, arguments["ignore_index"])
    ignored = 0 if ignore_index is None else int(np.count_nonzero(target == ignore_index))
    return float(target.shape[0] - ignored)


def _grad_scale(reduction, n_valid):
    """d loss / d (a kept row's loss). With every row ignored the "mean" is
    NaN and all gradients are 0, as in torch."""
    return grad_scale(reduction, n_valid, when_empty=0.0)


@declare(RowsOfLinearLoss(kept_rows=_kept_rows, grad_scale=_grad_scale),
         gradient=ReturnedGradient(("embeddings", "classifier", "bias"), none=None))
def linear_cross_entropy(
    embeddings,
    classifier,
    target,
    *,
    bias=None,
    ignore_index=None,
    label_smoothing=0.0,
    reduction="mean",
    chunk_size=None,
    return_grad=False,
):
    r"""Cross-entropy of ``embeddings @ classifier.T + bias`` against class
    indices, without forming the (N, V) logits.

    Computes what ``torch.nn.functional.cross_entropy(embeddings @
    classifier.T + bias, target, ...)`` computes (index targets), in tiles
    of the logits: BLAS makes one tile at a time and an online log-sum-exp
    consumes it ("Cut Your Losses in Large-Vocabulary Language Models",
    Wijmans et al., 2024). Extra memory is one tile (at most 32 MiB by
    default; when threads take rows of their own, see Notes, one per thread
    and their private gradient sums, those within another 32 MiB) plus about
    50 bytes per sample, beyond the inputs and the returned gradients.

    Parameters
    ----------
    embeddings : array, shape (N, D)
        Real floating array: the last hidden states, one row per sample.
    classifier : array, shape (V, D)
        The output layer's weights, one row per class; same dtype as
        ``embeddings``.
    target : array of int, shape (N,)
        Class indices in ``[0, V)``, or ``ignore_index``.
    bias : array, shape (V,), optional
        The output layer's bias; same dtype as ``embeddings``.
    ignore_index : int, optional
        Samples whose target equals it contribute no loss and no gradient and
        are left out of the mean's denominator (their "none" loss is 0).
        None (the default, unlike torch's -100) ignores nothing.
    label_smoothing : float, default 0.0
        ``eps`` in [0, 1]: the target distribution is ``(1 - eps)`` on the
        target class plus ``eps / V`` on every class.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides the sum by the number of non-ignored samples (NaN if
        there are none, as torch); "none" returns the per-sample losses.
    chunk_size : int, optional
        Vocabulary entries per tile. By default, with ``return_grad``, the
        whole vocabulary when at least 64 rows of it fit in 32 MiB (the
        backward then reuses the forward's exponentials: no product is
        recomputed), else as many entries as 64 rows fit in 32 MiB; forward
        only, as many as fit in 32 MiB next to 1024 rows. A tile has as many
        rows as fit in 32 MiB, up to 256 (with ``return_grad``; fewer, down
        to 128, where 256 rows would hold more than 4% of the N x V
        logits) or 1024.
    return_grad : bool, default False
        Also return the gradients.

    Returns
    -------
    loss : array
        0-d for "mean" and "sum", shape (N,) for "none"; ``embeddings``'
        dtype and array type.
    grads : tuple of arrays
        Only with ``return_grad=True``: ``(d_embeddings, d_classifier)``, or
        ``(d_embeddings, d_classifier, d_bias)`` when ``bias`` is given, the
        gradients of the returned loss (of its sum for "none"), shaped like
        the inputs.

    Notes
    -----
    NumPy arrays and PyTorch CPU tensors (float32, float64) take the compiled
    path: the matrix products run in SciPy's BLAS on
    :func:`softarray.get_num_threads` threads, with BLAS itself limited to
    one thread for the duration of the call (process-wide, through
    threadpoolctl). Where a private copy of the classifier's gradient per
    thread is cheap (small vocabularies), each thread takes blocks of rows of
    its own; otherwise each product is shared out over the threads, and the
    row-wise work runs on the same threads. Thread counts
    change results by rounding only. An operand whose rows are not
    contiguous in memory is copied once. Other arrays (GPU, array-api-strict, tensors that require grad) run
    the same algorithm with array-API calls, one vocabulary chunk of all rows
    at a time; when autograd records that computation it keeps every chunk,
    so memory is then bounded only with ``return_grad=True`` on tensors that
    do not require grad.

    ``-inf`` logits (from a ``-inf`` bias, say) leave their classes out. A
    row whose logits contain NaN or ``+inf``, or are all ``-inf``, gets a NaN
    loss and a NaN gradient row, as in torch.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> rng = np.random.default_rng(0)
    >>> emb, cls = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    >>> target = np.array([0, 4, 2, 1])
    >>> loss = sa.linear_cross_entropy(emb, cls, target)
    >>> logits = emb @ cls.T
    >>> reference = np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(4), target])
    >>> bool(np.isclose(loss, reference))
    True
    >>> loss, (d_emb, d_cls) = sa.linear_cross_entropy(emb, cls, target, return_grad=True)
    >>> d_emb.shape, d_cls.shape
    ((4, 3), (5, 3))
    """
    xp, emb, cls, tgt, bias = _arrays(embeddings, classifier, target, bias)
    eps = check_real(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    _check_options(ignore_index, reduction, chunk_size, return_grad)
    ignore_index = _normalize_ignore_index(xp, tgt, ignore_index)
    ignored = _check_target(xp, tgt, ignore_index, cls.shape[0])
    (a_emb, narrow), (a_cls, _) = _dispatch.kernel_operand(emb), _dispatch.kernel_operand(cls)
    a_bias = None if bias is None else _dispatch.kernel_operand(bias)[0]
    if a_emb is None or a_cls is None or (bias is not None and a_bias is None):
        return _run_portable(xp, emb, cls, tgt, bias, ignore_index, eps, reduction, chunk_size,
                             return_grad)
    loss, grads = _run_compiled(a_emb, a_cls, a_bias, _dispatch.numpy_view(tgt),
                                _dispatch.numpy_view(ignored), eps, reduction, chunk_size,
                                return_grad)
    # Half precision comes back in its dtype, rounded once (as the losses).
    loss = _dispatch.to_caller(xp, loss, emb, narrow)
    if not return_grad:
        return loss
    return loss, tuple(_dispatch.to_caller(xp, g, emb, narrow) for g in grads)


# ------------------------------------------------------------ validation

def _arrays(embeddings, classifier, target, bias):
    """The four arrays in embeddings' namespace, with their shapes and dtypes checked."""
    xp, emb = _dispatch.namespace_of(embeddings, "embeddings")
    cls = _dispatch.companion_array(xp, emb, classifier, "classifier", "embeddings")
    tgt = _dispatch.companion_array(xp, emb, target, "target", "embeddings")
    bias = None if bias is None else _dispatch.companion_array(xp, emb, bias, "bias", "embeddings")
    if not isdtype(xp, emb.dtype, "real floating"):
        raise TypeError(f"embeddings must have a real floating dtype, got {emb.dtype}")
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, D), got shape {tuple(emb.shape)}")
    n, d = emb.shape
    _check_matrix_like(cls, "classifier", (None, d), emb.dtype)
    v = cls.shape[0]
    if v == 0:
        raise ValueError("classifier must have at least one row (class)")
    if bias is not None:
        _check_matrix_like(bias, "bias", (v,), emb.dtype)
    if tgt.ndim != 1 or tgt.shape[0] != n:
        raise ValueError(f"target must have shape ({n},) to match embeddings, got {tuple(tgt.shape)}")
    if not isdtype(xp, tgt.dtype, "integral"):
        raise TypeError(f"target must be an integer array of class indices, got dtype {tgt.dtype}")
    if max(n, d, v) > BLAS_INT_MAX:
        raise ValueError(f"embeddings and classifier dimensions must be below 2**31, got N={n}, "
                         f"D={d}, V={v}")
    return xp, emb, cls, tgt, bias


def _check_matrix_like(a, name, shape, dtype):
    """a has len(shape) dimensions, the given sizes (None: any) and dtype."""
    if a.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape)):
        want = ", ".join("any" if s is None else str(s) for s in shape)
        raise ValueError(f"{name} must have shape ({want}) to match embeddings, got {tuple(a.shape)}")
    if _dispatch.native_dtype(a.dtype) != _dispatch.native_dtype(dtype):
        raise TypeError(f"{name} has dtype {a.dtype} but embeddings has {dtype}; cast one of them")


def _check_options(ignore_index, reduction, chunk_size, return_grad):
    check_ignore_index(ignore_index)
    check_reduction(reduction)
    if chunk_size is not None:
        check_int(chunk_size, "chunk_size")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size!r}")
    check_bool(return_grad, "return_grad")


def _normalize_ignore_index(xp, tgt, ignore_index):
    """None when no target can equal ignore_index: outside the target
    dtype's range (where array-api-strict refuses the comparison)."""
    info = xp.iinfo(tgt.dtype)
    return ignore_index if ignore_index is not None and info.min <= ignore_index <= info.max else None


def _check_target(xp, tgt, ignore_index, v):
    """The boolean mask of ignored samples; raises if any other target is
    not a class index."""
    if ignore_index is None:
        ignored = xp.zeros(tgt.shape, dtype=xp.bool, device=array_api_compat.device(tgt))
    else:
        ignored = tgt == ignore_index
    bad = ~ignored & ((tgt < 0) | (tgt >= v))
    if known_any(xp, bad):
        first = int(tgt[int(xp.argmax(xp.astype(bad, xp.int8)))])
        allowed = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        raise ValueError(f"target must hold class indices in [0, {v}){allowed}, found {first}")
    return ignored


# ---------------------------------------------------------------- compiled

def _blas_operand(a):
    """a (native byte order already: _dispatch.as_compiled_input) itself when
    BLAS can read it in place (rows contiguous, at least a row and less than
    2**31 entries apart), else a C-contiguous copy."""
    item = a.dtype.itemsize
    if (a.strides[1] == item and a.strides[0] % item == 0
            and item * a.shape[1] <= a.strides[0] <= item * BLAS_INT_MAX):
        return a
    return np.ascontiguousarray(a)


def tile_shape(n, v, itemsize, chunk_size, want_grad):
    """(rows, chunk) of the logits tile, within ``TILE_BYTES`` (see there).

    chunk: ``chunk_size`` if given. By default, with gradients: the whole
    vocabulary when ``MIN_ROWS`` rows of it (or all n, if fewer) fit, else as
    many entries as ``MIN_ROWS`` rows fit; forward only: what fits next to
    ``FORWARD_ROWS`` rows (or all n). rows: as many as fit next to the
    chunk, up to ``GRAD_ROWS`` (fewer for a tile above 1/``TILE_SHARE`` of
    the logits, down to ``FULL_SPEED_ROWS``) or ``FORWARD_ROWS``, at least
    1, at most n.
    """
    budget = max(1, TILE_BYTES // itemsize)
    max_rows = min(GRAD_ROWS, max(FULL_SPEED_ROWS, n // TILE_SHARE)) if want_grad else FORWARD_ROWS
    wanted_rows = max(1, min(n, MIN_ROWS if want_grad else FORWARD_ROWS))
    if chunk_size is not None:
        chunk = min(chunk_size, v)
    elif want_grad and budget // v >= wanted_rows:
        chunk = v
    else:
        chunk = min(v, max(1, budget // wanted_rows))
    rows = max(1, min(n, max(max_rows, SMALL_TILE_ENTRIES // chunk), budget // chunk))
    return rows, chunk


def row_teams(n, v, d, itemsize, rows, want_grad, n_threads):
    """How many threads take row blocks of their own (1: every product is
    shared out instead; see src/_linear_cross_entropy.pyx). Teams need one
    row block each, and with gradients each team after the first a private
    (V, D + 1) sum; they are used when those sums take at most
    ``TILE_BYTES`` in all, i.e. for small vocabularies, whose products are
    too narrow to share out evenly."""
    n_blocks = -(-n // rows)
    teams = max(1, min(n_threads, n_blocks))
    if want_grad and (teams - 1) * v * (d + 1) * itemsize > TILE_BYTES:
        return 1
    return teams


def _run_compiled(emb, cls, bias, tgt, ignored, eps, reduction, chunk_size, return_grad):
    """Loss and gradients (NumPy arrays) from the compiled kernel."""
    emb, cls = _blas_operand(emb), _blas_operand(cls)
    if bias is not None:
        bias = np.ascontiguousarray(bias, dtype=emb.dtype)
    # Ignored samples become -1: the kernel skips them without knowing ignore_index.
    # intp first: -1 would wrap around in an unsigned target dtype.
    target = np.where(ignored, -1, tgt.astype(np.intp, copy=False))
    n_valid = emb.shape[0] - int(np.count_nonzero(ignored))
    row_loss, grads = _kernel_call(emb, cls, bias, target, eps, _grad_scale(reduction, n_valid),
                                   None, chunk_size, return_grad, return_grad)
    loss = reduce_losses(row_loss, reduction, n_valid, row_loss.shape, emb.dtype)
    return loss, tuple(g for g in grads if g is not None)


def weighted_loss_and_classifier_grads(emb, cls, bias, target, sample_weight, label_smoothing=0.0):
    """For SoftmaxClassifier's fit, on NumPy arrays laid out for BLAS
    (``emb`` C-contiguous, ``target`` intp class indices, nothing ignored):
    ``(sum_i w_i loss_i, d_cls, d_bias)`` with ``w = sample_weight`` (None:
    all 1), the gradients of that sum. The embeddings' gradient is not
    computed: one product fewer and no (N, D) output."""
    if sample_weight is not None:
        sample_weight = np.ascontiguousarray(sample_weight, dtype=np.float64)
    row_loss, (_, d_cls, d_bias) = _kernel_call(emb, cls, bias, target, label_smoothing, 1.0,
                                                sample_weight, None, True, False)
    loss = float(row_loss.sum() if sample_weight is None else np.dot(row_loss, sample_weight))
    return loss, d_cls, d_bias


def _kernel_call(emb, cls, bias, target, eps, grad_scale, row_scale, chunk_size, want_grad,
                 want_emb_grad):
    """(per-sample losses, (d_emb, d_cls, d_bias) or Nones) from the kernel."""
    (n, d), v = emb.shape, cls.shape[0]
    dtype = emb.dtype
    rows, chunk = tile_shape(n, v, dtype.itemsize, chunk_size, want_grad)
    n_threads = threads_for_call()
    teams = row_teams(n, v, d, dtype.itemsize, rows, want_grad, n_threads)
    grads = (_gradient_arrays(n, d, v, dtype, bias is not None, want_emb_grad) if want_grad
             else (None,) * 3)
    partials = np.empty((teams - 1) * (v * d + v), dtype) if want_grad else None
    row_loss = np.zeros(n)
    if n > 0:
        with _single_threaded_blas:
            _kernels.linear_cross_entropy(
                emb, cls, bias, target, eps, grad_scale, row_scale,
                np.empty((teams * rows, chunk), dtype), np.empty((n, _kernels.STATE_FIELDS)),
                row_loss, *grads, partials, teams, n_threads,
            )
    return row_loss, grads


class _SingleThreadedBlas:
    """Context in which BLAS runs on one thread: the kernel shares each
    product out over its own threads (see src/_linear_cross_entropy.pyx),
    as scikit-learn's k-means does. The limit is process-wide, so calls from
    several Python threads share one: the first to enter sets it, the last
    to leave restores the original limits (nested threadpoolctl limits left
    out of order would restore the wrong ones)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._controller = None     # made on first use: it inspects every loaded library
        self._limiter = None

    def __enter__(self):
        with self._lock:
            if self._users == 0:
                if self._controller is None:
                    self._controller = threadpoolctl.ThreadpoolController()
                with _blas_control():
                    self._limiter = self._controller.limit(limits=1, user_api="blas")
            self._users += 1

    def __exit__(self, *exc_info):
        with self._lock:
            self._users -= 1
            if self._users == 0:
                with _blas_control():
                    self._limiter.restore_original_limits()


@contextlib.contextmanager
def _blas_control():
    """Let this thread change a pthreads OpenBLAS's limit, and hand the right
    back afterwards. threadpoolctl >= 3.6 lets only one "controlling" Python
    thread do so (the first to try, until it leaves a ``with`` limit) and
    silently ignores the others; the last Python thread to leave a call is
    often not the first to enter one. The caller holds the lock that orders
    every change softarray makes."""
    release = getattr(getattr(threadpoolctl, "OpenBLASController", None),
                      "clear_controlling_thread", None)
    if release is None:  # threadpoolctl < 3.6: any thread may set the limit
        yield
        return
    release(force=True)
    try:
        yield
    finally:
        release(force=True)


_single_threaded_blas = _SingleThreadedBlas()


def _gradient_arrays(n, d, v, dtype, with_bias, with_emb):
    """The kernel writes every entry; with no samples nothing is written, and
    the gradients of the classifier and bias are zero."""
    alloc = np.zeros if n == 0 else np.empty
    d_bias = alloc(v, dtype) if with_bias else None
    d_emb = np.empty((n, d), dtype) if with_emb else None
    return d_emb, alloc((v, d), dtype), d_bias


# ---------------------------------------------------------------- portable

def _run_portable(xp, emb, cls, tgt, bias, ignore_index, eps, reduction, chunk_size, return_grad):
    n, v = emb.shape[0], cls.shape[0]
    if chunk_size is None:
        # All rows of one chunk at a time: the chunk gets the tile's bytes.
        itemsize = xp.finfo(emb.dtype).bits // 8
        chunk_size = max(1, min(v, TILE_BYTES // (itemsize * max(n, 1))))
    loss, grads = _portable.linear_cross_entropy(
        xp, emb, cls, tgt, bias=bias, ignore_index=ignore_index, label_smoothing=eps,
        reduction=reduction, chunk_size=chunk_size, return_grad=return_grad,
    )
    return (loss, grads) if return_grad else loss
