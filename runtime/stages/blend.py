"""Paste-back: the swapped 224 crop goes back into the frame through the inverse of its alignment matrix,
blended with the warped mask: out = m·swap + (1 − m)·frame.

Only the rectangle of the frame that the warped mask can reach is touched. It is found by mapping the mask's
non-zero box (one crop pixel wider, for the bilinear footprint) through the inverse matrix; both warps are then
made straight into that rectangle, so a 12000×9000 frame costs a face-sized float buffer, not a frame-sized
one. Pixels where the warped mask is exactly 0 are left bit-identical (the blend is written as
frame + m·(swap − frame)). The warps sample the crop with the crop←frame matrix itself (WARP_INVERSE_MAP),
the same thing GHOST's warpAffine(…, invertAffineTransform(M)) computes, without inverting twice.
The blend is rounded to nearest; GHOST truncates, which darkens by half a level on average.
"""

from typing import Sequence

import cv2
import numpy as np

ROI_MARGIN = 1      # frame pixels added around the mapped box: covers OpenCV's 1/32-px fixed-point rounding


def mask_support(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) inclusive box of the mask's non-zero pixels in crop coordinates; None when empty."""
    ys = np.flatnonzero(np.any(mask > 0, axis=1))
    xs = np.flatnonzero(np.any(mask > 0, axis=0))
    if len(ys) == 0:
        return None
    return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])


def paste_region(frame_shape: Sequence[int], mask: np.ndarray, M: np.ndarray
                 ) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), end-exclusive, of the frame pixels the warped mask can make non-zero; None if none.

    A frame pixel p gets a non-zero mask only if M·p falls strictly within one pixel of the support box,
    so the inverse image of that widened box bounds every such pixel."""
    support = mask_support(mask)
    if support is None:
        return None
    sx0, sy0, sx1, sy1 = support
    corners = np.array([[sx0 - 1, sy0 - 1], [sx1 + 1, sy0 - 1], [sx0 - 1, sy1 + 1], [sx1 + 1, sy1 + 1]],
                       np.float64)
    inverse = cv2.invertAffineTransform(np.asarray(M, np.float64))
    mapped = corners @ inverse[:, :2].T + inverse[:, 2]
    h, w = int(frame_shape[0]), int(frame_shape[1])
    x0 = int(np.clip(np.floor(mapped[:, 0].min()) - ROI_MARGIN, 0, w))
    y0 = int(np.clip(np.floor(mapped[:, 1].min()) - ROI_MARGIN, 0, h))
    x1 = int(np.clip(np.ceil(mapped[:, 0].max()) + 1 + ROI_MARGIN, 0, w))
    y1 = int(np.clip(np.ceil(mapped[:, 1].max()) + 1 + ROI_MARGIN, 0, h))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def roi_matrix(M: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """crop ← ROI pixel matrix for a ROI whose top-left is frame pixel (x0, y0)."""
    shifted = np.array(M, np.float64, copy=True)
    shifted[:, 2] += shifted[:, :2] @ np.array([x0, y0], np.float64)
    return shifted


def warp_to_roi(crop: np.ndarray, M_roi: np.ndarray, width: int, height: int, border: int) -> np.ndarray:
    """Sample the crop at M_roi·p for every ROI pixel p (bilinear)."""
    return cv2.warpAffine(crop, M_roi, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=border, borderValue=0)


def blend_into(region: np.ndarray, swap: np.ndarray, mask: np.ndarray) -> None:
    """region (uint8 H×W×3, written in place) ← round(region + m·(swap − region))."""
    base = region.astype(np.float32)
    m = mask.astype(np.float32)[:, :, None]
    mixed = base + m * (swap.astype(np.float32) - base)
    np.clip(np.rint(mixed), 0, 255, out=mixed)
    region[...] = mixed.astype(np.uint8)      # m = 0 gives back base exactly: base + 0·d == base


def paste_back(frame: np.ndarray, swapped_crop: np.ndarray, mask: np.ndarray, M: np.ndarray,
               out: np.ndarray | None = None) -> np.ndarray:
    """One face. frame: RGB uint8 H×W×3; swapped_crop: uint8 224×224×3; mask: float 224×224 in [0, 1];
    M: 2×3 frame→crop alignment matrix. Returns `out` (a copy of frame unless given; may be frame itself)."""
    if out is None:
        out = frame.copy()
    elif out is not frame:
        out[...] = frame
    mask = np.asarray(mask, np.float32)
    region = paste_region(frame.shape, mask, M)
    if region is None:
        return out
    x0, y0, x1, y1 = region
    M_roi = roi_matrix(M, x0, y0)
    swap_roi = warp_to_roi(np.ascontiguousarray(swapped_crop), M_roi, x1 - x0, y1 - y0, cv2.BORDER_REPLICATE)
    mask_roi = warp_to_roi(mask, M_roi, x1 - x0, y1 - y0, cv2.BORDER_CONSTANT)
    blend_into(out[y0:y1, x0:x1], swap_roi, mask_roi)
    return out


def paste_back_faces(frame: np.ndarray, swapped_crops: np.ndarray, masks: np.ndarray, Ms: np.ndarray,
                     out: np.ndarray | None = None) -> np.ndarray:
    """Several faces of one frame, pasted in order (a later face wins where two overlap, as in GHOST)."""
    if out is None:
        out = frame.copy()
    elif out is not frame:
        out[...] = frame
    for crop, mask, M in zip(swapped_crops, masks, Ms):
        paste_back(out, crop, mask, M, out=out)
    return out
