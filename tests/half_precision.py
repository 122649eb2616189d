"""The accuracy rule of half precision (docs/dispatch.md): computed in
float32 and rounded once, a half result is the exact (float64) result
rounded to its dtype, or one step of that dtype away from it."""
import numpy as np


def assert_within_one_step(got, want64):
    """got: a NumPy float16 or ml_dtypes bfloat16 array, or a torch float16
    or bfloat16 tensor; want64: the float64 reference (NumPy)."""
    if isinstance(got, np.ndarray):
        dtype = got.dtype
        with np.errstate(over="ignore", invalid="ignore"):   # -1e5 rounds to float16's -inf
            exact = np.asarray(want64).astype(dtype)
            step = np.abs(np.nextafter(exact, np.asarray(np.inf, dtype)).astype(np.float64)
                          - exact.astype(np.float64))
        got64, exact64 = got.astype(np.float64), exact.astype(np.float64)
    else:
        import torch
        exact = torch.from_numpy(np.asarray(want64, np.float64)).to(got.dtype)
        step = (torch.nextafter(exact, torch.tensor(float("inf"), dtype=got.dtype)) - exact).double().abs().numpy()
        got64, exact64 = got.double().numpy(), exact.double().numpy()
    same = (np.isnan(got64) & np.isnan(exact64)) | (got64 == exact64)
    with np.errstate(invalid="ignore"):     # inf - inf where both are the same infinity
        assert np.all(same | (np.abs(got64 - exact64) <= step)), (got64, exact64)
