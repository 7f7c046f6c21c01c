"""Video keypoint smoothing (GHOST's): detector keypoints jitter by a pixel or two from frame to frame, which
makes the pasted face shimmer; a short centred moving average over each face track removes it.

A track is cut into runs wherever the face is missing or keypoint 0 (left eye) or 2 (nose) moves by more than
5 px between consecutive frames — a real movement or a different face, which must not be averaged away. Within
a run, frame i is the mean of frames i−q … i+q with q = min(i, len−i−1, 2): the window shrinks at the run ends
instead of padding, so the first and last frame of a run keep their own keypoints.
"""

from typing import Sequence

import numpy as np

JUMP_PX = 5.0
HALF_WIDTH = 2
JUMP_POINTS = (0, 2)


def is_jump(prev: np.ndarray, cur: np.ndarray, limit: float = JUMP_PX) -> bool:
    """True when keypoint 0 or 2 moved farther than `limit` pixels (Euclidean)."""
    return any(float(np.linalg.norm(cur[k] - prev[k])) > limit for k in JUMP_POINTS)


def split_runs(kps_per_frame: Sequence[np.ndarray | None], limit: float = JUMP_PX) -> list[list[int]]:
    """Frame indices grouped into runs; a frame without a face is a run of its own."""
    runs: list[list[int]] = []
    for i, kps in enumerate(kps_per_frame):
        prev = kps_per_frame[i - 1] if i > 0 else None
        if i > 0 and kps is not None and prev is not None and not is_jump(prev, kps, limit):
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def smooth_run(points: np.ndarray, half_width: int = HALF_WIDTH) -> np.ndarray:
    """(L, 5, 2) keypoints of one run -> centred moving average with the shrinking window."""
    out = np.empty_like(points)
    n = len(points)
    for i in range(n):
        q = min(i, n - i - 1, half_width)
        out[i] = points[i - q:i + q + 1].mean(axis=0)
    return out


def smooth_tracks(kps_per_frame: Sequence[np.ndarray | None], half_width: int = HALF_WIDTH,
                  limit: float = JUMP_PX) -> list[np.ndarray | None]:
    """One face's keypoints per frame ((5, 2) or None when absent) -> the smoothed track (float32)."""
    tracks = [None if k is None else np.asarray(k, np.float64).reshape(-1, 2) for k in kps_per_frame]
    smoothed: list[np.ndarray | None] = [None] * len(tracks)
    for run in split_runs(tracks, limit):
        if tracks[run[0]] is None:
            continue
        points = smooth_run(np.stack([tracks[i] for i in run]), half_width)
        for i, p in zip(run, points):
            smoothed[i] = p.astype(np.float32)
    return smoothed
