"""Uploads are checked exactly like the CLI's inputs (image_io.read_image / video_io.probe) after a size limit,
so a text file named .jpg, an empty file or an oversized one becomes one clear line in the page, never a crash.
"""

import json
import re
import tempfile
from pathlib import Path

from ghostrt.errors import GhostError

DEFAULT_MAX_IMAGE_MB = 40
DEFAULT_MAX_VIDEO_MB = 400
CHUNK = 1 << 20


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is answered 413 with a JSON message, whether or not
    it announced its length (the rest of it is never read)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        started = False

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send):
        body = json.dumps({"error": f"upload too large (over {self.limit // (1 << 20)} MB)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def safe_name(name: str | None, default: str = "upload") -> str:
    """The uploaded file's own name, reduced to a harmless base name (kept for messages and the suffix)."""
    base = Path(name or default).name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or default
    return base[:120]


async def save_upload(upload, folder: Path, limit: int) -> Path:
    """Write an UploadFile under folder (its own subfolder, the upload's name) in chunks, refusing past limit."""
    name = safe_name(upload.filename)
    target = Path(tempfile.mkdtemp(dir=folder)) / name
    size = 0
    with open(target, "wb") as fh:
        while chunk := await upload.read(CHUNK):
            size += len(chunk)
            if size > limit:
                fh.close()
                target.unlink(missing_ok=True)
                raise GhostError(f"{name}: file too large (over {limit // (1 << 20)} MB)")
            fh.write(chunk)
    return target


def user_message(err: Exception, path: Path | None) -> str:
    """A GhostError's line with the temporary folder taken out, so it names the file as the user knows it."""
    text = str(err)
    if path is not None:
        text = text.replace(str(path), path.name).replace(str(path.resolve()), path.name)
    return text.splitlines()[0] if text else type(err).__name__


def read_image_upload(path: Path):
    """RGB, alpha and info of an uploaded image, or a GhostError naming it (as `ghostrt swap image` would)."""
    from ghostrt.runtime.io import image_io

    try:
        return image_io.read_image(path)
    except GhostError as err:
        raise GhostError(user_message(err, path)) from None
