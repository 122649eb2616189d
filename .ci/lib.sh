# Sourced by the CI stages that build the extension into a virtual
# environment of their own (.ci/sanitize, .ci/compilers) and by those that
# run the kernel tests once more (.ci/simd-baseline).

# The kernel tests: every compiled kernel (softmax family, losses, linear
# cross-entropy, gating, boxes) through its public functions, against
# independent references. Less the array_api_strict backend, which runs the
# pure-Python portable path and no C.
KERNEL_TESTS=(tests/test_softmax.py tests/test_losses.py tests/test_gating.py
              tests/test_boxes.py tests/test_linear_cross_entropy.py -k "not array_api_strict")

# ci_kernel_venv DIR: a virtual environment in DIR/venv, made once and reused
# by a later call, with the build requirements (pyproject [build-system], for
# --no-build-isolation) and the test extras; never torch (its cross-checks
# skip: the default build's run has them). A caller's venv is deactivated
# first so that this one is made from the base interpreter. Prints the venv's
# python.
ci_kernel_venv() {
    local venv="$1/venv"
    if [ ! -x "$venv/bin/python" ]; then
        env -u VIRTUAL_ENV python3 -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet "meson-python>=0.16" "meson>=1.4" ninja "Cython>=3.0.8" \
        "scipy>=1.11" numpy "pytest>=7" "hypothesis>=6" "mpmath>=1.3" "array-api-strict>=2.0" \
        "threadpoolctl>=3.1" "array-api-compat>=1.9" >&2
    echo "$venv/bin/python"
}
