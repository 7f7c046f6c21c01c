"""VideoSwapper's overlap (runtime/video_swapper.py): the front half of batch k+1 (detect, track, align, embed,
match) in a worker thread while batch k is swapped. The output must be exactly the serial output, errors in
either half must surface as themselves without a hang, and flush must still emit every frame."""

import threading

import numpy as np
import pytest

from ghostrt.runtime.swap import video_swapper
from ghostrt.runtime.loops.video_loop import swap_video
from ghostrt.runtime.nets.generator import Generator
from ghostrt.runtime.swap.video_swapper import VideoSwapper
from test_swap_image import onnx_files, executors  # noqa: F401  (fixtures)
from test_video_io import decode_all, make_clip
from test_video_swapper import (BASE_KPS, ScriptedDetector, frame_number, grace, jittered_track, moving,  # noqa: F401
                                numbered_frames, real_swapper_nets, run_stream, scripted_swapper, two_faces,
                                write_face_clip)

# ------------------------------------------------------------------------------------------ overlap

def run_in_thread(call, seconds: float = 120.0) -> dict:
    """call() in a thread: {"value": …} or {"error": …}; fails the test if it has not finished in time."""
    result = {}

    def target():
        try:
            result["value"] = call()
        except BaseException as err:      # noqa: BLE001  (the test inspects whatever came out)
            result["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: a hang"
    return result


def test_overlap_and_serial_give_identical_frames(executors):
    """Tracks born, lost and jumping, detection every 2nd frame, target embeddings: the same pixels either way."""
    track = jittered_track(24)
    script = {i: [k] for i, k in enumerate(track) if k is not None}
    runs = {}
    for overlap in (False, True):
        swapper = scripted_swapper(executors, script, batch=3, detect_every=2, overlap=overlap)
        swapper.targets, swapper.similarity = np.ones((1, 512), np.float32), -1.0
        runs[overlap] = (run_stream(swapper, numbered_frames(24), 3), swapper)
    (serial, a), (overlapped, b) = runs[False], runs[True]
    assert len(serial) == len(overlapped) == 24
    for x, y in zip(serial, overlapped):
        np.testing.assert_array_equal(x, y)
    # frame 9 (no face) is not due for detection, so it carries frame 8's face: all 24 are swapped
    assert (a.faces_swapped, a.frames_swapped) == (b.faces_swapped, b.frames_swapped) == (24, 24)
    assert a.nets.detector.calls == b.nets.detector.calls
    assert a.tracker.next_id == b.tracker.next_id and set(a.mask_params) == set(b.mask_params)


def test_overlap_and_serial_give_identical_video_files(tmp_path, executors, two_faces):
    frame, _ = two_faces
    clip = write_face_clip(tmp_path / "in.mp4", moving(frame[:, :320], 9))
    decoded = {}
    for overlap in (False, True):
        out = tmp_path / f"out-{overlap}.mkv"
        process = VideoSwapper(real_swapper_nets(executors), np.ones((1, 512), np.float32), batch=4,
                               overlap=overlap)
        summary = swap_video(clip, out, process, batch=4, progress=False)
        process.close()
        assert summary["frames"] == 9 and process.frames_swapped == 9
        decoded[overlap] = decode_all(out)
    assert [pts for pts, _ in decoded[False]] == [pts for pts, _ in decoded[True]]
    for (_, x), (_, y) in zip(decoded[False], decoded[True]):
        np.testing.assert_array_equal(x, y)


class FailingDetector(ScriptedDetector):
    """A scripted detector that raises on frame `fail_at`, noting the thread it raised in."""

    def __init__(self, script, fail_at: int):
        super().__init__(script)
        self.fail_at, self.error, self.thread = fail_at, None, None

    def detect(self, frames):
        if self.fail_at in [frame_number(f) for f in frames]:
            self.error = RuntimeError(f"detector failed on frame {self.fail_at}")
            self.thread = threading.current_thread().name
            raise self.error
        return super().detect(frames)


def test_an_error_in_the_worker_surfaces_as_itself(executors):
    swapper = scripted_swapper(executors, {i: [BASE_KPS] for i in range(12)}, batch=3, overlap=True)
    detector = swapper.nets.detector = FailingDetector({i: [BASE_KPS] for i in range(12)}, fail_at=7)
    result = run_in_thread(lambda: run_stream(swapper, numbered_frames(12), 3))
    assert result.get("error") is detector.error is not None
    assert detector.thread.startswith("ghostrt-front")           # raised in the worker, re-raised here
    swapper.close()


def test_an_error_in_the_back_half_waits_for_the_worker_and_surfaces(executors):
    swapper = scripted_swapper(executors, {i: [BASE_KPS] for i in range(12)}, batch=3, overlap=True)
    inner, error = swapper.nets.generator.executor, RuntimeError("generator failed")

    class FailingGenerator:
        input_names, output_names = inner.input_names, inner.output_names

        def run(self, feeds):
            raise error

    swapper.nets.generator = Generator(FailingGenerator())
    result = run_in_thread(lambda: run_stream(swapper, numbered_frames(12), 3))
    assert result.get("error") is error
    assert swapper.frames_seen == 6               # the front half of the batch in flight finished, no further
    swapper.close()


def test_a_worker_error_stops_the_video_loop(tmp_path, executors):
    clip = make_clip(tmp_path / "in.mp4", frames=10, audio=False)
    error = RuntimeError("detector failed")

    class FailsOnSecondCall:
        calls, max_batch = 0, None

        def detect(self, frames):
            self.calls += 1
            if self.calls == 2:
                raise error
            return [[] for _ in frames]

    swapper = scripted_swapper(executors, {}, batch=3, overlap=True)
    swapper.nets.detector = FailsOnSecondCall()
    result = run_in_thread(lambda: swap_video(clip, tmp_path / "out.mp4", swapper, batch=3, progress=False))
    assert result.get("error") is error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    swapper.close()


@pytest.mark.parametrize("n, batch, smooth", [(1, 4, True), (2, 1, True), (5, 2, True), (8, 4, True),
                                              (7, 3, False), (1, 1, False)])
def test_flush_emits_every_frame_with_overlap(executors, n, batch, smooth):
    threads_before = set(threading.enumerate())
    swapper = scripted_swapper(executors, {i: [BASE_KPS + [i, 0]] for i in range(n)}, batch=batch,
                               smoothing=smooth, overlap=True)
    out = run_stream(swapper, numbered_frames(n), batch)
    assert [frame_number(f) for f in out] == list(range(n))
    assert swapper.frames_swapped == n and swapper.flush() == []
    assert swapper.due is None and not swapper.pending
    swapper.close()
    assert not [t for t in set(threading.enumerate()) - threads_before if t.name.startswith("ghostrt-front")]


@pytest.mark.parametrize("default", [False, True])
def test_overlap_default_follows_the_lookahead(executors, monkeypatch, default):
    """Video (smoothing) takes the measured default; the webcam's one-in-one-out swapper never overlaps unless
    asked, whatever the default."""
    monkeypatch.setattr(video_swapper, "OVERLAP_BY_DEFAULT", default)
    assert scripted_swapper(executors, {}).overlap is default
    assert scripted_swapper(executors, {}, smoothing=False).overlap is False
    assert scripted_swapper(executors, {}, smoothing=False, overlap=True).overlap is True
    assert scripted_swapper(executors, {}, overlap=False).overlap is False
