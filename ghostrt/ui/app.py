"""The `ghostrt ui` web app: FastAPI routes over one loaded ghostrt.Swapper for the image, video and live tabs
and the status panel; the page itself is static/ (plain HTML + JS, no build step).

One lock serialises the Swapper between the image requests, the video job's batches and the live scheduler,
so each call sees the nets alone; live frames wait at most one image or video batch.
"""

import base64
import contextlib
import io
import shutil
import tempfile
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image

from ghostrt.errors import GhostError
from ghostrt.ui import uploads

STATIC = Path(__file__).parent / "static"
MAX_ENTRIES = 64              # uploads kept in memory (oldest forgotten first)
THUMB = 128


class Entry(SimpleNamespace):
    """One checked upload: name, path, rgb, alpha, info; identity / faces once computed."""


class AppState:
    def __init__(self, swapper, work_dir: Path, max_image_bytes: int, max_video_bytes: int):
        self.sw = swapper
        self.lock = threading.RLock()
        self.work_dir = work_dir
        self.max_image_bytes, self.max_video_bytes = max_image_bytes, max_video_bytes
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.files: dict[str, Path] = {}
        self.jobs: dict = {}

    def keep(self, entry: Entry) -> str:
        key = uuid.uuid4().hex
        self.entries[key] = entry
        while len(self.entries) > MAX_ENTRIES:
            self.entries.popitem(last=False)
        return key

    def entry(self, key: str, what: str) -> Entry:
        entry = self.entries.get(key)
        if entry is None:
            raise GhostError(f"{what}: upload not found (it expired or the server restarted); upload it again")
        return entry

    def publish(self, path: Path) -> str:
        key = uuid.uuid4().hex
        self.files[key] = path
        return f"/api/files/{key}/{path.name}"

    def identity(self, entry: Entry):
        if getattr(entry, "identity", None) is None:
            with self.lock:
                entry.identity = self.sw.identity([entry.rgb])
        return entry.identity


def _thumb(rgb: np.ndarray, box) -> str:
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    mx, my = (x1 - x0) // 5, (y1 - y0) // 5
    crop = rgb[max(0, y0 - my):min(h, y1 + my), max(0, x0 - mx):min(w, x1 + mx)]
    image = Image.fromarray(np.ascontiguousarray(crop) if crop.size else rgb)
    image.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _status(sw) -> dict:
    describe = sw.describe() if hasattr(sw, "describe") else {}
    return {"nets": describe, "standin_models": list(getattr(sw, "standin_models", []) or []),
            "standin_warning": ("STAND-IN (untrained) weights: output is not a real face swap"
                                if getattr(sw, "standin_models", None) else None)}


def create_app(swapper, work_dir: Path | None = None, max_image_mb: int = uploads.DEFAULT_MAX_IMAGE_MB,
               max_video_mb: int = uploads.DEFAULT_MAX_VIDEO_MB, live: bool = True, scheduler_options=None):
    """The app over a loaded Swapper (or any object with its API). work_dir holds uploads and results."""
    owns_dir = work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="ghostrt-ui-")) if owns_dir else Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    state = AppState(swapper, work_dir, max_image_mb << 20, max_video_mb << 20)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        if hasattr(app.state, "live"):
            await app.state.live.close_all()
        if owns_dir:
            shutil.rmtree(work_dir, ignore_errors=True)

    app = FastAPI(title="ghostrt", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.add_middleware(uploads.BodyLimit, limit=(max(max_image_mb, max_video_mb) + 1) << 20)
    app.state.ghost = state

    @app.exception_handler(GhostError)
    async def ghost_error(_request: Request, err: GhostError):
        return JSONResponse({"error": str(err).splitlines()[0]}, status_code=400)

    @app.exception_handler(Exception)
    async def any_error(_request: Request, err: Exception):     # never a crash page: one line, app keeps serving
        return JSONResponse({"error": f"internal error: {type(err).__name__}: {str(err)[:200]}"}, status_code=500)

    @app.get("/api/status")
    def status():
        out = _status(state.sw)
        if live and hasattr(app.state, "live"):
            out["live"] = app.state.live.stats()
        return out

    async def _checked_image(upload: UploadFile) -> tuple[Path, Entry]:
        path = await uploads.save_upload(upload, state.work_dir, state.max_image_bytes)
        rgb, alpha, info = uploads.read_image_upload(path)
        return path, Entry(name=path.name, path=path, rgb=rgb, alpha=alpha, info=info, identity=None, faces=None)

    @app.post("/api/source")
    async def source(file: UploadFile = File(...)):
        path, entry = await _checked_image(file)
        try:
            state.identity(entry)
        except GhostError as err:
            raise GhostError(uploads.user_message(err, path)) from None
        return {"id": state.keep(entry), "name": entry.name, "thumb": _thumb(entry.rgb, (0, 0, *entry.rgb.shape[1::-1]))}

    @app.post("/api/target")
    async def target(file: UploadFile = File(...)):
        _, entry = await _checked_image(file)
        with state.lock:
            entry.faces = list(state.sw.detect(entry.rgb))
        faces = [{"index": i, "box": [round(float(v), 1) for v in f.box], "score": round(float(f.score), 3),
                  "thumb": _thumb(entry.rgb, f.box)} for i, f in enumerate(entry.faces)]
        h, w = entry.rgb.shape[:2]
        return {"id": state.keep(entry), "name": entry.name, "width": w, "height": h, "faces": faces}

    @app.post("/api/swap/image")
    def swap_image(target: str = Form(...), sources: str = Form(...), mode: str = Form("largest"),
                   assign: str = Form("")):
        from ghostrt.ui import image_job

        tgt = state.entry(target, "target")
        srcs = [state.entry(k, "source") for k in sources.split(",") if k]
        out = image_job.run(state, tgt, srcs, mode, assign)
        return {**out, "result": state.publish(out.pop("result_path")), "sheet": state.publish(out.pop("sheet_path"))}

    @app.get("/api/files/{key}/{name}")
    def download(key: str, name: str):
        path = state.files.get(key)
        if path is None or path.name != name or not path.exists():
            raise HTTPException(404, "no such file")
        return FileResponse(path, filename=path.name)

    if live:
        from ghostrt.ui import live as live_mod

        live_mod.mount(app, state, **(scheduler_options or {}))
    from ghostrt.ui import video_job

    video_job.mount(app, state)

    app.mount("/", StaticFiles(directory=STATIC, html=True), name="static")
    return app
