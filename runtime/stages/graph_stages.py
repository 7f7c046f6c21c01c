"""The crop warp and the paste-back blend run as ONNX graphs (runtime.graphs) through the same executors as the
nets, instead of OpenCV on the host.

Why: on a GPU the frame should go up once and the crops and the blended regions should be made where the nets
run; that only happens if these two steps are models the executor machinery can load. `GraphStages` writes
the two graphs into the engines' onnx folder under content-addressed names (a changed graph gets a new file,
an unchanged one is written once and reused) and asks `make_executor` for an FP32 executor for each, with the
backend the nets got. TensorRT therefore finds (or, until a GPU build step makes one, fails to find) an engine
for them exactly as it does for a net; nothing here is GPU code.

`crop` and `paste` have the semantics of the OpenCV functions they replace (align.warp_crop over all faces,
blend.paste_back_faces): same shapes, same in-place rules, same answers to a bad matrix or no faces.
`OpenCvStages` is that OpenCV path behind the same two methods, so a caller holds one stages object.
"""

import hashlib
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ghostrt.runtime.stages import align, blend, graphs
from ghostrt.runtime.backends.executors import Choice, make_executor

GRAPH_PRECISION = "fp32"     # 8-bit in, 8-bit out, a few multiply-adds per pixel: nothing to gain below FP32
# frame ← crop matrix fed for a face whose alignment matrix is not finite: every sample lands far outside the
# frame, so the crop is all zeros, which is what cv2.warpAffine makes of a NaN/inf matrix.
OFF_FRAME = np.array([[0.0, 0.0, -1.0e6], [0.0, 0.0, -1.0e6]], np.float32)


def graph_paths(onnx_dir, size: int = graphs.CROP_SIZE) -> dict[str, Path]:
    """Write the crop and paste graphs as onnx_dir/graph_<what><size>.<sha256 prefix>.onnx where missing.

    The name holds the hash of the serialised graph, so an existing file of that name already has these
    bytes and is left alone (its mtime too, which keeps every cache keyed on it valid)."""
    onnx_dir = Path(onnx_dir)
    paths = {}
    for what, build in (("crop", graphs.build_crop_model), ("paste", graphs.build_paste_model)):
        model = build(size)
        digest = hashlib.sha256(model.SerializeToString()).hexdigest()[:16]
        path = onnx_dir / f"graph_{what}{size}.{digest}.onnx"
        if not path.is_file():
            onnx_dir.mkdir(parents=True, exist_ok=True)
            graphs.write_model(model, path)
        paths[what] = path
    return paths


