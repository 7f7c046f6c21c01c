"""The image swap loop: it only schedules the stages and keeps the books (faces, crops, masks, timings).

detect (batched) → align (224) → embed (ArcFace) → match → swap (G, batched over all matched faces) →
landmarks (swapped and target crops in one batch) → GHOST mask → paste-back.

Large frames: the detector letterboxes every frame to 640 with area averaging, so detection always runs on a
small copy; alignment samples the full-resolution frame directly, and paste-back (blend.paste_back) touches
only the rectangle each face's mask maps back onto, in place in one uint8 copy of the frame. Nothing makes a
float copy of the whole frame, and pixels where no mask reaches keep the input's bytes.
"""

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ghostrt.errors import GhostError, file_error
from ghostrt.runtime.stages import align, blend, mask, match
from ghostrt.runtime.nets import landmarks
from ghostrt.runtime.backends.blas_threads import keep_blas_single_threaded
from ghostrt.runtime.stages.graph_stages import OpenCvStages
from ghostrt.runtime.types import Executor, Face

CROP = 224
STAGES = ("detect", "align", "embed", "match", "swap", "landmarks", "mask", "blend")


class StageTimer:
    """Seconds spent per stage, summed over calls, in pipeline order."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def lines(self) -> list[str]:
        total = sum(self.seconds.values())
        rows = [f"{name:<10} {sec * 1000:9.1f} ms" for name, sec in self.seconds.items()]
        return rows + [f"{'total':<10} {total * 1000:9.1f} ms"]


@dataclass
class Nets:
    """One executor per net, plus the detector object built on its own executor."""

    detector: object            # ghostrt.runtime.nets.detect detector: detect(frames) -> list[list[Face]]
    arcface: Executor
    generator: Executor
    landmarks: Executor
    # crop(frame, Ms) / paste(frame, swapped, masks, Ms): OpenCV by default (measured 5-20× faster than the
    # graphs on a CPU); runtime.graph_stages.GraphStages runs them through the nets' executor instead.
    stages: object = None

    def __post_init__(self):
        keep_blas_single_threaded()     # see runtime/blas_threads.py: spinning BLAS threads slowed the nets


@dataclass
class SwappedFace:
    """Everything the debug sheet shows about one swapped face."""

    face: Face
    target_index: int | None    # which --target-face it matched (None without targets)
    similarity: float | None
    crop: np.ndarray            # 224×224×3 uint8 aligned target crop
    swapped: np.ndarray         # 224×224×3 uint8 generator output
    mask: np.ndarray            # 224×224 float32 in 0..1
    mask_params: object
    roi: tuple[int, int, int, int] | None   # x0, y0, x1, y1 (end-exclusive) of the frame pixels it may change


@dataclass
class SwapResult:
    frame: np.ndarray
    faces: list[Face]
    swapped: list[SwappedFace] = field(default_factory=list)
    crops: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)


def embed_crops(arcface: Executor, crops: np.ndarray) -> np.ndarray:
    """Raw (un-normalised) 512-d ArcFace embeddings of 224 aligned crops, one batch."""
    if len(crops) == 0:
        return np.zeros((0, 512), np.float32)
    out = arcface.run({"face": align.crops_to_arcface(crops)})
    return np.asarray(out["embedding"], np.float32)


class ImageSwapper:
    """Swaps the source identity onto the chosen faces of one frame; stateless between frames."""

    def __init__(self, nets: Nets, faces: str = "largest", similarity: float = match.DEFAULT_THRESHOLD,
                 timer: StageTimer | None = None):
        if faces not in match.FACE_RULES:
            raise GhostError(f"--faces {faces}: choose from {', '.join(match.FACE_RULES)}")
        self.nets = nets
        self.faces_rule = faces
        self.similarity = float(similarity)
        self.timer = timer or StageTimer()
        self.stages = nets.stages or OpenCvStages()

    # ------------------------------------------------------------------------------------- photos → identity

    def embed_photos(self, photos: list[tuple[Path, np.ndarray]], role: str) -> np.ndarray:
        """One raw embedding per photo (its largest face); a photo without a face is a GhostError naming it."""
        if not photos:
            return np.zeros((0, 512), np.float32)
        with self.timer.stage("detect"):
            found = self.nets.detector.detect([rgb for _, rgb in photos])
        crops = []
        with self.timer.stage("align"):
            for (path, rgb), faces in zip(photos, found):
                if not faces:
                    raise file_error(path, f"no face found in this {role} photo")
                face = faces[match.select_faces(faces, "largest")[0]]
                photo_crops, _ = align.align_batch(rgb, [face])
                crops.append(photo_crops[0])
        with self.timer.stage("embed"):
            return embed_crops(self.nets.arcface, np.stack(crops))

    # ------------------------------------------------------------------------------------------- the frame

    def _choose(self, faces: list[Face], crops: np.ndarray, sources: np.ndarray, targets: np.ndarray | None):
        """[(face index, identity embedding, target index, similarity)] for the faces to swap."""
        if targets is None or len(targets) == 0:
            identity = match.average_identity(sources)
            return [(i, identity, None, None) for i in match.select_faces(faces, self.faces_rule)]
        with self.timer.stage("embed"):
            face_embs = embed_crops(self.nets.arcface, crops)
        with self.timer.stage("match"):
            return match.assign_to_targets(face_embs, sources, targets, self.similarity)

    def swap(self, frame: np.ndarray, sources: np.ndarray, targets: np.ndarray | None = None) -> SwapResult:
        """`sources`: raw source embeddings (S×512); `targets`: target-face embeddings (K×512) or None."""
        with self.timer.stage("detect"):
            faces = self.nets.detector.detect([frame])[0]
        result = SwapResult(frame=frame, faces=faces)
        if not faces:
            result.warnings.append("no face found in the target image: output = input, unchanged")
            return result
        with self.timer.stage("align"):
            Ms = align.face_transforms(faces)
            crops = self.stages.crop(frame, Ms)
        result.crops = crops
        chosen = self._choose(faces, crops, sources, targets)
        if not chosen:
            result.warnings.append(f"no face in the target image matched a --target-face (similarity > "
                                   f"{self.similarity}): output = input, unchanged")
            return result
        index = [c[0] for c in chosen]
        with self.timer.stage("swap"):
            identities = np.stack([np.asarray(c[1], np.float32).reshape(512) for c in chosen])
            out = self.nets.generator.run({"target": align.crops_to_generator(crops[index]),
                                           "source_embedding": identities})
            swapped = align.generator_to_crops(out["swapped"])
        with self.timer.stage("landmarks"):
            both = np.concatenate([swapped, crops[index]])
            raw = self.nets.landmarks.run({"face": landmarks.crops_to_landmark_input(both)})["landmarks"]
            points = landmarks.decode_landmarks(raw)
            swap_lms, target_lms = points[:len(index)], points[len(index):]
        masks = []
        with self.timer.stage("mask"):
            for k in range(len(index)):
                masks.append(mask.ghost_mask(swap_lms[k], target_lms[k]))
        with self.timer.stage("blend"):
            output = self.stages.paste(frame, swapped, [m for m, _ in masks], Ms[index])
            for k, (face_i, _, target_i, sim) in enumerate(chosen):
                face_mask, params = masks[k]
                roi = blend.paste_region(frame.shape, face_mask, Ms[face_i])
                result.swapped.append(SwappedFace(faces[face_i], target_i, sim, crops[face_i], swapped[k],
                                                  np.asarray(face_mask, np.float32), params, roi))
        result.frame = output
        return result
