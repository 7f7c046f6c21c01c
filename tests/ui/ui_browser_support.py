"""What the browser tests share: the app served by uvicorn on a free 127.0.0.1 port in a thread (stopped at the
end), Debian's Chromium driven by Playwright (never a downloaded browser), and a fake-camera y4m clip made from
scikit-image's astronaut (a real face)."""

import contextlib
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 # two live tabs at once: the one not in front must keep rendering and running its timers
                 "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows",
                 "--disable-background-timer-throttling"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(app, seconds: float = 20.0):
    """Run the ASGI app on 127.0.0.1:<free port> until the block ends; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + seconds
    while not server.started:
        if time.monotonic() > end or not thread.is_alive():
            raise RuntimeError("the ui server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def astronaut(size=(320, 240)) -> np.ndarray:
    from skimage import data

    img = data.astronaut()                       # 512x512 RGB, the face in the upper middle
    crop = img[0:384, 64:576 - 64]               # 384 x 448 around the face
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA)


def write_y4m(path: Path, frames: int = 30, size=(320, 240), fps: int = 15) -> Path:
    """A YUV4MPEG2 clip (what Chromium's fake camera reads) of the astronaut moving a little."""
    w, h = size
    base = astronaut((w + 16, h + 16))
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            dx = int(8 + 6 * np.sin(i / frames * 2 * np.pi))
            frame = np.ascontiguousarray(base[8:8 + h, dx:dx + w])
            fh.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


@contextlib.contextmanager
def chromium(tmp_path: Path, camera: Path | None = None, count: int = 1):
    """A fresh headless Chromium (its own user-data-dir); with camera, a fake webcam playing that y4m. With
    count > 1, that many separate browsers (a list): two live sessions as two people would open them."""
    from playwright.sync_api import sync_playwright

    args = list(CHROMIUM_ARGS)
    if camera is not None:
        args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-video-capture={camera}"]
    with sync_playwright() as pw:
        contexts = []
        try:
            for i in range(count):
                contexts.append(pw.chromium.launch_persistent_context(
                    str(tmp_path / f"chromium-profile-{i}"), executable_path=str(CHROMIUM), headless=True,
                    args=args, accept_downloads=True, viewport={"width": 1400, "height": 1000}))
            yield contexts[0] if count == 1 else contexts
        finally:
            for context in contexts:
                context.close()
