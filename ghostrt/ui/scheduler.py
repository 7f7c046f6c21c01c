"""One scheduler for every live stream, so many browser tabs share one loaded Swapper and one device: frames
from all streams are batched together within a small deadline, and latency wins over completeness.

Rules (the webcam loop's, for many streams at once):
- Each stream has a one-frame mailbox: a new frame replaces the one not yet taken (counted as dropped), and a
  frame older than `max_age` when its turn comes is dropped too. Nothing queues behind a slow swap.
- The worker takes the first waiting frame, then waits at most `deadline` (<= 5 ms) for the other open
  streams, and runs everything it holds (one frame per stream, at most `max_batch`) in one runner call.
  With `batching=False` it runs each stream's frame in its own call (the baseline `bench --streams` compares).
- Each stream keeps its own state (the runner's `open()` result: its `sw.stream(...)`, its identity) and its
  own output slot: the worker only writes the newest output into it, so a client that reads slowly (or never)
  cannot hold the worker or the other streams back. `close()` frees the state.
- Per stream: frames in/out/dropped, faces swapped (what the runner reports: the page can tell a swap from
  a frame passed through), fps over the last seconds, capture->output latency p50/p99.
"""

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

MAX_DEADLINE = 0.005
FPS_WINDOW_SECONDS = 2.0
LATENCY_SAMPLES = 600


@dataclass
class Output:
    """The newest processed frame of one stream."""

    seq: int
    frame: np.ndarray
    captured_at: float
    latency: float
    meta: dict = field(default_factory=dict)


class Stream:
    """One live session: its mailbox, its runner state, its newest output and its numbers."""

    def __init__(self, sid: str, state, on_output=None):
        self.sid = sid
        self.state = state
        self.on_output = on_output       # called from the worker thread; must not block (e.g. call_soon_threadsafe)
        self.pending: tuple[np.ndarray, float, dict] | None = None
        self.output: Output | None = None
        self.cond = threading.Condition()
        self.frames_in = self.frames_out = self.dropped = self.errors = 0
        self.faces_swapped = 0
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.out_times: deque[float] = deque()
        self.closed = False
        self.last_error: str | None = None

    def wait_output(self, after_seq: int = 0, timeout: float = 1.0) -> Output | None:
        """The newest output newer than after_seq, waiting up to timeout (None if none came)."""
        end = time.perf_counter() + timeout
        with self.cond:
            while (self.output is None or self.output.seq <= after_seq) and not self.closed:
                left = end - time.perf_counter()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.output if self.output is not None and self.output.seq > after_seq else None

    def stats(self, now: float) -> dict:
        recent = [t for t in self.out_times if now - t <= FPS_WINDOW_SECONDS]
        span = (recent[-1] - recent[0]) if len(recent) > 1 else 0.0
        lat = np.asarray(self.latencies, dtype=np.float64) * 1000.0
        return {"frames_in": self.frames_in, "frames_out": self.frames_out, "dropped": self.dropped,
                "faces_swapped": self.faces_swapped,
                "errors": self.errors, "fps": round((len(recent) - 1) / span, 2) if span > 0 else 0.0,
                "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
                "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
                "last_error": self.last_error}


