"""The one swap sequence, for any number of frames with any number of faces each:
align → G (one batch over every face) → landmarks (one batch) → GHOST mask → paste-back per frame.

Detection and the choice of faces (image rule, target faces, tracking, smoothing) happen before it, in the
image and stream swappers; both hand it the same `FaceJob`s, so the image, video and webcam paths cannot drift
apart. The nets wrappers split every batch into chunks their engines accept.
"""

from dataclasses import dataclass

import numpy as np

from ghostrt.runtime.nets.arcface import ArcFace
from ghostrt.runtime.nets.generator import Generator
from ghostrt.runtime.nets.landmarks import LandmarkNet
from ghostrt.runtime.backends.blas_threads import keep_blas_single_threaded
from ghostrt.runtime.stages import align, mask
from ghostrt.runtime.stages.graph_stages import OpenCvStages
from ghostrt.runtime.swap.timer import StageTimer


@dataclass
class Nets:
    """The four nets, each behind its wrapper (a bare executor is wrapped), plus the crop/paste stages."""

    detector: object            # ghostrt.runtime.nets.detect detector: detect(frames) -> list[list[Face]]
    arcface: object
    generator: object
    landmarks: object
    # crop(frame, Ms) / paste(frame, swapped, masks, Ms): OpenCV by default (measured 5-20× faster than the
    # graphs on a CPU); runtime.stages.graph_stages.GraphStages runs them through the nets' executor instead.
    stages: object = None

    def __post_init__(self):
        if not isinstance(self.arcface, ArcFace):
            self.arcface = ArcFace(self.arcface)
        if not isinstance(self.generator, Generator):
            self.generator = Generator(self.generator)
        if not isinstance(self.landmarks, LandmarkNet):
            self.landmarks = LandmarkNet(self.landmarks)
        if self.stages is None:
            self.stages = OpenCvStages()
        keep_blas_single_threaded()     # see backends/blas_threads.py: spinning BLAS threads slowed the nets


@dataclass
class FaceJob:
    """One face to swap: in which frame, where (its alignment keypoints), with which identity."""

    frame: int                  # index into the frames given to swap_faces
    kps: np.ndarray             # (5, 2) keypoints to align on (smoothed ones in a video)
    identity: np.ndarray        # (512,) raw source embedding to put in
    mask_params: object = None  # mask.MaskParams to reuse (a video run's first choice); None: measure now
    crop: np.ndarray | None = None   # the aligned 224 crop when the caller already made it
    mask_group: object = None   # jobs of one group without params share the first one's (a video track run)


@dataclass
class SwappedCrop:
    """What the core made of one FaceJob (the debug sheet and the video's mask book use it)."""

    crop: np.ndarray            # 224×224×3 uint8 aligned target crop
    swapped: np.ndarray         # 224×224×3 uint8 generator output
    mask: np.ndarray            # 224×224 float32 in 0..1
    mask_params: object
    M: np.ndarray               # (2, 3) frame → crop


def swap_faces(nets: Nets, frames: list[np.ndarray], jobs: list[FaceJob],
               timer: StageTimer | None = None) -> tuple[list[np.ndarray], list[SwappedCrop]]:
    """Swap every job's face into its frame. Returns the output frames (a frame with no job is handed back as
    the very array that came in) and one SwappedCrop per job, in job order. Within a frame a later job is
    pasted over an earlier one where they overlap, as in GHOST."""
    timer = timer or StageTimer()
    outputs = list(frames)
    if not jobs:
        return outputs, []
    by_frame: dict[int, list[int]] = {}
    for k, job in enumerate(jobs):
        by_frame.setdefault(job.frame, []).append(k)
    with timer.stage("align"):
        Ms, _ = align.estimate_norm_batch(np.stack([np.asarray(j.kps, np.float64).reshape(5, 2) for j in jobs]))
        crops = np.zeros((len(jobs), align.CROP_SIZE, align.CROP_SIZE, 3), np.uint8)
        for f, ks in by_frame.items():
            todo = [k for k in ks if jobs[k].crop is None]
            if todo:
                crops[todo] = nets.stages.crop(frames[f], Ms[todo])
            for k in ks:
                if jobs[k].crop is not None:
                    crops[k] = jobs[k].crop
    with timer.stage("swap"):
        swapped = nets.generator.swap(crops, np.stack([np.asarray(j.identity, np.float32).reshape(512)
                                                       for j in jobs]))
    # the target's landmarks only choose the mask params: needed where none are given, once per group
    first_of: dict = {}
    for k, job in enumerate(jobs):
        if job.mask_params is None and job.mask_group is not None:
            first_of.setdefault(job.mask_group, k)
    measure = [k for k, j in enumerate(jobs) if j.mask_params is None
               and (j.mask_group is None or first_of[j.mask_group] == k)]
    with timer.stage("landmarks"):
        points = nets.landmarks.points(np.concatenate([swapped, crops[measure]]))
    target_points = dict(zip(measure, points[len(jobs):]))
    results = []
    with timer.stage("mask"):
        chosen: dict = {}
        for k, job in enumerate(jobs):
            given = job.mask_params if job.mask_params is not None else chosen.get(job.mask_group)
            face_mask, params = mask.ghost_mask(points[k], target_points.get(k), params=given)
            if job.mask_group is not None:
                chosen.setdefault(job.mask_group, params)
            results.append(SwappedCrop(crops[k], swapped[k], np.asarray(face_mask, np.float32), params, Ms[k]))
    with timer.stage("blend"):
        for f, ks in by_frame.items():
            outputs[f] = nets.stages.paste(frames[f], swapped[ks], [results[k].mask for k in ks], Ms[ks])
    return outputs, results
