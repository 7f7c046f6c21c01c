"""The public library: `ghostrt.Swapper` loads the four nets once and swaps faces in frames, batches, streams
and video files. Every command (swap, bench, ui, render) is built on it; it never imports torch (an export of
missing ONNX files is the only step that does, and only when it runs)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Protocol, Sequence, Union

import numpy as np

from ghostrt.errors import Cancelled, GhostError
from ghostrt.loading import LoadedNets, load_nets
from ghostrt.runtime.stages import align, match
from ghostrt.runtime.swap.image_swapper import ImageSwapper, SwapResult, SwappedFace, check_face_rule
from ghostrt.runtime.swap.timer import StageTimer
from ghostrt.runtime.swap.video_swapper import VideoSwapper
from ghostrt.runtime.types import Face

Photo = Union[str, Path, np.ndarray, tuple]   # a path, an H×W×3 uint8 RGB array, or (name, array)


@dataclass
class ImageOutput:
    """What Swapper.swap_image did: the swap, the target's facts, notes on the written file, its label, and
    the stage timings (read, nets, write, sheet)."""

    result: SwapResult
    info: object                    # runtime.io.image_io.ImageInfo of the target
    notes: list[str]
    label: dict
    timer: StageTimer

class CancelFlag(Protocol):
    """What `cancel` takes: a threading.Event, or anything with is_set()."""

    def is_set(self) -> bool: ...


class _Guarded:
    """A stream as the video loop's process_batch, with the caller's cancel, lock and progress around each
    batch: cancel is looked at before a batch starts (never mid-batch, so the nets are never left half-used),
    the lock is held only while the nets run, so a live caller waits at most one batch."""

    def __init__(self, stream: VideoSwapper, total: int, on_progress, cancel, lock):
        self.stream, self.total, self.on_progress, self.cancel = stream, max(0, int(total)), on_progress, cancel
        self.lock = lock if lock is not None else contextlib.nullcontext()
        self.done = 0

    def _run(self, call, *args) -> list[np.ndarray]:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("cancelled")
        with self.lock:
            out = call(*args)
        self.done += len(out)
        if self.on_progress is not None:
            self.on_progress(self.done, max(self.total, self.done))
        return out

    def __call__(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        return self._run(self.stream.process_batch, frames)

    def flush(self) -> list[np.ndarray]:
        return self._run(self.stream.flush)


__all__ = ["Cancelled", "CancelFlag", "Face", "Identity", "ImageOutput", "Photo", "Swapper", "SwapResult",
           "SwappedFace"]


@dataclass(frozen=True)
class Identity:
    """One person, from one or more photos: their raw ArcFace embeddings. Nothing else of the photos is kept
    (no pixels, no file names), so an Identity never identifies its source beyond the swap itself."""

    embeddings: np.ndarray          # (S, 512) raw, one per photo

    @property
    def embedding(self) -> np.ndarray:
        """(512,) the photos averaged (normalised, mean, re-scaled); a single photo's own embedding."""
        if len(self.embeddings) == 1:
            return self.embeddings[0]
        return match.average_identity(self.embeddings)

    @property
    def count(self) -> int:
        return len(self.embeddings)


def _read_photo(photo: Photo, index: int) -> tuple[Path | str, np.ndarray]:
    from ghostrt.runtime.io import image_io

    if isinstance(photo, np.ndarray):
        return f"photo {index + 1} (array)", _check_frame(photo, f"photo {index + 1}")
    if isinstance(photo, tuple) and len(photo) == 2:        # already read: (the name errors use, the pixels)
        return photo[0], _check_frame(photo[1], str(photo[0]))
    return Path(photo), image_io.read_image(Path(photo))[0]


def _check_frame(frame, what: str = "frame") -> np.ndarray:
    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise GhostError(f"{what}: expected an H×W×3 uint8 RGB array, got {arr.dtype} {arr.shape}")
    return arr


