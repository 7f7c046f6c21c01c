"""The video loop: decode → process (batched) → encode as three overlapping stages.

Decoding and encoding run in their own threads (FFmpeg releases the GIL while it works), processing runs in
the calling thread (where the GPU context and Ctrl-C live). Bounded queues between the stages keep at most a
few batches of frames in memory, whatever the video's length, and their peak sizes show which stage is the
bottleneck: a full decoded queue means processing is slow, a full processed queue means encoding is.

The loop knows nothing about faces: `process_batch(frames) -> frames` takes and returns lists of upright RGB
uint8 H×W×3 frames in order, so the real swapper, an identity or a test's box-painter plug in alike.
A process_batch that needs lookahead (keypoint smoothing over the next frames) has a `flush()` attribute: it
may then hand back fewer frames than it was given, always the oldest ones it still holds, in order, and the
loop calls flush() once at the end of the stream for the rest.
"""

import collections
import queue
import sys
import threading
import time

from ghostrt.errors import at_least_one
from ghostrt.runtime.io import video_io, video_writer

QUEUE_BATCHES = 2              # batches each queue may hold
PROGRESS_TTY_SECONDS = 0.5     # progress line refresh on a terminal
PROGRESS_LOG_SECONDS = 5.0     # ... and when stderr is a log file
POLL_SECONDS = 0.1             # how often a blocked stage looks whether it should stop
_DONE = object()               # end of stream marker


class _Failed:
    """An exception raised in a stage thread, handed to the calling thread to re-raise."""

    def __init__(self, error: BaseException):
        self.error = error


class _Stage:
    """One stage thread's books: busy seconds and the first error it hit."""

    def __init__(self):
        self.seconds = 0.0
        self.error: BaseException | None = None


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Blocking put that gives up when the loop is stopping (so no thread hangs on a full queue)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event):
    while not stop.is_set():
        try:
            return q.get(timeout=POLL_SECONDS)
        except queue.Empty:
            continue
    return _DONE


class _Peak:
    """Largest size a queue reached, sampled after every put."""

    def __init__(self, q: queue.Queue):
        self.q = q
        self.value = 0

    def sample(self) -> None:
        self.value = max(self.value, self.q.qsize())


def _decode(info, out_q: queue.Queue, peak: _Peak, stop: threading.Event, stage: _Stage) -> None:
    frames = video_io.read_frames(info)
    try:
        while not stop.is_set():
            start = time.perf_counter()
            frame = next(frames, None)
            stage.seconds += time.perf_counter() - start
            if frame is None:
                break
            if not _put(out_q, frame, stop):
                return
            peak.sample()
        _put(out_q, _DONE, stop)
    except BaseException as err:          # noqa: BLE001 - handed to the calling thread
        stage.error = err
        _put(out_q, _Failed(err), stop)
    finally:
        frames.close()


def _encode(writer, in_q: queue.Queue, stop: threading.Event, stage: _Stage, counter: list[int]) -> None:
    try:
        while True:
            item = _get(in_q, stop)
            if item is _DONE:
                return
            start = time.perf_counter()
            for pts, rgb in item:
                writer.write(rgb, pts)
                counter[0] += 1
            stage.seconds += time.perf_counter() - start
    except BaseException as err:          # noqa: BLE001
        stage.error = err
        stop.set()


