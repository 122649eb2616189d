"""Type stubs for the compiled box kernels (src/_boxes.pyx)."""
import numpy as np
import numpy.typing as npt

_Float = np.float32 | np.float64

def box_area(boxes: npt.NDArray[_Float], out: npt.NDArray[_Float]) -> None: ...
def box_convert(boxes: npt.NDArray[_Float], in_fmt: int, out_fmt: int, out: npt.NDArray[_Float]) -> None: ...
def box_iou(
    boxes1: npt.NDArray[_Float],
    boxes2: npt.NDArray[_Float],
    kind: int,
    eps: float,
    out: npt.NDArray[_Float],
    n_threads: int,
) -> None: ...
def box_iou_loss(
    boxes1: npt.NDArray[_Float],
    boxes2: npt.NDArray[_Float],
    kind: int,
    eps: float,
    scale: float,
    loss: npt.NDArray[_Float],
    grad1: npt.NDArray[_Float] | None,
    grad2: npt.NDArray[_Float] | None,
    n_threads: int,
) -> None: ...
def order_by_score(scores: npt.NDArray[_Float], idx: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
def nms(
    boxes: npt.NDArray[_Float],
    scores: npt.NDArray[_Float],
    labels: npt.NDArray[np.int64] | None,
    iou_threshold: float,
    score_threshold: float | None,
    max_keep: int,
    n_threads: int,
) -> npt.NDArray[np.int64]: ...
def soft_nms(
    boxes: npt.NDArray[_Float],
    scores: npt.NDArray[_Float],
    labels: npt.NDArray[np.int64] | None,
    gaussian: bool,
    sigma: float,
    iou_threshold: float,
    score_threshold: float,
    max_keep: int,
    n_threads: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[_Float]]: ...
