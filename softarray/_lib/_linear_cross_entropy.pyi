"""Type stubs for the compiled fused linear cross-entropy (src/_linear_cross_entropy.pyx)."""
from typing import Final

import numpy as np
import numpy.typing as npt

_Float = np.float32 | np.float64

STATE_FIELDS: Final[int]

def linear_cross_entropy(
    emb: npt.NDArray[_Float],
    cls: npt.NDArray[_Float],
    bias: npt.NDArray[_Float] | None,
    target: npt.NDArray[np.intp],
    smoothing: float,
    grad_scale: float,
    row_scale: npt.NDArray[np.float64] | None,
    tile: npt.NDArray[_Float],
    state: npt.NDArray[np.float64],
    row_loss: npt.NDArray[np.float64],
    d_emb: npt.NDArray[_Float] | None,
    d_cls: npt.NDArray[_Float] | None,
    d_bias: npt.NDArray[_Float] | None,
    partials: npt.NDArray[_Float] | None,
    teams: int,
    n_threads: int,
) -> None: ...
