"""The detect stage: frames in, faces (box, score, five keypoints) out, in each frame's own pixel coordinates.

Two detectors share one interface: SCRFD-10G (GHOST's detector; needs the batch-axis edit of the official
ONNX, see ghostrt.export.scrfd) and RetinaFace-MobileNet0.25 (freely licensed). Both letterbox every frame
into one square canvas (aspect kept, black fill, top-left) so frames of any size batch together.
Frames whose long side is over twice the canvas are shrunk with area averaging instead of bilinear sampling:
a 4000-px frame sampled bilinearly down to 640 aliases and faces get missed. Coordinates map back through the
single scale factor either way.
"""

from functools import lru_cache
from typing import Mapping, Sequence

import cv2
import numpy as np

from ghostrt.runtime.nets import retinaface_model
from ghostrt.runtime.nets.retinaface_model import write_retinaface_onnx  # noqa: F401  (re-exported for the export side)
from ghostrt.runtime.types import Executor, Face

SIZE = 640
STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2
SCRFD_OUTPUTS = tuple(f"{g}_{s}" for g in ("score", "bbox", "kps") for s in STRIDES)
SCORE_THRESHOLD = 0.6
NMS_IOU = 0.4
AREA_SHRINK_BELOW = 0.5   # scale factors under this use INTER_AREA (see module docstring)


# ------------------------------------------------------------------------------------------------ letterbox

def letterbox_image(frame: np.ndarray, size: int = SIZE) -> tuple[np.ndarray, float]:
    """RGB uint8 frame -> (size×size×3 uint8 canvas with the resized frame at the top-left, scale)."""
    h, w = frame.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = min(size, int(round(w * scale))), min(size, int(round(h * scale)))
    interp = cv2.INTER_AREA if scale < AREA_SHRINK_BELOW else cv2.INTER_LINEAR
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(frame, (new_w, new_h), interpolation=interp)
    return canvas, scale


def letterbox(frame: np.ndarray, size: int = SIZE) -> tuple[np.ndarray, float]:
    """SCRFD input: (1, 3, size, size) float32 RGB, (x − 127.5) / 128, and the scale canvas = frame · scale."""
    canvas, scale = letterbox_image(frame, size)
    blob = (canvas.astype(np.float32) - 127.5) / 128.0
    return np.ascontiguousarray(blob.transpose(2, 0, 1)[None]), scale


# ------------------------------------------------------------------------------------------------------ NMS

def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression (OpenCV), highest score first.
    Scores must be > 0 (thresholding happens before)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float64)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.astype(np.float64).tolist(), 0.0, float(iou))
    keep = np.asarray(keep, np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")]


def _faces(boxes, scores, kps, scale: float, threshold: float, nms_iou: float) -> list[Face]:
    """Threshold, suppress, undo the letterbox scale, build Faces sorted by score."""
    mask = scores >= threshold
    boxes, scores, kps = boxes[mask], scores[mask], kps[mask]
    keep = nms(boxes, scores, nms_iou)
    return [Face(box=(boxes[i] / scale).astype(np.float32), score=float(scores[i]),
                 kps=(kps[i] / scale).astype(np.float32)) for i in keep]


# ---------------------------------------------------------------------------------------------------- SCRFD

@lru_cache(maxsize=8)
def anchor_centres(size: int, stride: int) -> np.ndarray:
    """(A, 2) anchor centres (x, y): grid · stride, row-major, no half-cell offset, each repeated per anchor."""
    cells = size // stride
    ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
    centres = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32) * stride
    out = np.repeat(centres, ANCHORS_PER_CELL, axis=0)
    out.setflags(write=False)
    return out


def _scrfd_arrays(outputs) -> list[np.ndarray]:
    """The nine head outputs in position order, each (B, A, C); a single-image (A, C) file gets B = 1."""
    if isinstance(outputs, Mapping):
        if all(name in outputs for name in SCRFD_OUTPUTS):
            arrays = [outputs[name] for name in SCRFD_OUTPUTS]
        else:
            arrays = list(outputs.values())
    else:
        arrays = list(outputs)
    if len(arrays) != 9:
        raise ValueError(f"SCRFD has 9 outputs, got {len(arrays)}")
    return [np.asarray(a)[None] if np.ndim(a) == 2 else np.asarray(a) for a in arrays]


