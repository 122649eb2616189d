"""Type stubs for the compiled loss kernels (src/_losses.pyx)."""
from typing import Any, Final

import numpy as np
import numpy.typing as npt

_Float = np.float32 | np.float64

KINDS: Final[dict[str, int]]
ELEMENTWISE_KINDS: Final[dict[str, int]]
LOSS_OPTIONS: Final[frozenset[str]]
ELEMENTWISE_OPTIONS: Final[frozenset[str]]

def samples(
    x: npt.NDArray[_Float],
    y: npt.NDArray[np.int64],
    t: npt.NDArray[_Float],
    grad: npt.NDArray[_Float],
    loss: npt.NDArray[np.float64],
    class_weight: npt.NDArray[np.float64],
    opts: dict[str, Any],
    n_threads: int,
) -> None: ...
def total(per_item: npt.ArrayLike) -> float: ...
PLAIN_REDUCTIONS: Final[dict[str, int]]

def plain_cross_entropy(
    logits: object,
    target: object,
    axis: object,
    reduction: object,
    with_grad: bool,
    n_threads: int,
) -> npt.NDArray[Any] | tuple[npt.NDArray[Any], npt.NDArray[Any]] | None: ...
def samples_half(
    x: npt.NDArray[np.uint16],
    kind: int,
    y: npt.NDArray[np.int64],
    grad: npt.NDArray[np.uint16],
    loss: npt.NDArray[np.float64],
    class_weight: npt.NDArray[np.float64],
    opts: dict[str, object],
    n_threads: int,
) -> None: ...
def elementwise(
    x: npt.NDArray[_Float],
    t: npt.NDArray[_Float],
    weight: npt.NDArray[_Float],
    pos_weight: npt.NDArray[_Float],
    out: npt.NDArray[_Float],
    grad: npt.NDArray[_Float],
    row_loss: npt.NDArray[np.float64],
    opts: dict[str, Any],
    n_threads: int,
) -> None: ...
