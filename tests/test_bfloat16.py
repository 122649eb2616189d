"""NumPy arrays of ml_dtypes' bfloat16 (what JAX hands NumPy users) in
every family, as NumPy float16 arrays are taken: NumPy's own ``isdtype``
refuses bfloat16, so each family's checks must know it. The result has the
dtype the same call gives on float16 input with bfloat16 in place of
float16, and the values of the same call on the float32 values of the
input, to bfloat16's precision."""
import numpy as np
import pytest

import softarray as sa

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)

RNG = np.random.default_rng(44)
X = RNG.standard_normal((16, 8)).astype(np.float32)
Y = RNG.integers(0, 8, 16)
P = RNG.dirichlet(np.ones(8), 16).astype(np.float32)
C = RNG.standard_normal((5, 8)).astype(np.float32)

# name -> a call of (x, p, c) in one floating dtype
CALLS = {
    "softmax": lambda x, p, c: sa.softmax(x, axis=0),
    "logsumexp": lambda x, p, c: sa.logsumexp(x, axis=-1),
    "log_stablemax": lambda x, p, c: sa.log_stablemax(x),
    "cross_entropy index": lambda x, p, c: sa.cross_entropy(x, Y, label_smoothing=0.1),
    "cross_entropy probabilities": lambda x, p, c: sa.cross_entropy(x, p, reduction="none"),
    "binary_cross_entropy_with_logits": lambda x, p, c: sa.binary_cross_entropy_with_logits(x, p),
    "kl_div": lambda x, p, c: sa.kl_div(sa.log_softmax(x), p, reduction="batchmean"),
    "sigmoid_focal_loss": lambda x, p, c: sa.sigmoid_focal_loss(x, p, reduction="mean"),
    "z_loss": lambda x, p, c: sa.z_loss(x, Y),
    "linear_cross_entropy": lambda x, p, c: sa.linear_cross_entropy(x, c, Y % 5),
    "topk": lambda x, p, c: sa.topk(x, 3)[0],
    "topk_gating": lambda x, p, c: sa.topk_gating(x, 2).weights,
    "dense_to_sparse_gating": lambda x, p, c: sa.dense_to_sparse_gating(x, temperature=0.5),
    "gumbel_softmax": lambda x, p, c: sa.gumbel_softmax(x, rng=np.random.default_rng(0)),
}


@pytest.mark.parametrize("name", CALLS)
def test_numpy_bfloat16_is_taken_as_float16_is(name):
    call = CALLS[name]
    half = call(X.astype(np.float16), P.astype(np.float16), C.astype(np.float16))
    got = call(X.astype(BF16), P.astype(BF16), C.astype(BF16))
    want_dtype = BF16 if np.asarray(half).dtype == np.float16 else np.asarray(half).dtype
    assert np.asarray(got).dtype == want_dtype
    exact = call(X.astype(BF16).astype(np.float32), P.astype(BF16).astype(np.float32),
                 C.astype(BF16).astype(np.float32))
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(exact, np.float64),
                               rtol=2**-7, atol=2**-7)
