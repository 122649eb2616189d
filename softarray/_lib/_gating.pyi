"""Type stubs for the compiled gating kernels (src/_gating.pyx)."""
import numpy as np
import numpy.typing as npt

_Float = np.float32 | np.float64

def topk_rows(
    x: npt.NDArray[_Float],
    k: int,
    largest: bool,
    sorted: bool,
    values: npt.NDArray[_Float],
    indices: npt.NDArray[np.int64],
    n_threads: int,
) -> None: ...
def plain_topk(
    x: object, k: object, axis: object, largest: object, sorted: object, n_threads: int
) -> tuple[npt.NDArray[_Float], npt.NDArray[np.int64]] | None: ...
def plain_gate(
    x: object, k: object, over_selected: bool, n_threads: int
) -> tuple[npt.NDArray[_Float], npt.NDArray[np.int64]] | None: ...
def gate_rows(
    x: npt.NDArray[_Float],
    k: int,
    inv_temperature: float,
    over_selected: bool,
    weights: npt.NDArray[_Float],
    indices: npt.NDArray[np.int64],
    prob_sum: npt.NDArray[np.float64],
    n_threads: int,
) -> None: ...
def draw_from_candidates(
    values: npt.NDArray[_Float],
    indices: npt.NDArray[np.int64],
    u: npt.NDArray[np.float64],
    temperature: float,
    top_p: float,
    min_p: float,
    mass: npt.NDArray[np.float64],
) -> npt.NDArray[np.int64]: ...
