"""The webcam loop: batch 1, newest frame first.

A live loop must never fall behind the camera: a queue would turn a slow swap into ever-growing delay. So a
capture thread writes each frame into a one-slot mailbox, overwriting the frame that was not taken yet (that
one is counted as dropped), and the loop always processes the newest frame. Latency is measured per frame from
capture to output (after the virtual camera / preview got it) and reported as p50/p99 once a second.

Sources: `--camera N` (OpenCV VideoCapture) or `--camera-file F`, which plays a video file in real time at its
own timestamps, looping, as if it were a camera (for tests, demos and benchmarks without a camera).
"""

import sys
import threading
import time
from pathlib import Path

import numpy as np

from ghostrt.errors import GhostError, at_least_one
from ghostrt.runtime.io import video_io, watermark
from ghostrt.runtime.io import visible_mark as mark

REPORT_SECONDS = 1.0
# the invisible watermark costs ~20-60 ms on a 1080p frame here: every third live frame carries it (README)
WATERMARK_EVERY = 3
TAKE_TIMEOUT_SECONDS = 5.0     # a camera that sends nothing for this long is reported as stalled
VIRTUAL_CAMERA_HELP = ("--virtual-camera needs the pyvirtualcam package (pip install pyvirtualcam) and, on "
                       "Linux, the v4l2loopback kernel module")


# ------------------------------------------------------------------------------------------------ sources

class FileCamera:
    """A video file played in real time at its own timestamps, looping, as if it were a camera."""

    def __init__(self, path, loop: bool = True):
        self.info = video_io.probe(path)
        self.loop = loop
        self.name = f"camera-file {self.info.path}"
        self.fps = float(self.info.fps)
        self.size = self.info.upright_size

    def frames(self, stop: threading.Event):
        """Yield (rgb, capture time) pacing each frame to its pts on the wall clock."""
        start = time.perf_counter()
        offset = 0.0                     # seconds of the file already played in earlier loops
        while not stop.is_set():
            first = last = None
            for frame in video_io.read_frames(self.info):
                if stop.is_set():
                    return
                first = frame.seconds if first is None else first
                last = frame.seconds
                due = start + offset + (frame.seconds - first)
                wait = due - time.perf_counter()
                if wait > 0:
                    stop.wait(wait)
                yield frame.rgb, time.perf_counter()
            if not self.loop or last is None:
                return
            offset += (last - first) + 1.0 / self.fps

    def close(self) -> None:
        pass


