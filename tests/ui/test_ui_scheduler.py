"""The live stream scheduler with a fake swapper (no nets): cross-stream batching within the deadline, stale
frames dropped per stream, separate per-stream state freed on close, a slow reader not slowing the others."""

import threading
import time

import numpy as np
import pytest

from ghostrt.ui.runner import LiveConfig, SwapperRunner, draw_mark
from ghostrt.ui.scheduler import StreamScheduler


class FakeStream:
    def __init__(self, owner, who):
        self.owner, self.who, self.seen, self.closed = owner, who, 0, False

    def process_batch(self, frames):
        self.owner.calls.append(len(frames))
        time.sleep(self.owner.cost(len(frames)))
        self.seen += len(frames)
        return [f + self.who for f in frames]          # each stream's own identity in its pixels

    def close(self):
        self.closed = True


class FakeResult:
    def __init__(self, image):
        self.image, self.swapped = image, [object()]


class FakeSwapper:
    """stream()/swap_batch() with a cost of fixed + per-frame seconds, as a GPU batch costs."""

    def __init__(self, fixed=0.010, per_frame=0.001):
        self.fixed, self.per_frame = fixed, per_frame
        self.calls, self.streams = [], []

    def cost(self, n):
        return self.fixed + self.per_frame * n

    def stream(self, who, **kw):
        s = FakeStream(self, who)
        self.streams.append(s)
        return s

    def swap_batch(self, frames, who, **kw):
        self.calls.append(len(frames))
        time.sleep(self.cost(len(frames)))
        return [FakeResult(f + who) for f in frames]


def frame(v=0):
    return np.full((24, 32, 3), v, np.uint8)


def feed(sched, sids, seconds, fps=60.0, stop=None):
    """Submit frames to every stream at fps for seconds (bounded)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and not (stop and stop.is_set()):
        for sid in sids:
            sched.submit(sid, frame(0))
        time.sleep(1.0 / fps)


def test_batches_across_streams_sharing_an_identity():
    sw = FakeSwapper()
    with StreamScheduler(SwapperRunner(sw, mark=False), deadline=0.005) as sched:
        streams = [sched.open(f"s{i}", LiveConfig(who=np.uint8(10), key="same")) for i in range(4)]
        feed(sched, [s.sid for s in streams], 0.6)
        stats = sched.stats()["streams"]
        outs = [s.wait_output(0, 1.0) for s in streams]
    assert max(sw.calls) >= 2, f"never batched two streams: {sw.calls}"
    assert all(out is not None and out.frame[0, 0, 0] == 10 for out in outs)
    for sid in ("s0", "s1", "s2", "s3"):
        assert stats[sid]["frames_out"] > 5 and stats[sid]["fps"] > 5
        assert stats[sid]["p50_ms"] is not None and stats[sid]["p99_ms"] >= stats[sid]["p50_ms"]


def test_different_identities_never_mix():
    sw = FakeSwapper()
    with StreamScheduler(SwapperRunner(sw, mark=False), deadline=0.005) as sched:
        a = sched.open("a", LiveConfig(who=np.uint8(7), key="a"))
        b = sched.open("b", LiveConfig(who=np.uint8(9), key="b"))
        feed(sched, ["a", "b"], 0.3)
        oa, ob = a.wait_output(0, 1.0), b.wait_output(0, 1.0)
    assert oa.frame[0, 0, 0] == 7 and ob.frame[0, 0, 0] == 9


def test_without_batching_each_stream_runs_alone():
    sw = FakeSwapper()
    with StreamScheduler(SwapperRunner(sw, mark=False), batching=False) as sched:
        for i in range(3):
            sched.open(f"s{i}", LiveConfig(who=np.uint8(1), key="same"))
        feed(sched, ["s0", "s1", "s2"], 0.3)
    assert sw.calls and max(sw.calls) == 1


def test_stale_frames_are_dropped_not_queued():
    sw = FakeSwapper(fixed=0.05)                      # 20 fps at most; feed at 200 fps
    with StreamScheduler(SwapperRunner(sw, mark=False)) as sched:
        s = sched.open("s", LiveConfig(who=np.uint8(1)))
        feed(sched, ["s"], 0.5, fps=200)
        time.sleep(0.12)
        st = sched.stats()["streams"]["s"]
    assert st["dropped"] > st["frames_out"]
    assert st["p99_ms"] < 200, st                    # latency stays about one swap, not a growing queue


def test_too_old_frame_is_dropped():
    sw = FakeSwapper()
    with StreamScheduler(SwapperRunner(sw, mark=False), max_age=0.1) as sched:
        s = sched.open("s", LiveConfig(who=np.uint8(1)))
        sched.submit("s", frame(), captured_at=time.perf_counter() - 1.0)
        assert s.wait_output(0, 0.3) is None
        assert sched.stats()["streams"]["s"]["dropped"] == 1


def test_close_frees_state_and_others_go_on():
    sw = FakeSwapper()
    with StreamScheduler(SwapperRunner(sw, mark=False)) as sched:
        a = sched.open("a", LiveConfig(who=np.uint8(1)))
        b = sched.open("b", LiveConfig(who=np.uint8(2)))
        feed(sched, ["a", "b"], 0.2)
        sched.close("a")
        assert a.state is None and sw.streams[0].closed and "a" not in sched.stats()["streams"]
        assert sched.submit("a", frame()) is False
        before = b.frames_out
        feed(sched, ["b"], 0.3)
        assert b.frames_out > before + 5


def test_slow_reader_does_not_slow_others():
    sw = FakeSwapper()
    blocked = threading.Event()

    def slow_callback(_out):      # a client that never keeps up: its callback is the only thing it owns
        blocked.set()
        raise RuntimeError("client gone")

    with StreamScheduler(SwapperRunner(sw, mark=False)) as sched:
        sched.open("slow", LiveConfig(who=np.uint8(1)), on_output=slow_callback)
        fast = sched.open("fast", LiveConfig(who=np.uint8(2)))
        feed(sched, ["slow", "fast"], 0.5)
        st = sched.stats()["streams"]
    assert blocked.is_set()
    assert st["fast"]["fps"] > 20 and st["fast"]["errors"] == 0
    assert st["slow"]["frames_out"] > 5          # "slow" never read its outputs; they were just replaced


def test_a_failing_batch_reports_and_the_worker_lives():
    sw = FakeSwapper()
    runner = SwapperRunner(sw, mark=False)
    real_run = runner.run
    fail = {"n": 2}

    def flaky(items):
        if fail["n"]:
            fail["n"] -= 1
            raise ValueError("bad frame")
        return real_run(items)

    runner.run = flaky
    with StreamScheduler(runner) as sched:
        s = sched.open("s", LiveConfig(who=np.uint8(1)))
        feed(sched, ["s"], 0.3)
        st = sched.stats()["streams"]["s"]
    assert st["errors"] == 2 and "bad frame" in st["last_error"] and st["frames_out"] > 3


def test_deadline_is_bounded():
    with pytest.raises(ValueError):
        StreamScheduler(SwapperRunner(FakeSwapper()), deadline=0.02)


def test_mark_is_drawn_on_a_copy():
    img = np.full((120, 200, 3), 128, np.uint8)
    marked = draw_mark(img)
    assert (img == 128).all() and marked.shape == img.shape
    band = marked[-30:, :100]
    assert band.max() >= 240 and band.min() < 60
