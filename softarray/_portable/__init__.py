"""Portable implementations written only with array-API calls: they run on
any array library (GPU arrays, JAX, Dask, array-api-strict) and give the
same results as the compiled kernels, special values included."""
