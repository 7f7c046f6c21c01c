"""The video and webcam swap: frames in order, faces tracked between them, then the same swap core as images.

Why it differs from calling ImageSwapper.swap per frame:
- Batching: one detector call per batch (over the frames due for detection), one generator call for every
  swapped face of every frame released in a call, one landmark call likewise. GPUs want big batches.
- Tracking: with --detect-every K only every K-th frame is detected; in between each face keeps the keypoints
  of its last detection. A light tracker (box IoU, else keypoint distance) gives each face a track id, so the
  --target-face decision needs one ArcFace embedding per track (at its birth), not one per face per frame.
  Which face goes with which target is then settled per frame from those stored embeddings with the image
  rule, so a frame without faces cannot shift targets from one face to another (GHOST's multi-target lists,
  indexed by position, could).
- Smoothing (GHOST's): keypoints are averaged over a centred window of up to ±2 frames of the same run
  (runtime/smoothing.py). The window needs 2 frames of lookahead, so the swapper holds back up to 2 frames
  across batches and `flush()` releases them at the end; the loop pairs outputs with frames in order.
  A 5-frame window around frame i gives exactly the value of smoothing the whole track: the shrinking window
  only ever looks 2 frames into the run on either side.
- The mask's erode/blur choice is made on the first swapped frame of each track run and reused for the run,
  so the mask edge does not flicker.
- Overlap (on 2 CPU cores one net rarely fills both): each call is a front half (detect, track, align, embed,
  match, smoothing: the books of tracks and runs) and a back half (swap, landmarks, mask, blend: the pixels and
  the mask book). With `overlap` the front half of batch k+1 runs in a worker thread while the calling thread
  runs the back half of batch k (ONNX Runtime, OpenVINO, numpy and cv2 release the GIL). The two halves share
  no state (the front hands the back a `Release`), so the frames come out bit-identical to the serial order,
  one call later: process_batch(batch k+1) returns batch k's frames and flush() the rest. A swapper without
  smoothing lookahead (the webcam: one frame in, one out) never overlaps unless asked.
Frames with nothing to swap are handed back as the very arrays that came in (bit-identical).
"""

import concurrent.futures
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ghostrt.errors import at_least_one
from ghostrt.runtime.stages import align, mask, match
from ghostrt.runtime.stages import smoothing as keypoint_smoothing
from ghostrt.runtime.stages.tracking import FaceTracker
from ghostrt.runtime.swap.core import FaceJob, Nets, swap_faces
from ghostrt.runtime.swap.image_swapper import check_face_rule, prepare_detector
from ghostrt.runtime.swap.timer import StageTimer
from ghostrt.runtime.types import Face

LOOKAHEAD = keypoint_smoothing.HALF_WIDTH
# Off: on this 2-core EPYC with OpenVINO FP32 nets (each already using both cores) the overlap measured slower
# at batch 8 in every A/B round (bench/cpu-choices-2026-11-29.json, "video_overlap"); turn on where it pays.
OVERLAP_BY_DEFAULT = False


# ---------------------------------------------------------------------------------------------- the books

@dataclass
class FrameRecord:
    """One frame on its way through: its pixels until released, its faces (raw keypoints) per track, and
    which run of its track each face belongs to (runs split where smoothing splits them)."""

    index: int
    frame: np.ndarray | None
    faces: dict[int, Face]
    runs: dict[int, int] = field(default_factory=dict)


@dataclass
class PlannedFace:
    """One face to swap in a released frame."""

    slot: int                   # position of its frame in the release list
    track: int
    run: int
    kps: np.ndarray             # (5, 2) keypoints used for alignment (smoothed when smoothing is on)
    identity: np.ndarray        # (512,) raw source embedding to put in


@dataclass
class Release:
    """The front half's hand-over to the back half: the released frames, the faces to swap in them, and the
    (track, run) pairs whose mask params must be kept once they are swapped."""

    ready: list[FrameRecord]
    planned: list[PlannedFace]
    live_runs: set[tuple[int, int]]


def choose_faces(faces: dict[int, Face], embeddings: dict[int, np.ndarray], sources: np.ndarray,
                 targets: np.ndarray | None, rule: str, threshold: float) -> list[tuple[int, np.ndarray]]:
    """[(track id, identity)] to swap in one frame: ImageSwapper's rule, on the tracks' stored embeddings."""
    ids = list(faces)
    if not ids:
        return []
    if targets is None or len(targets) == 0:
        identity = match.average_identity(sources)
        return [(ids[i], identity) for i in match.select_faces([faces[t] for t in ids], rule)]
    chosen = match.assign_to_targets(np.stack([embeddings[t] for t in ids]), sources, targets, threshold)
    return [(ids[face], identity) for face, identity, _, _ in chosen]


# -------------------------------------------------------------------------------------------- the swapper

