"""The video tab: an upload is probed like `ghostrt swap video`'s input, its first frame with a face is the
gallery, a preview swaps that frame with the chosen faces, and the render is `Swapper.swap_video` itself (the
call behind `ghostrt swap video`, with its defaults: smoothing, batch, detect cadence, codec), so the page's
file is the CLI's. It runs in a worker thread with the app lock around each batch, reports frames, fps and
ETA, and a cancel stops it between batches with no partial output.
"""

import io
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from fastapi import File, Form, UploadFile
from PIL import Image

from ghostrt.errors import Cancelled, GhostError
from ghostrt.ui import uploads

SCAN_FRAMES = 300            # frames searched for a first face
PREVIEW_MARK = "AI-altered - ghostrt"       # short: it must fit across a small frame
STANDIN_MARK = "AI-altered - STAND-IN"


class Job:
    def __init__(self, state, video, who, targets, faces, output: Path):
        self.id = uuid.uuid4().hex[:12]
        self.state, self.video, self.output = state, video, output
        self.who, self.targets, self.faces = who, targets, faces
        self.total = max(1, int(video.info.frames))
        self.done = 0
        self.status, self.error, self.summary = "running", None, None
        self.started = time.perf_counter()
        self.cancel_event = threading.Event()

    def _progress(self, done: int, total: int) -> None:
        self.done, self.total = done, max(1, total)

    def run(self) -> None:
        try:
            self.summary = self.state.sw.swap_video(self.video.path, self.output, self.who, targets=self.targets,
                                                    faces=self.faces, log=io.StringIO(), on_progress=self._progress,
                                                    cancel=self.cancel_event, lock=self.state.lock)
            self.status = "done"
        except Cancelled:
            self.status = "cancelled"
        except GhostError as err:
            self.status, self.error = "failed", uploads.user_message(err, self.video.path)
        except Exception as err:                 # reported in the page; the server goes on
            self.status, self.error = "failed", f"{type(err).__name__}: {str(err)[:200]}"

    def progress(self) -> dict:
        seconds = time.perf_counter() - self.started
        fps = self.done / seconds if seconds > 0 and self.done else 0.0
        left = max(0, self.total - self.done)
        return {"id": self.id, "status": self.status, "error": self.error, "frames": self.done,
                "total": self.total, "fps": round(fps, 2), "eta_s": round(left / fps, 1) if fps > 0 else None}


def _first_face(state, info):
    """(frame index, rgb, faces) of the first frame where the detector finds a face, within SCAN_FRAMES."""
    from ghostrt.runtime.io import video_io

    for frame in video_io.read_frames(info):
        if frame.index >= SCAN_FRAMES:
            break
        with state.lock:
            faces = list(state.sw.detect(frame.rgb))
        if faces:
            return frame.index, frame.rgb, faces
    return None, None, []