class StreamScheduler:
    """runner: open(config) -> state; run([(state, frame), ...]) -> [(frame, meta), ...] in order; close(state).
    Used from any thread; start() runs the one worker thread, stop() ends it."""

    def __init__(self, runner, max_batch: int = 8, deadline: float = 0.004, batching: bool = True,
                 max_age: float = 0.5):
        if not 0 <= deadline <= MAX_DEADLINE:
            raise ValueError(f"deadline {deadline}: must lie in [0, {MAX_DEADLINE}] seconds")
        self.runner, self.max_batch, self.deadline = runner, max(1, int(max_batch)), deadline
        self.batching, self.max_age = batching, max_age
        self.streams: dict[str, Stream] = {}
        self.lock = threading.Condition()
        self.batch_sizes: deque[int] = deque(maxlen=1000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------------------- lifecycle
    def start(self) -> "StreamScheduler":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._work, name="ghostrt-stream-scheduler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self.lock:
            self.lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        for sid in list(self.streams):
            self.close(sid)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------------------------------- streams
    def open(self, sid: str, config=None, on_output=None) -> Stream:
        state = self.runner.open(config)
        stream = Stream(sid, state, on_output)
        with self.lock:
            if sid in self.streams:
                self.runner.close(state)
                raise ValueError(f"stream {sid} is already open")
            self.streams[sid] = stream
        return stream

    def close(self, sid: str) -> None:
        with self.lock:
            stream = self.streams.pop(sid, None)
        if stream is None:
            return
        with stream.cond:
            stream.closed = True
            stream.pending = None
            stream.cond.notify_all()
        self.runner.close(stream.state)
        stream.state = None

    def submit(self, sid: str, frame: np.ndarray, captured_at: float | None = None, meta: dict | None = None) -> bool:
        """Put a frame in the stream's mailbox (replacing an untaken one). False if the stream is not open."""
        captured_at = time.perf_counter() if captured_at is None else captured_at
        with self.lock:
            stream = self.streams.get(sid)
            if stream is None:
                return False
            stream.frames_in += 1
            if stream.pending is not None:
                stream.dropped += 1
            stream.pending = (frame, captured_at, meta or {})
            self.lock.notify_all()
        return True

    def stats(self) -> dict:
        now = time.perf_counter()
        with self.lock:
            streams = dict(self.streams)
            sizes = list(self.batch_sizes)
        return {"streams": {sid: s.stats(now) for sid, s in streams.items()},
                "batching": self.batching, "deadline_ms": self.deadline * 1000.0,
                "mean_batch": round(float(np.mean(sizes)), 2) if sizes else None}

    # -------------------------------------------------------------------------------------------- worker
    def _take(self) -> list[tuple[Stream, tuple]]:
        """Wait for a first frame, then up to `deadline` for the other streams; take one frame per stream."""
        with self.lock:
            while not self._stop.is_set() and not any(s.pending for s in self.streams.values()):
                self.lock.wait(0.1)
            if self._stop.is_set():
                return []
            end = time.perf_counter() + self.deadline
            while True:
                waiting = sum(1 for s in self.streams.values() if s.pending)
                left = end - time.perf_counter()
                if waiting >= min(len(self.streams), self.max_batch) or left <= 0 or self._stop.is_set():
                    break
                self.lock.wait(left)
            now = time.perf_counter()
            taken = []
            for stream in sorted(self.streams.values(), key=lambda s: s.pending[1] if s.pending else now):
                if stream.pending is None:
                    continue
                item, stream.pending = stream.pending, None
                if now - item[1] > self.max_age:      # stale: latency first
                    stream.dropped += 1
                    continue
                taken.append((stream, item))
                if len(taken) == self.max_batch:
                    break
            return taken

    def _work(self) -> None:
        while not self._stop.is_set():
            taken = self._take()
            if not taken:
                continue
            groups = [taken] if self.batching else [[t] for t in taken]
            for group in groups:
                self._run(group)

    def _run(self, group) -> None:
        self.batch_sizes.append(len(group))
        try:
            outs = self.runner.run([(stream.state, item[0]) for stream, item in group])
        except Exception as err:                  # one bad frame must not end every stream's worker
            for stream, _ in group:
                stream.errors += 1
                stream.last_error = f"{type(err).__name__}: {err}"
            return
        done = time.perf_counter()
        for (stream, (_, captured_at, meta)), (frame, out_meta) in zip(group, outs):
            with stream.cond:
                if stream.closed:
                    continue
                seq = stream.output.seq + 1 if stream.output else 1
                stream.output = Output(seq, frame, captured_at, done - captured_at, {**meta, **(out_meta or {})})
                stream.frames_out += 1
                stream.faces_swapped += int((out_meta or {}).get("swapped", 0) or 0)
                stream.latencies.append(done - captured_at)
                stream.out_times.append(done)
                while stream.out_times and done - stream.out_times[0] > FPS_WINDOW_SECONDS:
                    stream.out_times.popleft()
                stream.cond.notify_all()
            if stream.on_output is not None:
                try:
                    stream.on_output(stream.output)
                except Exception:                 # a broken client callback only hurts its own stream
                    stream.errors += 1