class Swapper:
    """The four GHOST nets on one backend, ready to swap. Make it with `Swapper.load(...)`; `close()` (or a
    `with` block) releases executors, TensorRT contexts, streams and buffers."""

    def __init__(self, loaded: LoadedNets, log: Callable[[str], None] = print):
        self._loaded = loaded
        self.nets = loaded.nets
        self.log = log
        self._closed = False

    @classmethod
    def load(cls, backend: str = "auto", precision: str = "fp16", weights: str | Path | None = None,
             engines: str | Path = "engines", detector: str | None = None, num_blocks: int = 2,
             threads: int | None = None, graph_stages: bool = False,
             log: Callable[[str], None] = print) -> "Swapper":
        """Official weights from `weights` (default weights/) where present, else labelled untrained stand-ins;
        FP32 ONNX under <engines>/onnx (exported once); per net the best executor `backend` allows."""
        return cls(load_nets(backend, precision, weights, engines, detector, num_blocks, threads, graph_stages,
                             log), log)

    def __enter__(self) -> "Swapper":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- facts

    @property
    def standin_models(self) -> list[str]:
        """Used nets whose weights are untrained stand-ins: their output is not a real face swap."""
        return list(self._loaded.standin_models)

    @property
    def detector_kind(self) -> str:
        return self._loaded.detector_kind

    @property
    def choices(self) -> dict:
        return dict(self._loaded.choices)

    def describe(self) -> dict[str, dict]:
        """Per net: the backend and precision that really run, why, and the largest batch it takes."""
        wrapped = {"detector": self.nets.detector, "arcface": self.nets.arcface,
                   "generator": self.nets.generator, "landmarks": self.nets.landmarks}
        return {name: {"backend": c.backend, "precision": c.precision, "reason": c.reason,
                       "max_batch": getattr(wrapped[name], "max_batch", None),
                       "standin": name in self._loaded.standin_models}
                for name, c in self._loaded.choices.items()}

    def label(self, swapped: int, operation: str = "image face swap") -> dict:
        """The provenance label every output of this Swapper carries."""
        from ghostrt.runtime.io.provenance_label import make_label

        return make_label(swapped, bool(self._loaded.standin_models), operation=operation)

    # ---------------------------------------------------------------------------------------- identities

    def identity(self, photos: Photo | Sequence[Photo], role: str = "--source") -> Identity:
        """One identity from photos (paths, H×W×3 uint8 RGB arrays, or (name, array) pairs): the largest face of
        each. A photo without a face raises GhostError naming it."""
        if isinstance(photos, (str, Path, np.ndarray)) or (isinstance(photos, tuple) and len(photos) == 2
                                                           and isinstance(photos[1], np.ndarray)):
            photos = [photos]
        if len(photos) == 0:
            raise GhostError(f"{role}: give at least one photo")
        read = [_read_photo(p, i) for i, p in enumerate(photos)]
        return Identity(ImageSwapper(self.nets).embed_photos(read, role))

    def detect(self, frame: np.ndarray) -> list[Face]:
        """The faces of one frame, as the swap sees them."""
        return self.nets.detector.detect([_check_frame(frame)])[0]

    def _sources(self, who: Identity | Sequence[Identity], paired: bool = False) -> np.ndarray:
        """Raw source rows: one Identity's photos (averaged by the swap), or one averaged row per Identity
        when they pair with target faces."""
        if isinstance(who, Identity):
            return who.embedding[None] if paired else who.embeddings
        who = list(who)
        if not who or not all(isinstance(w, Identity) for w in who):
            raise GhostError("who: give an Identity (Swapper.identity) or a list of them")
        if len(who) == 1 and not paired:
            return who[0].embeddings
        return np.stack([w.embedding for w in who])

    def _targets(self, frame: np.ndarray | None, targets) -> np.ndarray | None:
        if targets is None:
            return None
        rows = []
        for t in targets:
            if isinstance(t, Identity):
                rows.append(t.embedding)
            elif isinstance(t, Face):
                if frame is None:
                    raise GhostError("targets: a Face can only name a face of the frame given to swap()")
                crop = align.align_batch(frame, [t])[0]
                rows.append(self.nets.arcface.embed(crop)[0])
            else:
                raise GhostError(f"targets: expected Identity or Face, got {type(t).__name__}")
        return np.stack(rows) if rows else None

    def _identities(self, who, targets, similarity: float, frame: np.ndarray | None = None):
        """(source rows, target rows or None) for one call, with the checks every swap entry point shares."""
        match.check_similarity(similarity)
        target_embs = targets if isinstance(targets, np.ndarray) or targets is None else self._targets(frame, targets)
        sources = self._sources(who, paired=target_embs is not None)
        if target_embs is not None and len(sources) not in (1, len(target_embs)):
            raise GhostError(f"{len(sources)} source identities for {len(target_embs)} target faces: give one "
                             "(used for every target face) or one per target face")
        return sources, target_embs

    # ------------------------------------------------------------------------------------------ swapping

    def swap(self, frame: np.ndarray, who: Identity | Sequence[Identity], faces: str = "largest",
             targets: Sequence[Identity | Face] | None = None, similarity: float = match.DEFAULT_THRESHOLD
             ) -> SwapResult:
        """Swap `who` onto the chosen faces of one H×W×3 uint8 RGB frame: the `faces` rule ("largest" or
        "all"), or with `targets`, each target face's best match above `similarity` (who[i] → targets[i])."""
        frame = _check_frame(frame)
        return self.swap_batch([frame], who, faces, self._targets(frame, targets), similarity)[0]

    def swap_batch(self, frames: Sequence[np.ndarray], who: Identity | Sequence[Identity],
                   faces: str = "largest", targets=None, similarity: float = match.DEFAULT_THRESHOLD
                   ) -> list[SwapResult]:
        """Many independent frames (sizes may differ), the nets batched across them."""
        frames = [_check_frame(f, f"frame {i + 1}") for i, f in enumerate(frames)]
        sources, target_embs = self._identities(who, targets, similarity)
        swapper = ImageSwapper(self.nets, faces=faces, similarity=similarity, timer=StageTimer())
        return swapper.swap_batch(frames, sources, target_embs)

    def stream(self, who: Identity | Sequence[Identity], targets: Sequence[Identity] | None = None,
               faces: str = "largest", similarity: float = match.DEFAULT_THRESHOLD, batch: int = 8,
               detect_every: int = 1, smoothing: bool = True, overlap: bool | None = None,
               first_index: int = 0, timer: StageTimer | None = None) -> VideoSwapper:
        """A stateful swapper for consecutive frames (video, webcam): faces tracked, keypoints smoothed.
        process_batch(frames) → frames in order (up to 2 held back for smoothing), flush() → the rest."""
        check_face_rule(faces)
        sources, target_embs = self._identities(who, targets, similarity)
        return VideoSwapper(self.nets, sources, target_embs, faces=faces, similarity=similarity, batch=batch,
                            detect_every=detect_every, smoothing=smoothing, timer=timer, overlap=overlap,
                            first_index=first_index)

    def provenance(self, output=None, target=None, sign_cert=None, sign_key=None, visible_mark: bool = False,
                   live: bool = False):
        """What every output of this Swapper carries besides the label: a signed C2PA manifest (`sign_cert` /
        `sign_key` PEM files, else $GHOSTRT_SIGN_CERT/KEY, else a local test CA made on first use), the
        invisible watermark and, when asked (always on live output), the visible mark. Checked now."""
        from ghostrt.runtime.io import provenance

        gen = self._loaded.choices["generator"]
        return provenance.for_output(output, target, gen.backend, gen.precision, sign_cert, sign_key,
                                     visible_mark if not live else None, live, log=self.log)

    def swap_image(self, target: str | Path, output: str | Path, who: Identity | Sequence[Identity],
                   targets: Sequence[Identity] | None = None, faces: str = "largest",
                   similarity: float = match.DEFAULT_THRESHOLD, debug_sheet: str | Path | None = None,
                   sign_cert=None, sign_key=None, visible_mark: bool = False) -> ImageOutput:
        """Swap one image file into `output` (PNG, JPEG, WebP; alpha and ICC profile kept), signed, watermarked
        and labelled, written atomically; optionally the debug sheet beside it."""
        from ghostrt.runtime.io import image_io

        target, output = Path(target), Path(output)
        image_io.check_output_path(output)
        if debug_sheet is not None:
            debug_sheet = Path(debug_sheet)
            image_io.check_output_path(debug_sheet, "debug sheet")
            if debug_sheet.resolve() == output.resolve():
                raise GhostError(f"{debug_sheet}: the debug sheet would overwrite the output")
        prov = self.provenance(output, target, sign_cert, sign_key, visible_mark)
        timer = StageTimer()
        with timer.stage("read"):
            rgb, alpha, info = image_io.read_image(target)
        result = self.swap(rgb, who, faces=faces, targets=targets, similarity=similarity)
        for name, ms in result.timings.items():
            timer.seconds[name] = timer.seconds.get(name, 0.0) + ms / 1000.0
        label = self.label(len(result.swapped))
        with timer.stage("write"):
            notes = image_io.write_image(output, result.frame, alpha, label, info.icc_profile, provenance=prov)
        if debug_sheet is not None:
            from ghostrt.runtime.io.debug_sheet import write_debug_sheet

            with timer.stage("sheet"):
                write_debug_sheet(debug_sheet, rgb, result, timer.seconds, standin_models=self.standin_models,
                                  title=f"{target.name} -> {output.name}  "
                                        f"({self.detector_kind}, {self.choices['generator'].backend})", label=label)
        return ImageOutput(result, info, notes, label, timer)

    def swap_video(self, target: str | Path, output: str | Path, who: Identity | Sequence[Identity],
                   targets: Sequence[Identity] | None = None, faces: str = "largest",
                   similarity: float = match.DEFAULT_THRESHOLD, batch: int = 8, detect_every: int = 1,
                   crf: int | None = 18, codec: str | None = None, overlap: bool | None = None,
                   progress: bool = False, log=None, sign_cert=None, sign_key=None,
                   visible_mark: bool = False, on_progress: Callable[[int, int], None] | None = None,
                   cancel: CancelFlag | None = None, lock: ContextManager | None = None) -> dict:
        """Swap through a whole video file (audio and subtitles kept; every frame watermarked; signed after
        the file is complete, written atomically); the summary. `codec` None: what the container implies.
        The defaults are `ghostrt swap video`'s, so any caller (the web UI included) renders what the CLI does.

        For callers that run it beside other work (a server):
        - `on_progress(done, total)`: after every batch, frames swapped so far and the probed frame count
          (an estimate for some containers; never below `done`). Called in the calling thread.
        - `cancel`: looked at before each batch; once set, raises ghostrt.errors.Cancelled (a
          KeyboardInterrupt) and, as with Ctrl-C, no partial output is left.
        - `lock`: held around each batch's net calls (and the stream's setup and teardown), so other users of
          this Swapper (a live scheduler) interleave between batches instead of racing on the executors."""
        from ghostrt.runtime.io import video_io, video_writer
        from ghostrt.runtime.loops.video_loop import swap_video

        info = video_io.probe(Path(target))
        video_writer.plan_output(Path(output), info, codec)
        prov = self.provenance(output, target, sign_cert, sign_key, visible_mark)
        guard = lock if lock is not None else contextlib.nullcontext()
        with guard:
            process = self.stream(who, targets, faces, similarity, batch, detect_every, smoothing=True,
                                  overlap=overlap)
        try:
            guarded = _Guarded(process, info.frames, on_progress, cancel, lock)
            summary = swap_video(Path(target), Path(output), guarded, batch=batch, codec=codec, crf=crf,
                                 label=self.label(1, "video face swap"), progress=progress, log=log,
                                 provenance=prov)
        finally:
            with guard:
                process.close()
        summary["faces_swapped"] = process.faces_swapped
        summary["frames_swapped"] = process.frames_swapped
        summary["timings"] = dict(process.timer.seconds)
        return summary

    def close(self) -> None:
        """Release every executor (TensorRT contexts, streams, buffers; the runtime cache is saved)."""
        if self._closed:
            return
        self._closed = True
        for choice in self._loaded.choices.values():
            closer = getattr(choice.executor, "close", None)
            if callable(closer):
                closer()
