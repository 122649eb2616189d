/*
 * Classification-loss kernels for float and double: the loss of every sample
 * and, optionally, its gradient with respect to the logits, in one fused call.
 *
 * Softmax-based losses read a sample's logits twice at most: pass 1 computes
 * the running maximum and rescaled sum (the softmax family's sa_stats, so
 * log(sum) - max is a log1p and stays accurate when one logit dominates)
 * plus whatever other sums the loss needs; pass 2 writes the gradient,
 * which for all of them is a combination of softmax, the one-hot target and
 * per-class terms. Nothing of the logits' size is allocated.
 *
 * Logits are addressed as (outer, classes, inner) with strides in elements,
 * so the class axis may be any axis of the caller's array: a sample is one
 * (outer, inner) pair. When the class stride is 1 the loops are contiguous
 * and vectorize; other strides take the same code with a stride.
 *
 * The Python layer (softarray/_losses.py) validates everything, maps ignored
 * samples to target -1, and does the reduction over samples; nothing here
 * fails or allocates.
 */
#ifndef SOFTARRAY_LOSSES_KERNELS_H
#define SOFTARRAY_LOSSES_KERNELS_H

#include <stdint.h>
#include "_softmax_kernels.h"

enum sa_loss_kind {
    SA_LOSS_CROSS_ENTROPY = 0,      /* index target, label smoothing, class weights */
    SA_LOSS_CROSS_ENTROPY_PROBS = 1,/* probability target, label smoothing, class weights */
    SA_LOSS_NLL = 2,                /* input is log-probabilities */
    SA_LOSS_FOCAL = 3,              /* softmax focal loss, class weights are alpha */
    SA_LOSS_COMP_SUM = 4,           /* comp-sum family Phi_tau (GCE, MAE, CE, sum-exp) */
    SA_LOSS_Z = 5,                  /* Z-loss: softplus of the standardized target logit */
    SA_LOSS_LSE_PENALTY = 6,        /* weight * logsumexp^2 (router z-loss) */
    SA_LOSS_MARGIN_WW = 7,          /* multiclass hinge, Weston-Watkins (torch's multi_margin_loss) */
    SA_LOSS_MARGIN_CS = 8,          /* multiclass hinge, Crammer-Singer */
    SA_LOSS_KL_LOGITS = 9,          /* KL(target || softmax(logits)) */
};

enum sa_elementwise_kind {
    SA_EW_BCE = 0,                  /* binary cross-entropy with logits (weight, pos_weight) */
    SA_EW_SIGMOID_FOCAL = 1,        /* torchvision's sigmoid_focal_loss */
    SA_EW_KL = 2,                   /* KL pointwise on log-probabilities */
};

/* Everything a loss kind needs besides the arrays; unused fields are ignored. */
typedef struct {
    int kind;
    double smoothing;       /* label smoothing epsilon */
    double gamma;           /* focal exponent */
    double tau;             /* comp-sum parameter */
    double a, b;            /* Z-loss sharpness and location */
    double margin;          /* hinge margin */
    int power;              /* hinge power p (1 or 2) */
    double weight;          /* logsumexp penalty weight */
    int log_target;         /* KL: the target holds log-probabilities */
    double grad_scale;      /* d(reduced loss) / d(per-sample loss) */
    const double *class_weight;     /* per-class weights (length C) or NULL */
    double class_weight_sum;        /* sum of class_weight (C when NULL) */
} sa_loss_opts;

/* What pass 2 of a sample split over threads needs (sa_loss_split_finish):
 * g_c = a exp(z_c - max) + D w_c, then B added at the target. */
typedef struct {
    double max, a, B, D;
    int ignored;            /* target -1: no loss, a zero gradient */
} sa_loss_split_grad;

/* Elementwise losses: alpha, gamma for sigmoid focal; log_target for KL. */
typedef struct {
    int kind;
    double alpha, gamma;
    int log_target;
    double grad_scale;
} sa_ew_opts;

/* The index-target losses built on log-softmax: the kinds that
 * sa_loss_samples' short-row tile computes and that a long sample may be
 * split over threads for (sa_loss_split_*, _losses_impl.h). */
SA_INLINE int sa_loss_index_softmax_kind(int kind)
{
    return kind == SA_LOSS_CROSS_ENTROPY || kind == SA_LOSS_FOCAL || kind == SA_LOSS_COMP_SUM
           || kind == SA_LOSS_LSE_PENALTY;
}

SA_INLINE double sa_softplus(double x) { return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x))); }
SA_INLINE double sa_sigmoid(double x)
{
    const double e = exp(-fabs(x));
    return x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

#define SA_T float
#define SA_SUF f32
#define SA_EXP sa_exp_f32
#define SA_EXP_SMALL sa_exp_small_f32
#define SA_LOG sa_log_f32
#define SA_LOG1P sa_log1p_f32
#define SA_EXP_STORE_REST_COUNT_AVX2 sa_x86_exp_store_rest_count_f32    /* AVX2, or AVX-512 where it runs */
#define SA_SHORT_STATS_AVX2 sa_avx2_short_stats_f32
#include "_losses_impl.h"
#undef SA_EXP_STORE_REST_COUNT_AVX2
#undef SA_SHORT_STATS_AVX2
#undef SA_T
#undef SA_SUF
#undef SA_EXP
#undef SA_EXP_SMALL
#undef SA_LOG
#undef SA_LOG1P

#define SA_T double
#define SA_SUF f64
#define SA_EXP sa_exp_f64
#define SA_EXP_SMALL sa_exp_small_f64
#define SA_LOG sa_log_f64
#define SA_LOG1P sa_log1p_f64
#define SA_EXP_STORE_REST_COUNT_AVX2 sa_x86_exp_store_rest_count_f64    /* AVX2, or AVX-512 where it runs */
#define SA_SHORT_STATS_AVX2 sa_x86_short_stats_f64
#include "_losses_impl.h"
#undef SA_EXP_STORE_REST_COUNT_AVX2
#undef SA_SHORT_STATS_AVX2
#undef SA_T
#undef SA_SUF
#undef SA_EXP
#undef SA_EXP_SMALL
#undef SA_LOG
#undef SA_LOG1P

#endif /* SOFTARRAY_LOSSES_KERNELS_H */