class OpenCVCamera:
    """A camera through OpenCV's VideoCapture (V4L2 on Linux); frames converted BGR → RGB."""

    def __init__(self, index: int):
        import cv2

        self.index = index
        self.name = f"camera {index}"
        self.capture = cv2.VideoCapture(index)
        if not self.capture.isOpened():
            self.capture.release()
            raise GhostError(f"--camera {index}: cannot open the camera (not connected, busy, or /dev/video{index} "
                             "not readable); --camera-file F plays a video file instead")
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 30.0)
        self.size = (int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def frames(self, stop: threading.Event):
        import cv2

        while not stop.is_set():
            ok, bgr = self.capture.read()
            if not ok:
                raise GhostError(f"--camera {self.index}: the camera stopped delivering frames")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.perf_counter()

    def close(self) -> None:
        self.capture.release()


def open_source(source):
    """An int (or digit string) is a camera index; anything else is a file played as a camera."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return OpenCVCamera(int(source))
    return FileCamera(Path(source))


# ------------------------------------------------------------------------------------------------ mailbox

class LatestFrame:
    """One slot: put() overwrites, take() waits for a frame newer than the last one taken."""

    def __init__(self):
        self._cond = threading.Condition()
        self._slot = None            # (rgb, capture time)
        self.captured = 0
        self.dropped = 0
        self.ended = False
        self.error: BaseException | None = None

    def put(self, rgb: np.ndarray, captured_at: float) -> None:
        with self._cond:
            if self._slot is not None:
                self.dropped += 1
            self._slot = (rgb, captured_at)
            self.captured += 1
            self._cond.notify()

    def end(self, error: BaseException | None = None) -> None:
        with self._cond:
            self.ended, self.error = True, error
            self._cond.notify()

    def take(self, timeout: float):
        """The newest frame, or None when the source ended (or sent nothing for `timeout` seconds)."""
        with self._cond:
            self._cond.wait_for(lambda: self._slot is not None or self.ended, timeout=timeout)
            item, self._slot = self._slot, None
            return item


def _capture(source, box: LatestFrame, stop: threading.Event) -> None:
    try:
        for rgb, captured_at in source.frames(stop):
            box.put(rgb, captured_at)
        box.end()
    except BaseException as err:      # noqa: BLE001 - handed to the loop
        box.end(err)


# -------------------------------------------------------------------------------------------------- sinks

def require_pyvirtualcam() -> None:
    """Fail before any net loads when --virtual-camera cannot work here."""
    import importlib.util

    if importlib.util.find_spec("pyvirtualcam") is None:
        raise GhostError(f"{VIRTUAL_CAMERA_HELP}: pyvirtualcam is not installed")


class VirtualCamera:
    """pyvirtualcam output (v4l2loopback on Linux, OBS camera on Windows/macOS)."""

    def __init__(self, size: tuple[int, int], fps: float):
        try:
            import pyvirtualcam
        except ImportError:
            raise GhostError(f"{VIRTUAL_CAMERA_HELP}: pyvirtualcam is not installed") from None
        try:
            self.camera = pyvirtualcam.Camera(width=size[0], height=size[1], fps=fps,
                                              fmt=pyvirtualcam.PixelFormat.RGB)
        except Exception as err:      # pyvirtualcam raises RuntimeError when no loopback device exists
            raise GhostError(f"{VIRTUAL_CAMERA_HELP}: {str(err).splitlines()[0] if str(err) else err}") from None

    def send(self, rgb: np.ndarray) -> None:
        self.camera.send(rgb)

    def close(self) -> None:
        self.camera.close()


class Preview:
    """An OpenCV window; 'q' or Esc ends the loop."""

    WINDOW = "ghostrt webcam"

    def __init__(self):
        import cv2

        self.cv2 = cv2
        try:
            cv2.namedWindow(self.WINDOW)
        except cv2.error:
            raise GhostError("--preview: this OpenCV build has no window support (opencv-python-headless); "
                             "use --virtual-camera, or install opencv-python") from None

    def show(self, rgb: np.ndarray) -> bool:
        """Show a frame; False when the user asked to quit."""
        self.cv2.imshow(self.WINDOW, self.cv2.cvtColor(rgb, self.cv2.COLOR_RGB2BGR))
        return (self.cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        self.cv2.destroyWindow(self.WINDOW)


# ----------------------------------------------------------------------------------------------- the loop

def latency_stats(latencies_s: list[float]) -> dict:
    if not latencies_s:
        return {"p50": float("nan"), "p99": float("nan"), "mean": float("nan"), "max": float("nan")}
    ms = np.asarray(latencies_s) * 1000.0
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "mean": float(ms.mean()), "max": float(ms.max())}


def _report_line(frames: int, seconds: float, latencies: list[float], box: LatestFrame) -> str:
    lat = latency_stats(latencies)
    share = box.dropped / box.captured if box.captured else 0.0
    return (f"  webcam  {frames / seconds if seconds > 0 else 0.0:5.1f} frames/s  latency p50 {lat['p50']:6.1f} ms  "
            f"p99 {lat['p99']:6.1f} ms  dropped {box.dropped}/{box.captured} ({share:.0%})")


def run_webcam(source, process_frame, frames: int | None = None, virtual_camera: bool = False,
               preview: bool = False, log=None, visible_mark: bool = True,
               watermark_every: int | None = WATERMARK_EVERY, on_output=None) -> dict:
    """Process the newest camera frame, one at a time, until `frames` were output, the source ended, the
    preview was closed or Ctrl-C (which ends the loop normally: a webcam has no other end).

    Every output frame shows the visible 'AI-altered · ghostrt' label unless `visible_mark` is False, and
    one frame in `watermark_every` carries the invisible watermark (None or 0: none). `on_output(rgb)` sees
    each output frame as the sinks do."""
    at_least_one("--frames", frames)
    log = log or sys.stderr
    camera = open_source(source)
    sinks = []
    stop = threading.Event()
    box = LatestFrame()
    capture = threading.Thread(target=_capture, args=(camera, box, stop), name="ghostrt-capture", daemon=True)
    latencies: list[float] = []
    window: list[float] = []
    done = 0
    shown = None
    started = time.perf_counter()
    try:
        if virtual_camera:
            sinks.append(VirtualCamera(camera.size, camera.fps))
        shown = Preview() if preview else None
        capture.start()
        window_start = time.perf_counter()
        window_frames = 0
        while frames is None or done < frames:
            item = box.take(TAKE_TIMEOUT_SECONDS)
            if item is None:
                if box.error is not None:
                    raise box.error
                if box.ended:
                    break
                raise GhostError(f"{camera.name}: no frame for {TAKE_TIMEOUT_SECONDS:.0f} s (camera stalled)")
            rgb, captured_at = item
            out = process_frame(rgb)
            if watermark_every and done % watermark_every == 0:
                out = watermark.embed(out)
            if visible_mark:
                out = mark.apply(out, inplace=not (out is rgb))
            if on_output is not None:
                on_output(out)
            for sink in sinks:
                sink.send(out)
            keep_going = shown.show(out) if shown is not None else True
            latency = time.perf_counter() - captured_at
            latencies.append(latency)
            window.append(latency)
            done += 1
            window_frames += 1
            now = time.perf_counter()
            if now - window_start >= REPORT_SECONDS:
                print(_report_line(window_frames, now - window_start, window, box), file=log, flush=True)
                window, window_frames, window_start = [], 0, now
            if not keep_going:
                break
    except KeyboardInterrupt:
        print("  webcam  stopped (Ctrl-C)", file=log)
    finally:
        stop.set()
        capture.join(timeout=5) if capture.is_alive() else None
        camera.close()
        for sink in sinks + ([shown] if shown is not None else []):
            sink.close()
    seconds = time.perf_counter() - started
    summary = {"source": camera.name, "frames": done, "captured": box.captured, "dropped": box.dropped,
               "seconds": seconds, "fps": done / seconds if seconds > 0 else 0.0,
               "source_fps": camera.fps, "latency_ms": latency_stats(latencies),
               "visible_mark": bool(visible_mark), "watermark_every": watermark_every or 0}
    print(_report_line(done, seconds, latencies, box).replace("webcam ", "total  "), file=log, flush=True)
    return summary
