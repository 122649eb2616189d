"""Type stubs for the compiled softmax-family kernels (src/_softmax.pyx)."""
from typing import Final

import numpy as np
import numpy.typing as npt

_Float = np.float32 | np.float64

OPS: Final[dict[str, int]]
LOGSUMEXP: Final[int]

def rows(
    x: npt.NDArray[_Float], out: npt.NDArray[_Float], op: int, scale: float, n_threads: int
) -> None: ...
def plain_rows(
    x: object, axis: object, op: int, scale: float, n_threads: int
) -> npt.NDArray[_Float] | None: ...
def plain_rows_at(
    x: object, axis: object, op: int, temperature: object, n_threads: int
) -> npt.NDArray[_Float] | None: ...
def rows_logsumexp(
    x: npt.NDArray[_Float], out: npt.NDArray[_Float], scale: float, n_threads: int
) -> None: ...
def cols(
    x: npt.NDArray[_Float], out: npt.NDArray[_Float], op: int, scale: float, n_threads: int
) -> None: ...
