"""show_config: what this build of softarray is and how it runs."""
import sys

import numpy as np

from ._lib import OPENMP_WAIT_POLICY, _runtime
from ._output_cache import OUTPUT_CACHE_MIN_BYTES, output_cache_info
from ._threads import get_num_threads
from ._version import __version__


def config():
    """The build and runtime facts that :func:`show_config` prints, as a dict."""
    return {
        "version": __version__,
        "compiled_kernels": _compiled_loaded(),
        "openmp": _runtime.openmp_enabled(),
        "openmp_max_threads": _runtime.omp_max_threads(),
        "softarray_threads": get_num_threads(),
        "openmp_wait_policy": OPENMP_WAIT_POLICY,
        "simd_path": _runtime.simd_path(),
        "output_cache": _output_cache_text(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }


def _output_cache_text():
    limit, held = output_cache_info()
    if not limit:
        return "off"
    return (f"reuses the memory of freed results of {OUTPUT_CACHE_MIN_BYTES >> 20} MiB or more, "
            f"keeping up to {limit >> 20} MiB (holds {held >> 20} MiB now; "
            f"sa.set_output_cache(0) turns it off)")


def _compiled_loaded():
    from ._lib import _softmax

    return _softmax.__file__.endswith((".so", ".pyd")) and hasattr(_softmax, "rows")


def show_config(print_out=True):
    """Print (and return) the version, whether the compiled kernels are
    loaded, OpenMP on/off and its thread count, and the SIMD path the
    kernels run (``simd_path``: the x86-64-v3 code where the CPU has it,
    unless ``SOFTARRAY_SIMD=baseline`` was set when softarray was imported).

    Parameters
    ----------
    print_out : bool, default True
        Print the report; the dict is returned either way.

    Returns
    -------
    dict

    Examples
    --------
    >>> import softarray as sa
    >>> sa.show_config(print_out=False)["compiled_kernels"]
    True
    """
    info = config()
    if print_out:
        width = max(len(k) for k in info)
        for key, value in info.items():
            print(f"{key:<{width}} : {value}")
    return info
