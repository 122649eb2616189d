/*
 * Row kernels of the fused linear cross-entropy, for float and double.
 *
 * The matrix products run in BLAS (called from _linear_cross_entropy.pyx);
 * what is left is per row of a tile of logits: fold a chunk of the row into
 * the row's running (max, sum of exp) state, and later turn the chunk into
 * the loss gradient in place. Everything here is branch-free inside its loops
 * so the loops vectorize, and nothing allocates or fails.
 */
#ifndef SOFTARRAY_LINEAR_CROSS_ENTROPY_KERNELS_H
#define SOFTARRAY_LINEAR_CROSS_ENTROPY_KERNELS_H

#include <stddef.h>
#include <math.h>
#include "_simd.h"

/* Running state of one row over the vocabulary chunks seen so far. */
typedef struct {
    double max;     /* running maximum of the logits; NaN once a NaN was seen (and then sticky) */
    double sum;     /* sum of exp(z - max) */
    double target;  /* the target's logit, once its chunk has been seen */
    double total;   /* sum of the logits (label smoothing only) */
} sa_lce_row;

/* float partial sums run over at most this many entries before they are
 * added into the double state: 512 terms keep float's error near 2^-24 * 64. */
#define SA_LCE_BLOCK 512
/* Widest column block of the bias gradient's column sums (double
 * accumulators on the stack: 4 KiB). */
#define SA_LCE_COLS 512
/* Narrow vocabularies (V <= SA_LCE_NARROW_V, whole rows in the tile) use a
 * class-major tile: entry (row i, class j) at j * ld + i, so that the row
 * loops run down each class with one row per SIMD lane (no horizontal
 * reductions, no per-row loop start-up: with V = 20 those cost more than
 * the exponentials). The row-wise scratch works on strips of
 * SA_LCE_STRIP rows (a few KiB on the stack). */
#define SA_LCE_NARROW_V 64
#define SA_LCE_STRIP 256

SA_INLINE void sa_lce_row_init(sa_lce_row *st)
{
    st->max = -INFINITY;
    st->sum = 0.0;
    st->target = 0.0;
    st->total = 0.0;
}

/* log(sum(exp(z))) of a finished row. A row whose maximum is not finite (a
 * NaN or +inf logit, or only -inf) gets NaN, as torch's cross_entropy gives
 * there (its z - max is inf - inf); its sums were skipped. */
SA_INLINE double sa_lce_lse(const sa_lce_row *st)
{
    return st->max - st->max == 0.0 ? st->max + log(st->sum) : NAN;
}

#define SA_T float
#define SA_SUF f32
#define SA_EXP_SMALL sa_exp_small_f32
#include "_linear_cross_entropy_impl.h"
#undef SA_T
#undef SA_SUF
#undef SA_EXP_SMALL

#define SA_T double
#define SA_SUF f64
#define SA_EXP_SMALL sa_exp_small_f64
#include "_linear_cross_entropy_impl.h"
#undef SA_T
#undef SA_SUF
#undef SA_EXP_SMALL

#endif /* SOFTARRAY_LINEAR_CROSS_ENTROPY_KERNELS_H */
