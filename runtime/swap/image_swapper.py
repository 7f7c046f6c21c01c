"""Swaps in independent frames (photos, or a batch of unrelated frames): detect → choose the faces (largest,
all, or matched to target faces) → the swap core. Stateless between calls; video and webcam use
runtime.swap.video_swapper, which adds tracking and smoothing before the same core.

Large frames: the detector letterboxes every frame to 640 with area averaging, so detection always runs on a
small copy; alignment samples the full-resolution frame directly, and paste-back (blend.paste_back) touches
only the rectangle each face's mask maps back onto, in place in one uint8 copy of the frame. Nothing makes a
float copy of the whole frame, and pixels where no mask reaches keep the input's bytes.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ghostrt.errors import GhostError, file_error
from ghostrt.runtime.backends.batching import max_batch
from ghostrt.runtime.stages import align, blend, match
from ghostrt.runtime.swap.core import FaceJob, Nets, swap_faces
from ghostrt.runtime.swap.timer import StageTimer
from ghostrt.runtime.types import Face


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
    timings: dict[str, float] = field(default_factory=dict)     # stage -> ms of the call that made it

    @property
    def image(self) -> np.ndarray:
        """The output frame (HxWx3 uint8 RGB); the API's name for `frame`."""
        return self.frame


def check_face_rule(faces: str) -> None:
    if faces not in match.FACE_RULES:
        raise GhostError(f"--faces {faces}: choose from {', '.join(match.FACE_RULES)}")


def prepare_detector(nets: Nets) -> None:
    """The detector chunks by itself once told its engine's batch limit."""
    detector = nets.detector
    if getattr(detector, "max_batch", 0) is None:
        detector.max_batch = max_batch(getattr(detector, "executor", None))


class ImageSwapper:
    """Swaps the source identity onto the chosen faces of each frame; stateless between calls."""

    def __init__(self, nets: Nets, faces: str = "largest", similarity: float = match.DEFAULT_THRESHOLD,
                 timer: StageTimer | None = None):
        check_face_rule(faces)
        self.nets = nets
        self.faces_rule = faces
        self.similarity = float(similarity)
        self.timer = timer or StageTimer()
        prepare_detector(nets)

    # ------------------------------------------------------------------------------------- photos → identity

    def embed_photos(self, photos: list[tuple[Path | str, np.ndarray]], role: str) -> np.ndarray:
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
                crops.append(align.align_batch(rgb, [face])[0][0])
        with self.timer.stage("embed"):
            return self.nets.arcface.embed(np.stack(crops))

    # ------------------------------------------------------------------------------------------ the frames

    def _choose(self, faces: list[Face], face_embs: np.ndarray | None, sources: np.ndarray,
                targets: np.ndarray | None):
        """[(face index, identity embedding, target index, similarity)] for the faces to swap."""
        if targets is None or len(targets) == 0:
            identity = match.average_identity(sources)
            return [(i, identity, None, None) for i in match.select_faces(faces, self.faces_rule)]
        with self.timer.stage("match"):
            return match.assign_to_targets(face_embs, sources, targets, self.similarity)

    def swap(self, frame: np.ndarray, sources: np.ndarray, targets: np.ndarray | None = None) -> SwapResult:
        """`sources`: raw source embeddings (S×512); `targets`: target-face embeddings (K×512) or None."""
        return self.swap_batch([frame], sources, targets)[0]

    def swap_batch(self, frames: list[np.ndarray], sources: np.ndarray,
                   targets: np.ndarray | None = None) -> list[SwapResult]:
        """Many frames (sizes may differ) in one detector, ArcFace, generator and landmark batch each."""
        before = dict(self.timer.seconds)
        with self.timer.stage("detect"):
            found = self.nets.detector.detect(list(frames))
        results = [SwapResult(frame=frame, faces=faces) for frame, faces in zip(frames, found)]
        with self.timer.stage("align"):
            Ms = [align.face_transforms(faces) for faces in found]
            crops = [self.nets.stages.crop(frame, M) if len(M) else None for frame, M in zip(frames, Ms)]
        matching = targets is not None and len(targets) > 0
        face_embs: list[np.ndarray | None] = [None] * len(frames)
        if matching and any(c is not None for c in crops):
            with self.timer.stage("embed"):
                embs = self.nets.arcface.embed(np.concatenate([c for c in crops if c is not None]))
            at = 0
            for i, c in enumerate(crops):
                if c is not None:
                    face_embs[i], at = embs[at:at + len(c)], at + len(c)
        jobs, books = [], []
        for i, (result, faces) in enumerate(zip(results, found)):
            if not faces:
                result.warnings.append("no face found in the target image: output = input, unchanged")
                continue
            result.crops = crops[i]
            chosen = self._choose(faces, face_embs[i], sources, targets)
            if not chosen:
                result.warnings.append(f"no face in the target image matched a --target-face (similarity > "
                                       f"{self.similarity}): output = input, unchanged")
            for face_i, identity, target_i, sim in chosen:
                jobs.append(FaceJob(i, faces[face_i].kps, identity, crop=crops[i][face_i]))
                books.append((i, face_i, target_i, sim))
        outputs, made = swap_faces(self.nets, list(frames), jobs, self.timer)
        for (i, face_i, target_i, sim), out in zip(books, made):
            roi = blend.paste_region(frames[i].shape, out.mask, out.M)
            results[i].swapped.append(SwappedFace(found[i][face_i], target_i, sim, out.crop, out.swapped, out.mask,
                                                  out.mask_params, roi))
        timings = {name: (sec - before.get(name, 0.0)) * 1000.0 for name, sec in self.timer.seconds.items()}
        for result, output in zip(results, outputs):
            result.frame = output
            result.timings = timings
        return results
