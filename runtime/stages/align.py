"""The align stage: five keypoints -> a 224×224 face crop and the 2×3 matrix that made it, plus the resamplings
that turn crops into network inputs and network outputs back into crops.

GHOST aligns with five pose templates (frontal, two half-profiles each side) rather than the single ArcFace
template: a turned head is mapped onto the template of its own pose instead of being stretched frontal.
The similarity transform is the closed-form least-squares fit (Umeyama 1991, reflection excluded), computed in
float64 for all faces and all templates at once; the template with the smallest summed Euclidean point error
wins. This is the same estimator as skimage's SimilarityTransform.estimate, without the dependency.
"""

from typing import Sequence

import cv2
import numpy as np

from ghostrt.runtime.types import Face

CROP_SIZE = 224
ARCFACE_SIZE = 112
GENERATOR_SIZE = 256

# GHOST's five templates at 112 scale: left eye, right eye, nose, left mouth, right mouth (x, y).
TEMPLATES_112 = np.array([
    [[51.642, 50.115], [57.617, 49.990], [35.740, 69.007], [51.157, 89.050], [57.025, 89.702]],
    [[45.031, 50.118], [65.568, 50.872], [39.677, 68.111], [45.177, 86.190], [64.246, 86.758]],
    [[39.730, 51.138], [72.270, 51.138], [56.000, 68.493], [42.463, 87.010], [69.537, 87.010]],
    [[46.845, 50.872], [67.382, 50.118], [72.737, 68.111], [48.167, 86.758], [67.236, 86.190]],
    [[54.796, 49.990], [60.771, 50.115], [76.673, 69.007], [55.388, 89.702], [61.257, 89.050]],
], np.float64)
FRONTAL_TEMPLATE = 2


def templates(size: int = CROP_SIZE) -> np.ndarray:
    """(5, 5, 2) templates for a size×size crop (the 112 templates scaled by size/112, ×2 for 224)."""
    return TEMPLATES_112 * (size / 112.0)


# --------------------------------------------------------------------------------------- similarity fitting