class Progress:
    """One throttled status line on stderr: frames done, frames/s, ETA."""

    def __init__(self, total: int, exact: bool, enabled: bool, stream=None):
        self.total, self.exact, self.enabled = total, exact, enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.last = 0.0
        self.shown = False

    def update(self, done: int, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not final and now - self.last < (PROGRESS_TTY_SECONDS if self.tty else PROGRESS_LOG_SECONDS):
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        rate = done / elapsed
        total = max(self.total, done)
        eta = (total - done) / rate if rate > 0 else float("nan")
        about = "" if self.exact else "~"
        line = (f"  video  {done}/{about}{total} frames  {rate:6.1f} frames/s  "
                f"elapsed {_clock(elapsed)}  ETA {_clock(eta) if not final else '0:00'}")
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()
        self.shown = True

    def end(self) -> None:
        if self.enabled and self.shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    if seconds != seconds:     # NaN: no rate yet
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def _check_batch(frames_in: list, frames_out) -> None:
    """process_batch must hand back one frame per frame, same shape, uint8 (a programming error otherwise)."""
    if len(frames_out) != len(frames_in):
        raise ValueError(f"process_batch returned {len(frames_out)} frames for {len(frames_in)}")
    for a, b in zip(frames_in, frames_out):
        if b.shape != a.shape or b.dtype != a.dtype:
            raise ValueError(f"process_batch returned a {b.shape} {b.dtype} frame for a {a.shape} {a.dtype} one")


def swap_video(input, output, process_batch, batch: int = 8, codec: str = "libx264", crf: int | None = 18,
               label: dict | None = None, progress: bool = True, log=None, provenance=None) -> dict:
    """Run `process_batch` over every frame of `input` and write `output` (atomically). Returns the summary.

    Every check that can fail on the user's files (input probe, output name, codec, container) runs before the
    first frame is decoded. A KeyboardInterrupt stops all stages, removes the partial output and propagates."""
    at_least_one("--batch", batch)
    log = log or sys.stderr
    info = video_io.probe(input)
    plan = video_writer.plan_output(output, info, codec)
    if provenance is not None:
        from ghostrt.runtime.io import c2pa_manifest
        c2pa_manifest.sign_mode(plan.path)         # a container that cannot be signed fails before any frame
    for warning in plan.warnings:
        print(f"ghostrt: warning: {warning}", file=log)

    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES * batch)
    processed: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
    peaks = {"decoded": _Peak(decoded), "processed": _Peak(processed)}
    decode_stage, encode_stage = _Stage(), _Stage()
    written = [0]
    bar = Progress(info.frames, info.frames_exact, progress, log)
    started = time.perf_counter()
    threads = []
    try:
        with video_writer.VideoWriter(output, info, codec=codec, crf=crf, label=label, plan=plan,
                                      provenance=provenance) as writer:
            threads = [
                threading.Thread(target=_decode, args=(info, decoded, peaks["decoded"], stop, decode_stage),
                                 name="ghostrt-decode", daemon=True),
                threading.Thread(target=_encode, args=(writer, processed, stop, encode_stage, written),
                                 name="ghostrt-encode", daemon=True),
            ]
            for t in threads:
                t.start()
            try:
                process_seconds = _process_all(decoded, processed, peaks, process_batch, batch, stop,
                                               encode_stage, bar, written)
                threads[1].join()
                if encode_stage.error is not None:
                    raise encode_stage.error
            except BaseException:
                stop.set()                 # stop both threads before the writer deletes its file
                for t in threads:
                    t.join(timeout=10)
                raise
            encode_start = time.perf_counter()
        encode_stage.seconds += time.perf_counter() - encode_start     # flush + trailer + rename
    except KeyboardInterrupt:
        bar.end()
        print(f"ghostrt: interrupted after {written[0]} frames; {output} was not written (no partial output)",
              file=log)
        raise
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    bar.update(written[0], final=True)
    bar.end()
    warnings = list(plan.warnings)
    if info.frames_exact and written[0] != info.frames:
        warnings.append(f"decoded {written[0]} of the {info.frames} frames {info.path.name} lists "
                        "(an edit list trims it, or the file is damaged)")
    seconds = time.perf_counter() - started
    return {
        "input": str(info.path), "output": str(plan.path), "frames": written[0],
        "seconds": seconds, "fps": written[0] / seconds if seconds > 0 else 0.0,
        "stages": {"decode": decode_stage.seconds, "process": process_seconds, "encode": encode_stage.seconds},
        "peak_queue": {name: p.value for name, p in peaks.items()},
        "queue_limits": {"decoded": decoded.maxsize, "processed": processed.maxsize},
        "batch": batch, "codec": codec, "pix_fmt": plan.pix_fmt, "size": (info.width, info.height),
        "input_fps": float(info.fps), "variable_frame_rate": info.variable_frame_rate, "rotation": info.rotation,
        "kept_streams": [f"{s.type}:{s.codec}" for s in plan.passthrough],
        "notes": info.notes + plan.notes, "warnings": warnings,
    }