class VideoSwapper:
    """process_batch(frames) -> frames for video_loop.swap_video: stateful, in order, with `flush()`.

    `sources`: raw source embeddings (S×512); `targets`: --target-face embeddings (T×512) or None.
    `overlap`: True/False, or None for the default: OVERLAP_BY_DEFAULT where there is smoothing lookahead (the
    caller already accepts held-back frames and calls flush()), off without; `close()` ends the worker thread."""

    def __init__(self, nets: Nets, sources: np.ndarray, targets: np.ndarray | None = None,
                 faces: str = "largest", similarity: float = match.DEFAULT_THRESHOLD, batch: int = 8,
                 detect_every: int = 1, smoothing: bool = True, timer: StageTimer | None = None,
                 overlap: bool | None = None, first_index: int = 0):
        check_face_rule(faces)
        at_least_one("--detect-every", detect_every)
        at_least_one("--batch", batch)
        self.nets = nets
        self.sources = np.asarray(sources, np.float32).reshape(-1, 512)
        self.targets = None if targets is None or len(targets) == 0 else np.asarray(targets, np.float32)
        self.faces_rule = faces
        self.similarity = float(similarity)
        self.batch = batch
        self.detect_every = detect_every
        self.lookahead = LOOKAHEAD if smoothing else 0
        self.timer = timer or StageTimer()
        prepare_detector(nets)
        self.tracker = FaceTracker()
        self.pending: deque[FrameRecord] = deque()       # frames waiting for their smoothing window
        self.history: deque[FrameRecord] = deque(maxlen=LOOKAHEAD)   # released frames' keypoints only
        self.embeddings: dict[int, np.ndarray] = {}       # track id -> raw ArcFace embedding (targets only)
        self.run_count: dict[int, int] = {}                # track id -> its current run number
        self.mask_params: dict[tuple[int, int], mask.MaskParams] = {}
        # global index of the next frame: --detect-every's cadence follows it (a segment starts mid-video)
        self.frames_seen = int(first_index)
        self.frames_swapped = 0
        self.faces_swapped = 0
        self.overlap = OVERLAP_BY_DEFAULT and self.lookahead > 0 if overlap is None else bool(overlap)
        # the front half's stage times: its own timer while it runs beside the back half, merged after each call
        self.front_timer = StageTimer() if self.overlap else self.timer
        self.due: Release | None = None                   # overlap: the release whose back half runs next call
        self.worker: concurrent.futures.ThreadPoolExecutor | None = None

    def __call__(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        return self.process_batch(frames)

    # ------------------------------------------------------------------------------------------ streaming

    def process_batch(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Take a batch, hand back every frame whose smoothing window is now complete (oldest first); with
        overlap, the frames that were complete after the previous call."""
        if not self.overlap:
            return self._back(self._front(list(frames)))
        due, self.due = self.due, None
        if self.worker is None:
            self.worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ghostrt-front")
        future = self.worker.submit(self._front, list(frames))
        try:
            outputs = self._back(due)
        finally:
            concurrent.futures.wait([future])     # never leave the front half running past an error here
        self.due = self._collect(future)
        return outputs

    def flush(self) -> list[np.ndarray]:
        """End of the video: the held frames, whose windows end with the stream."""
        due, self.due = self.due, None
        outputs = self._back(due)
        ready = list(self.pending)
        self.pending.clear()
        return outputs + self._back(self._prepare(ready))

    def close(self) -> None:
        """End the worker thread (the loop calls this when the video is done)."""
        if self.worker is not None:
            self.worker.shutdown(wait=True)
            self.worker = None

    def _collect(self, future: concurrent.futures.Future) -> Release | None:
        """The worker's Release (its exception, re-raised as it was), its stage times added to the timer."""
        try:
            return future.result()
        finally:
            for name, seconds in self.front_timer.seconds.items():
                self.timer.seconds[name] = self.timer.seconds.get(name, 0.0) + seconds
            self.front_timer.seconds.clear()

    # --------------------------------------------------------------------------------------- the front half

    def _front(self, frames: list[np.ndarray]) -> Release | None:
        """Admit a batch and plan the frames whose smoothing window is now complete."""
        self._admit(frames)
        ready = []
        while self.pending and self.pending[0].index < self.frames_seen - self.lookahead:
            ready.append(self.pending.popleft())
        return self._prepare(ready)

    def _prepare(self, ready: list[FrameRecord]) -> Release | None:
        """Plan the released frames, move them to the history and drop the books no frame can use again."""
        if not ready:
            return None
        planned = self._plan(ready)
        self.history.extend(ready)        # their keypoints serve the next windows; the back half drops pixels
        return Release(ready, planned, self._forget_ended_tracks())

    def _admit(self, frames: list[np.ndarray]) -> None:
        """Detect (one call for the due frames), track, embed the newborn tracks (one call), record."""
        first = self.frames_seen
        due = [k for k in range(len(frames)) if (first + k) % self.detect_every == 0]
        detections = {}
        if due:
            with self.front_timer.stage("detect"):
                found = self.nets.detector.detect([frames[k] for k in due])
            detections = dict(zip(due, found))
        newborn = []                          # (track id, frame, face) of each track born in this batch
        for k, frame in enumerate(frames):
            if k in detections:
                faces, born = self.tracker.update(detections[k])
                newborn += [(tid, frame, faces[tid]) for tid in born]
            else:
                faces = self.tracker.carry()
            record = FrameRecord(first + k, frame, faces)
            self._assign_runs(record)
            self.pending.append(record)
        self.frames_seen += len(frames)
        if self.targets is not None and newborn:
            with self.front_timer.stage("align"):
                crops = np.stack([align.align_batch(frame, [face])[0][0] for _, frame, face in newborn])
            with self.front_timer.stage("embed"):
                embs = self.nets.arcface.embed(crops)
            for (tid, _, _), emb in zip(newborn, embs):
                self.embeddings[tid] = emb

    def _assign_runs(self, record: FrameRecord) -> None:
        """A face continues its track's run unless it was absent from the previous frame or jumped."""
        previous = self.pending[-1] if self.pending else (self.history[-1] if self.history else None)
        for tid, face in record.faces.items():
            prev = previous.faces.get(tid) if previous is not None else None
            if prev is None or keypoint_smoothing.is_jump(np.asarray(prev.kps, np.float64),
                                                          np.asarray(face.kps, np.float64)):
                self.run_count[tid] = self.run_count.get(tid, -1) + 1
            record.runs[tid] = self.run_count[tid]

    def _smoothed_kps(self, record: FrameRecord, window: list[FrameRecord], centre: int, tid: int) -> np.ndarray:
        if self.lookahead == 0:
            return np.asarray(record.faces[tid].kps, np.float32)
        track = [r.faces[tid].kps if tid in r.faces else None for r in window]
        return keypoint_smoothing.smooth_tracks(track)[centre]

    def _plan(self, ready: list[FrameRecord]) -> list[PlannedFace]:
        """Which faces of the released frames to swap, with which identity and which keypoints."""
        planned = []
        known = list(self.history) + ready + list(self.pending)    # consecutive frames, oldest first
        for slot, record in enumerate(ready):
            at = len(self.history) + slot       # the window: frames index−2 … index+2, where they exist
            window = known[max(0, at - LOOKAHEAD):at + LOOKAHEAD + 1]
            centre = at - max(0, at - LOOKAHEAD)
            with self.front_timer.stage("match"):
                chosen = choose_faces(record.faces, self.embeddings, self.sources, self.targets, self.faces_rule,
                                      self.similarity)
            for tid, identity in chosen:
                planned.append(PlannedFace(slot, tid, record.runs[tid],
                                           self._smoothed_kps(record, window, centre, tid),
                                           np.asarray(identity, np.float32).reshape(512)))
        return planned

    # ---------------------------------------------------------------------------------------- the back half

    def _back(self, release: Release | None) -> list[np.ndarray]:
        """Swap the faces of the released frames in one batch per net and paste them back, frame by frame."""
        if release is None:
            return []
        ready = release.ready
        outputs = [record.frame for record in ready]
        if release.planned:
            self._swap(ready, release.planned, outputs)
        for record in ready:              # the history keeps their keypoints; the pixels go
            record.frame = None
        for key in [k for k in self.mask_params if k not in release.live_runs]:
            del self.mask_params[key]
        return outputs

    def _swap(self, ready: list[FrameRecord], planned: list[PlannedFace], outputs: list[np.ndarray]) -> None:
        """The swap core over every planned face of the released frames; a run's mask params, chosen on its
        first swapped frame, are reused for the rest of the run so the mask edge does not flicker."""
        jobs = [FaceJob(p.slot, p.kps, p.identity, self.mask_params.get((p.track, p.run)), mask_group=(p.track, p.run))
                for p in planned]
        swapped, made = swap_faces(self.nets, [record.frame for record in ready], jobs, self.timer)
        for p, out in zip(planned, made):
            self.mask_params.setdefault((p.track, p.run), out.mask_params)
        slots = {p.slot for p in planned}
        for slot in slots:
            outputs[slot] = swapped[slot]
        self.frames_swapped += len(slots)
        self.faces_swapped += len(planned)

    def _forget_ended_tracks(self) -> set[tuple[int, int]]:
        """Drop the books of tracks no frame can mention again (bounded memory on long videos); return the
        (track, run) pairs still mentioned, whose mask params the back half keeps."""
        alive = set(self.tracker.faces)
        runs = {(tid, self.run_count[tid]) for tid in alive}
        for record in list(self.history) + list(self.pending):
            alive.update(record.faces)
            runs.update(record.runs.items())
        for tid in [t for t in self.embeddings if t not in alive]:
            del self.embeddings[tid]
        for tid in [t for t in self.run_count if t not in alive]:
            del self.run_count[tid]
        return runs