def estimate_similarity(src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping src onto dst.

    src_pts, dst_pts: (..., K, 2); returns (..., 2, 3) float64 with dst ≈ M · [src, 1]. Batched over any
    leading axes. Raises ValueError when the source points coincide (no scale can be fitted)."""
    src = np.asarray(src_pts, np.float64)
    dst = np.asarray(dst_pts, np.float64)
    src, dst = np.broadcast_arrays(src, dst)
    k = src.shape[-2]
    src_mean = src.mean(axis=-2, keepdims=True)
    dst_mean = dst.mean(axis=-2, keepdims=True)
    src_c = src - src_mean
    dst_c = dst - dst_mean
    src_var = (src_c ** 2).sum(axis=(-2, -1)) / k
    if np.any(src_var <= 1e-12):
        raise ValueError("keypoints coincide: no similarity transform can be fitted")
    cov = np.swapaxes(dst_c, -1, -2) @ src_c / k                     # (..., 2, 2)
    u, s, vt = np.linalg.svd(cov)
    # Reflection guard: flip the weakest singular direction when det(U)·det(V) < 0.
    d = np.ones(s.shape, np.float64)
    d[..., -1] = np.where(np.linalg.det(u) * np.linalg.det(vt) < 0, -1.0, 1.0)
    rotation = u @ (d[..., :, None] * vt)
    scale = (s * d).sum(axis=-1) / src_var
    linear = scale[..., None, None] * rotation
    translation = dst_mean[..., 0, :] - (linear @ src_mean[..., 0, :, None])[..., 0]
    return np.concatenate([linear, translation[..., :, None]], axis=-1)


def apply_affine(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Points (..., K, 2) through 2×3 matrices (..., 2, 3)."""
    M = np.asarray(M, np.float64)
    pts = np.asarray(pts, np.float64)
    return pts @ np.swapaxes(M[..., :, :2], -1, -2) + M[..., None, :, 2]


def estimate_norm_batch(kps: np.ndarray, size: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(N, 5, 2) keypoints -> (Ms (N, 2, 3) float64, chosen template index (N,)).

    Every template is fitted; the one whose fitted transform lands the keypoints with the smallest sum of
    point distances is kept (GHOST's pose selection)."""
    kps = np.asarray(kps, np.float64).reshape(-1, 5, 2)
    tpl = templates(size)                                              # (T, 5, 2)
    Ms = estimate_similarity(kps[:, None], tpl[None])                  # (N, T, 2, 3)
    mapped = apply_affine(Ms, kps[:, None])                            # (N, T, 5, 2)
    error = np.sqrt(((mapped - tpl[None]) ** 2).sum(axis=-1)).sum(axis=-1)   # (N, T)
    best = error.argmin(axis=1)
    return Ms[np.arange(len(kps)), best], best


def estimate_norm(kps: np.ndarray, size: int = CROP_SIZE) -> tuple[np.ndarray, int]:
    """One face: (M (2, 3) float64, template index)."""
    Ms, best = estimate_norm_batch(np.asarray(kps)[None], size)
    return Ms[0], int(best[0])


# -------------------------------------------------------------------------------------------------- cropping

def warp_crop(frame: np.ndarray, M: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """size×size crop through M (frame -> crop), bilinear, outside the frame = 0 (GHOST's warpAffine)."""
    return cv2.warpAffine(frame, np.asarray(M, np.float64), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def align_crop(frame: np.ndarray, kps: np.ndarray, size: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 frame + (5, 2) keypoints -> (crop uint8 size×size×3, M 2×3 float64)."""
    M, _ = estimate_norm(kps, size)
    return warp_crop(frame, M, size), M


def face_transforms(faces: Sequence[Face], size: int = CROP_SIZE) -> np.ndarray:
    """Ms [N, 2, 3] float64 (frame -> crop) of all faces of one frame, [0, 2, 3] for none."""
    if len(faces) == 0:
        return np.zeros((0, 2, 3), np.float64)
    return estimate_norm_batch(np.stack([np.asarray(f.kps, np.float64).reshape(5, 2) for f in faces]), size)[0]


def warp_crops(frame: np.ndarray, Ms: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """crops [N, size, size, 3] uint8, one warp_crop per matrix, [0, size, size, 3] for none."""
    if len(Ms) == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([warp_crop(frame, M, size) for M in Ms])


def align_batch(frame: np.ndarray, faces: Sequence[Face], size: int = CROP_SIZE
                ) -> tuple[np.ndarray, np.ndarray]:
    """All faces of one frame -> (crops [N, size, size, 3] uint8, Ms [N, 2, 3] float64)."""
    Ms = face_transforms(faces, size)
    return warp_crops(frame, Ms, size), Ms


# -------------------------------------------------------------------------------------------- net inputs

def align_corners_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) float64 matrix of 1-D linear interpolation with align_corners=True sampling:
    out(i) = in(i · (in−1)/(out−1)), i.e. the first and last samples coincide with the input's."""
    pos = np.arange(out_size, dtype=np.float64) * ((in_size - 1) / (out_size - 1))
    lo = np.minimum(np.floor(pos).astype(np.int64), in_size - 2)
    frac = pos - lo
    weights = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    weights[rows, lo] = 1.0 - frac
    weights[rows, lo + 1] += frac
    return weights


def to_unit_range(images_nhwc: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW in [-1, 1]: (x/255 − 0.5)/0.5, GHOST's normalisation."""
    x = np.asarray(images_nhwc, np.float32).transpose(0, 3, 1, 2)
    return (x / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5)


def crops_to_arcface(crops: np.ndarray) -> np.ndarray:
    """[N, 224, 224, 3] uint8 -> [N, 3, 112, 112] float32 in [-1, 1], the ArcFace input.

    GHOST halves the crop with bilinear interpolation, align_corners=True (PyTorch's F.interpolate). That is a
    separable linear map, so it is applied exactly as two matrix products with the (112, 224) weights of
    `align_corners_weights` (each output row/column mixes the two input samples around i·223/111).
    OpenCV's resize uses half-pixel centres and a 1/32-pixel fixed-point grid, so it can't reproduce it."""
    crops = np.asarray(crops)
    n, h, w = crops.shape[:3]
    x = to_unit_range(crops)                                           # [N, 3, H, W]
    wy = align_corners_weights(h, ARCFACE_SIZE).astype(np.float32)
    wx = align_corners_weights(w, ARCFACE_SIZE).astype(np.float32)
    rows = np.matmul(wy, x)                                            # [N, 3, 112, W]
    out = np.matmul(rows, wx.T)                                        # [N, 3, 112, 112]
    return np.ascontiguousarray(out, np.float32)


def crops_to_generator(crops: np.ndarray) -> np.ndarray:
    """[N, 224, 224, 3] uint8 -> [N, 3, 256, 256] float32 in [-1, 1], the generator's target input.

    As GHOST: cv2.resize (bilinear, half-pixel centres) of the uint8 crop to 256, then normalised."""
    crops = np.asarray(crops)
    resized = np.stack([cv2.resize(c, (GENERATOR_SIZE, GENERATOR_SIZE), interpolation=cv2.INTER_LINEAR)
                        for c in crops]) if len(crops) else np.zeros((0, GENERATOR_SIZE, GENERATOR_SIZE, 3),
                                                                     np.uint8)
    return np.ascontiguousarray(to_unit_range(resized))


def generator_to_crops(swapped: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """[N, 3, 256, 256] float in [-1, 1] (tanh output) -> [N, size, size, 3] uint8 crops for paste-back.

    GHOST maps (y·0.5 + 0.5)·255 to uint8 at 256 and then cv2.resizes to 224. We do the same but round to
    nearest instead of truncating (truncation darkens by half a level on average)."""
    y = np.asarray(swapped, np.float32).transpose(0, 2, 3, 1)
    u8 = np.clip(np.rint((y * np.float32(0.5) + np.float32(0.5)) * np.float32(255.0)), 0, 255).astype(np.uint8)
    if len(u8) == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=cv2.INTER_LINEAR)
                     for img in u8])