def crop_window(frame_shape, frame_from_crop: np.ndarray, size: int) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), end-exclusive, of the frame pixels any crop pixel's bilinear sample can read; None
    when every sample falls outside the frame. The crop graph is fed only this window: it casts its whole
    input to float, and a 1080p frame is ~40× the pixels of four 224 crops."""
    corners = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]], np.float64)
    mapped = corners @ np.swapaxes(frame_from_crop, 1, 2)            # [N, 4, 2] frame pixel of each corner
    h, w = int(frame_shape[0]), int(frame_shape[1])
    if (mapped[..., 0].max() <= -1 or mapped[..., 1].max() <= -1 or mapped[..., 0].min() >= w
            or mapped[..., 1].min() >= h):
        return None                      # no sample has a frame pixel as a bilinear neighbour
    # floor(p) and floor(p) + 1 are read; one more pixel each side covers float32 rounding in the graph
    x0 = int(np.clip(np.floor(mapped[..., 0].min()) - 1, 0, w))
    y0 = int(np.clip(np.floor(mapped[..., 1].min()) - 1, 0, h))
    x1 = int(np.clip(np.floor(mapped[..., 0].max()) + 3, 0, w))
    y1 = int(np.clip(np.floor(mapped[..., 1].max()) + 3, 0, h))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def crop_inputs(frame: np.ndarray, Ms: np.ndarray, size: int = graphs.CROP_SIZE
                ) -> dict[str, np.ndarray] | None:
    """Crop-graph inputs for the window of the frame the crops read (None: they read nothing, all black).

    Exactly graphs.crop_feeds on the whole frame: inside the window every bilinear neighbour is the same
    pixel, and the window is only cut short at the frame's own edges, where both see zero padding.
    Non-finite matrices are sent off the frame (warpAffine gives a black crop for them; GridSample's answer
    to a NaN coordinate is not specified)."""
    inverse = np.stack([cv2.invertAffineTransform(np.asarray(M, np.float64)) for M in Ms])
    finite = np.isfinite(inverse).all(axis=(1, 2))
    inverse[~finite] = OFF_FRAME
    window = crop_window(frame.shape, inverse[finite], size) if finite.any() else None
    if window is None:
        return None
    x0, y0, x1, y1 = window
    inverse[:, :, 2] -= np.array([x0, y0], np.float64)
    return {"frame": np.ascontiguousarray(frame[y0:y1, x0:x1]), "frame_from_crop": inverse.astype(np.float32)}


class GraphStages:
    """crop() and paste() on the executor `make_executor` picks for the graphs with the nets' backend."""

    def __init__(self, backend: str, engines_dir=Path("engines"), threads: int | None = None,
                 size: int = graphs.CROP_SIZE):
        self.size = size
        self.paths = graph_paths(Path(engines_dir) / "onnx", size)
        self.choices: dict[str, Choice] = {
            what: make_executor(path, backend, GRAPH_PRECISION, engines_dir, threads)
            for what, path in self.paths.items()}
        self.backend = self.choices["crop"].backend

    def crop(self, frame: np.ndarray, Ms: np.ndarray) -> np.ndarray:
        """RGB uint8 frame + alignment matrices [N, 2, 3] (frame -> crop) -> crops uint8 [N, size, size, 3],
        as np.stack([align.warp_crop(frame, M) for M in Ms]) (empty [0, size, size, 3] for no faces)."""
        if len(Ms) == 0:
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        feeds = crop_inputs(frame, Ms, self.size)
        if feeds is None:
            return np.zeros((len(Ms), self.size, self.size, 3), np.uint8)
        return self.choices["crop"].executor.run(feeds)["crops"]

    def paste(self, frame: np.ndarray, swapped: np.ndarray, masks: Sequence[np.ndarray], Ms: np.ndarray,
              out: np.ndarray | None = None) -> np.ndarray:
        """blend.paste_back_faces: faces pasted in order (a later one wins on overlap) into `out`, a copy of
        frame unless given (may be frame itself). Only each face's paste_region is sent to the graph."""
        if out is None:
            out = frame.copy()
        elif out is not frame:
            out[...] = frame
        paste = self.choices["paste"].executor
        for crop, face_mask, M in zip(swapped, masks, Ms):
            face_mask = np.asarray(face_mask, np.float32)
            region = blend.paste_region(out.shape, face_mask, M)
            if region is None:
                continue
            x0, y0, x1, y1 = region
            feeds = graphs.paste_feeds(out[y0:y1, x0:x1], crop, face_mask, M, x0, y0)
            out[y0:y1, x0:x1] = paste.run(feeds)["blended"]
        return out



class OpenCvStages:
    """The OpenCV path (align.warp_crop, blend.paste_back_faces) behind the same two methods."""

    backend = "opencv"

    def __init__(self, size: int = graphs.CROP_SIZE):
        self.size = size

    def crop(self, frame: np.ndarray, Ms: np.ndarray) -> np.ndarray:
        return align.warp_crops(frame, Ms, self.size)

    def paste(self, frame: np.ndarray, swapped: np.ndarray, masks: Sequence[np.ndarray], Ms: np.ndarray,
              out: np.ndarray | None = None) -> np.ndarray:
        return blend.paste_back_faces(frame, swapped, masks, Ms, out=out)



def make_stages(backend: str, engines_dir=Path("engines"), threads: int | None = None, use_graphs: bool = False):
    """GraphStages for `backend` when use_graphs, else the OpenCV path."""
    if use_graphs:
        return GraphStages(backend, engines_dir, threads)
    return OpenCvStages()