def _face_photo(rgb, box):
    """The face with a wide margin, as a photo the Swapper can take an identity from (a --target-face)."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * 0.8, (y1 - y0) * 0.8
    return rgb[int(max(0, y0 - my)):int(min(h, y1 + my)), int(max(0, x0 - mx)):int(min(w, x1 + mx))].copy()


def _choice(state, entry, sources: str, mode: str, assign: str):
    """(who, targets, faces) for the preview and the render alike, so the preview shows the render's choice.
    Chosen faces become identities from their crops, as `--target-face` photos do in `ghostrt swap video`."""
    from ghostrt.ui.image_job import parse_assign

    srcs = [state.entry(k, "source") for k in sources.split(",") if k]
    if not srcs:
        raise GhostError("no source photo: upload at least one photo of the identity to put in")
    with state.lock:
        if mode == "choose":
            pairs = parse_assign(assign, len(entry.faces or []), len(srcs))
            who = [state.identity(srcs[s]) for _, s in pairs]
            targets = [state.sw.identity([_face_photo(entry.rgb, entry.faces[f].box)]) for f, _ in pairs]
            return who, targets, "largest"
        if mode in ("largest", "all"):
            who = state.sw.identity([s.rgb for s in srcs]) if len(srcs) > 1 else state.identity(srcs[0])
            return who, None, mode
    raise GhostError(f"mode {mode!r}: use largest, all or choose")


def _write_preview(state, entry, result) -> Path:
    """The swapped frame as a PNG the page shows: labelled and visibly marked like live output (it is a swap
    a user can save), the mark saying STAND-IN when the weights are untrained."""
    from ghostrt.runtime.io.provenance_label import save_options
    from ghostrt.ui.runner import draw_mark

    standin = bool(state.sw.standin_models)
    shown = draw_mark(np.asarray(result.image), STANDIN_MARK if standin else PREVIEW_MARK)
    path = Path(tempfile.mkdtemp(dir=state.work_dir)) / (Path(entry.name).stem + "-preview.png")
    label = state.sw.label(len(result.swapped), operation="video face swap preview")
    Image.fromarray(shown).save(path, **save_options("PNG", label))
    return path


def mount(app, state) -> None:
    from ghostrt.ui.app import Entry, _thumb

    @app.post("/api/video")
    async def video_upload(file: UploadFile = File(...)):
        from ghostrt.runtime.io import video_io

        path = await uploads.save_upload(file, state.work_dir, state.max_video_bytes)
        try:
            info = video_io.probe(path)
        except GhostError as err:
            raise GhostError(uploads.user_message(err, path)) from None
        index, rgb, faces = _first_face(state, info)
        entry = Entry(name=path.name, path=path, info=info, rgb=rgb, faces=faces, first_face_frame=index)
        return {"id": state.keep(entry), "name": path.name, "frames": info.frames, "fps": float(info.fps),
                "first_face_frame": index,
                "faces": [{"index": i, "box": [round(float(v), 1) for v in f.box], "thumb": _thumb(rgb, f.box)}
                          for i, f in enumerate(faces)]}

    @app.post("/api/video/preview")
    def video_preview(video: str = Form(...), sources: str = Form(...), mode: str = Form("largest"),
                      assign: str = Form("")):
        entry = state.entry(video, "video")
        if entry.rgb is None:
            raise GhostError(f"{entry.name}: no face in the first {SCAN_FRAMES} frames, nothing to preview")
        who, targets, faces = _choice(state, entry, sources, mode, assign)
        with state.lock:
            result = state.sw.swap(entry.rgb, who, faces=faces, targets=targets)
        path = _write_preview(state, entry, result)
        return {"preview": state.publish(path), "frame": entry.first_face_frame, "swapped": len(result.swapped),
                "faces": len(result.faces), "standin": bool(state.sw.standin_models)}

    @app.post("/api/video/render")
    def video_render(video: str = Form(...), sources: str = Form(...), mode: str = Form("largest"),
                     assign: str = Form("")):
        entry = state.entry(video, "video")
        who, targets, faces = _choice(state, entry, sources, mode, assign)
        out = Path(tempfile.mkdtemp(dir=state.work_dir)) / (Path(entry.name).stem + "-ghostrt.mp4")
        job = Job(state, entry, who, targets, faces, out)
        state.jobs[job.id] = job
        threading.Thread(target=job.run, name=f"ghostrt-video-{job.id}", daemon=True).start()
        return job.progress()

    @app.get("/api/video/job/{job_id}")
    def video_progress(job_id: str):
        job = state.jobs.get(job_id)
        if job is None:
            raise GhostError(f"video job {job_id}: not found")
        out = job.progress()
        if job.status == "done" and "download" not in job.__dict__:
            job.download = state.publish(job.output)
        if job.status == "done":
            out["download"] = job.download
        return out

    @app.post("/api/video/job/{job_id}/cancel")
    def video_cancel(job_id: str):
        job = state.jobs.get(job_id)
        if job is None:
            raise GhostError(f"video job {job_id}: not found")
        job.cancel_event.set()
        return job.progress()