def _process_all(decoded, processed, peaks, process_batch, batch, stop, encode_stage, bar, written) -> float:
    """The calling thread's stage: batches in, processed batches out. Returns its busy seconds."""
    seconds = 0.0
    finished = False
    flush = getattr(process_batch, "flush", None)
    held: collections.deque = collections.deque()     # decoded frames whose output is still to come
    while not finished:
        frames, finished = _next_batch(decoded, batch, stop)
        if encode_stage.error is not None:
            raise encode_stage.error
        if frames:
            start = time.perf_counter()
            held.extend(frames)
            out = process_batch([f.rgb for f in frames])
            ready = _take_ready(held, frames, out, flush is not None)
            seconds += time.perf_counter() - start
            if ready and not _put(processed, ready, stop):
                break
        if finished and flush is not None:        # the lookahead's last frames
            start = time.perf_counter()
            ready = _take_ready(held, list(held), flush(), False)
            seconds += time.perf_counter() - start
            if ready and not _put(processed, ready, stop):
                break
        if not frames and not held:
            break
        peaks["processed"].sample()
        bar.update(written[0])
    _put(processed, _DONE, stop)
    return seconds


def _take_ready(held: collections.deque, given: list, out, may_hold: bool) -> list:
    """Pair process_batch's outputs with the oldest held frames' times. Without lookahead (no flush()) it
    must answer every frame it was given; with it, any number up to all it holds."""
    if not may_hold or len(out) > len(held):
        _check_batch([f.rgb for f in given], out)
    ready = [held.popleft() for _ in range(len(out))]
    _check_batch([f.rgb for f in ready], out)
    return [(f.pts, o) for f, o in zip(ready, out)]


def _next_batch(decoded: queue.Queue, batch: int, stop: threading.Event):
    """Up to `batch` decoded frames; (frames, True) when the stream has ended."""
    frames = []
    while len(frames) < batch:
        item = _get(decoded, stop)
        if item is _DONE:
            return frames, True
        if isinstance(item, _Failed):
            raise item.error
        frames.append(item)
    return frames, False


def print_summary(summary: dict, stream=None) -> None:
    """The lines `ghostrt swap video` prints at the end."""
    stream = stream or sys.stdout
    w, h = summary["size"]
    stages = "  ".join(f"{name} {sec:.2f} s" for name, sec in summary["stages"].items())
    print(f"ghostrt swap video: {summary['input']} → {summary['output']}", file=stream)
    print(f"  video     {w}×{h} {summary['input_fps']:.3f} frames/s"
          + (" (variable frame rate kept)" if summary["variable_frame_rate"] else "")
          + (f", rotation {summary['rotation']}° kept" if summary["rotation"] else ""), file=stream)
    print(f"  encoded   {summary['codec']} {summary['pix_fmt']}; copied streams: "
          f"{', '.join(summary['kept_streams']) or 'none'}", file=stream)
    for note in summary["notes"]:
        print(f"  note      {note}", file=stream)
    for warning in summary["warnings"]:
        print(f"  WARNING   {warning}", file=stream)
    print(f"  frames    {summary['frames']} in {summary['seconds']:.2f} s = {summary['fps']:.1f} frames/s "
          f"(batch {summary['batch']})", file=stream)
    print(f"  stages    {stages} (busy time; they overlap)", file=stream)
    print(f"  queues    peak decoded {summary['peak_queue']['decoded']}/{summary['queue_limits']['decoded']} "
          f"frames, processed {summary['peak_queue']['processed']}/{summary['queue_limits']['processed']} "
          "batches", file=stream)