def decode_scrfd(outputs, scales: Sequence[float], threshold: float = SCORE_THRESHOLD,
                 nms_iou: float = NMS_IOU, size: int = SIZE) -> list[list[Face]]:
    """SCRFD head outputs (dict by name, or 9 arrays by position) -> faces per image, frame coordinates.
    Distances and keypoint offsets are in stride units; boxes are (cx − l, cy − t, cx + r, cy + b)."""
    arrays = _scrfd_arrays(outputs)
    batch = arrays[0].shape[0]
    if len(scales) != batch:
        raise ValueError(f"{len(scales)} scales for a batch of {batch}")
    results = []
    for b in range(batch):
        boxes, scores, kps = [], [], []
        for level, stride in enumerate(STRIDES):
            centres = anchor_centres(size, stride)
            score = arrays[level][b].reshape(-1)
            if score.shape[0] != centres.shape[0]:
                raise ValueError(f"stride {stride}: {score.shape[0]} anchors, a {size} canvas has "
                                 f"{centres.shape[0]}")
            dist = arrays[3 + level][b].reshape(-1, 4) * stride
            offs = arrays[6 + level][b].reshape(-1, 5, 2) * stride
            boxes.append(np.concatenate([centres - dist[:, :2], centres + dist[:, 2:]], axis=1))
            kps.append(centres[:, None, :] + offs)
            scores.append(score)
        results.append(_faces(np.concatenate(boxes), np.concatenate(scores), np.concatenate(kps),
                              scales[b], threshold, nms_iou))
    return results


# ------------------------------------------------------------------------------------------------ detectors

class _Detector:
    """Shared batching: letterbox all frames into one canvas size, run in chunks of at most `max_batch`."""

    def __init__(self, executor: Executor, size: int = SIZE, threshold: float = SCORE_THRESHOLD,
                 nms_iou: float = NMS_IOU, max_batch: int | None = None):
        self.executor = executor
        self.size = size
        self.threshold = threshold
        self.nms_iou = nms_iou
        self.max_batch = max_batch
        self.input_name = list(executor.input_names)[0]

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        step = self.max_batch or max(len(frames), 1)
        results: list[list[Face]] = []
        for start in range(0, len(frames), step):
            chunk = frames[start:start + step]
            canvases, scales = zip(*(letterbox_image(_rgb(f), self.size) for f in chunk))
            results.extend(self._run(np.stack(canvases), list(scales)))
        return results

    def _run(self, canvases: np.ndarray, scales: list[float]) -> list[list[Face]]:
        raise NotImplementedError


def _rgb(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frames must be RGB uint8 H×W×3, got {frame.dtype} {frame.shape}")
    return frame


class ScrfdDetector(_Detector):
    """SCRFD-10G with the batch axis (outputs score_8 … kps_32); a single-image file works at batch 1."""

    def _run(self, canvases, scales):
        blob = (canvases.astype(np.float32) - 127.5) / 128.0
        blob = np.ascontiguousarray(blob.transpose(0, 3, 1, 2))
        outputs = self.executor.run({self.input_name: blob})
        if not all(name in outputs for name in SCRFD_OUTPUTS):
            outputs = [outputs[name] for name in self.executor.output_names]
        return decode_scrfd(outputs, scales, self.threshold, self.nms_iou, self.size)


class RetinaFaceDetector(_Detector):
    """RetinaFace-MobileNet0.25 (ONNX from write_retinaface_onnx): outputs loc, conf, landmarks."""

    def _run(self, canvases, scales):
        outputs = self.executor.run({self.input_name: retinaface_model.normalise(canvases)})
        results = []
        for b, scale in enumerate(scales):
            boxes, kps = retinaface_model.decode(outputs["loc"][b], outputs["landmarks"][b], self.size)
            scores = outputs["conf"][b][:, 1]
            results.append(_faces(boxes, scores, kps, scale, self.threshold, self.nms_iou))
        return results


def make_detector(kind: str, executor: Executor, **options) -> _Detector:
    """`kind` is "scrfd" or "retinaface"; options go to the detector (size, threshold, nms_iou, max_batch)."""
    detectors = {"scrfd": ScrfdDetector, "retinaface": RetinaFaceDetector}
    if kind not in detectors:
        raise ValueError(f"unknown detector {kind!r}; choose one of {sorted(detectors)}")
    return detectors[kind](executor, **options)
