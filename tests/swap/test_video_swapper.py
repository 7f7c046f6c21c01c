"""The batched, tracked, smoothed video swapper (runtime/video_swapper.py) and the loop's flush hook.

The nets are the tiny hand-built ONNX graphs of test_swap_image (generator = colour inversion, landmarks =
a fixed ellipse), so a test takes seconds. Where a test needs exact control of the faces (jitter, jumps,
missing faces, detection counts) a scripted detector stands in for RetinaFace: it reads each frame's number
from pixel (0, 0) and returns the faces the script gives that frame.
"""

import argparse
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import skimage.data

from ghostrt import loading
from ghostrt.cli import main
from ghostrt.runtime.stages import smoothing
from ghostrt.cli import swap as swap_cli
from ghostrt.runtime.nets.detect import make_detector
from ghostrt.runtime.io.image_io import read_image
from ghostrt.runtime.swap.image_swapper import ImageSwapper
from ghostrt.runtime.swap.core import Nets
from ghostrt.runtime.io.provenance_label import make_label
from ghostrt.runtime.types import Face
from ghostrt.runtime.io.video_writer import read_video_label
from ghostrt.runtime.loops.video_loop import swap_video
from ghostrt.runtime.backends.batching import run_chunked
from ghostrt.runtime.nets.landmarks import LandmarkNet
from ghostrt.runtime.stages.tracking import FaceTracker
from ghostrt.runtime.swap.video_swapper import VideoSwapper
from test_swap_image import GRACE, Recording, onnx_files, executors  # noqa: F401  (fixtures)
from test_video_io import decode_all, make_clip

SIZE = 256                       # scripted frames: SIZE×SIZE
# five keypoints of a frontal face near the middle of a scripted frame
BASE_KPS = np.array([[108, 110], [148, 110], [128, 134], [112, 156], [144, 156]], np.float64)


# ------------------------------------------------------------------------------------------ helpers

def box_of(kps: np.ndarray) -> np.ndarray:
    x0, y0 = kps.min(axis=0) - 30
    x1, y1 = kps.max(axis=0) + 30
    return np.array([x0, y0, x1, y1], np.float32)


class ScriptedDetector:
    """detect(frames): the faces `script[frame number]` gives (a list of keypoint arrays); counts calls."""

    def __init__(self, script: dict[int, list[np.ndarray]]):
        self.script = script
        self.calls: list[list[int]] = []
        self.max_batch = None

    def detect(self, frames):
        numbers = [frame_number(f) for f in frames]
        self.calls.append(numbers)
        return [[Face(box_of(k), 0.99, np.asarray(k, np.float32)) for k in self.script.get(n, [])]
                for n in numbers]


def numbered_frames(n: int) -> list[np.ndarray]:
    """n distinct SIZE×SIZE photo frames carrying their number in pixel (0, 0) (red = low byte)."""
    photo = cv2.resize(np.ascontiguousarray(skimage.data.astronaut()), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n):
        f = np.roll(photo, i, axis=1).copy()
        f[0, 0, 0], f[0, 0, 1] = i % 256, i // 256
        frames.append(f)
    return frames


def frame_number(frame: np.ndarray) -> int:
    return int(frame[0, 0, 0]) + 256 * int(frame[0, 0, 1])


def run_stream(swapper, frames, batch):
    """The loop's calling pattern: batches in order, then flush()."""
    out = []
    for start in range(0, len(frames), batch):
        out += swapper.process_batch(frames[start:start + batch])
    return out + swapper.flush()


@pytest.fixture
def aligned_kps(monkeypatch):
    """The keypoints each swapped face is aligned with, in order (one (5, 2) row per face)."""
    rows = []
    real = VideoSwapper._swap

    def spy(self, ready, planned, outputs):
        rows.extend(np.asarray(p.kps, np.float64) for p in planned)
        return real(self, ready, planned, outputs)

    monkeypatch.setattr(VideoSwapper, "_swap", spy)
    return rows


def scripted_swapper(executors, script, **options):
    nets = Nets(detector=ScriptedDetector(script), arcface=executors["arcface"],
                generator=Recording(executors["generator"]), landmarks=executors["landmarks"])
    return VideoSwapper(nets, np.ones((1, 512), np.float32), None, **options)


def real_swapper_nets(executors):
    return Nets(detector=make_detector("retinaface", executors["detector"]), arcface=executors["arcface"],
                generator=Recording(executors["generator"]), landmarks=executors["landmarks"])


@pytest.fixture(params=[False, True], ids=["serial", "overlap"])
def overlap(request):
    """Every streaming test runs with the front half serial and overlapped (worker thread)."""
    return request.param


@pytest.fixture(scope="module")
def grace():
    return read_image(GRACE)[0]


@pytest.fixture(scope="module")
def two_faces(grace):
    """(astronaut | Grace Hopper) side by side at 320 px high, and the column where Grace begins."""
    astro = cv2.resize(np.ascontiguousarray(skimage.data.astronaut()), (320, 320), interpolation=cv2.INTER_AREA)
    right = cv2.resize(grace, (round(grace.shape[1] * 320 / grace.shape[0]), 320), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(np.concatenate([astro, right], axis=1)), astro.shape[1]


def moving(frame: np.ndarray, n: int, step: int = 2) -> list[np.ndarray]:
    """n frames of `frame` shifted right by `step` px per frame (edge columns repeated)."""
    out = []
    for i in range(n):
        shifted = np.empty_like(frame)
        shifted[:, step * i:] = frame[:, :frame.shape[1] - step * i]
        shifted[:, :step * i] = frame[:, :1]
        out.append(shifted)
    return out


# ------------------------------------------------------------------------------------------ streaming

@pytest.mark.parametrize("batch", [1, 3, 5])
@pytest.mark.parametrize("smooth", [True, False])
def test_frame_count_and_order_are_kept(overlap, executors, batch, smooth):
    script = {i: [BASE_KPS + [i, 0]] for i in range(11)}
    swapper = scripted_swapper(executors, script, overlap=overlap, batch=batch, smoothing=smooth)
    frames = numbered_frames(11)
    out = run_stream(swapper, frames, batch)
    assert [frame_number(f) for f in out] == list(range(11))
    assert swapper.frames_swapped == 11
    assert all(not np.array_equal(a, b) for a, b in zip(out, frames))         # every face was swapped


def test_smoothing_holds_back_two_frames_and_flush_releases_them(overlap, executors):
    swapper = scripted_swapper(executors, {i: [BASE_KPS] for i in range(7)}, batch=4, overlap=overlap)
    frames = numbered_frames(7)
    first = swapper.process_batch(frames[:4])
    second = swapper.process_batch(frames[4:])
    last = swapper.flush()
    if overlap:            # the back half runs one call later: each call hands back the previous call's frames
        assert [[frame_number(f) for f in part] for part in (first, second, last)] == [[], [0, 1], [2, 3, 4, 5, 6]]
    else:
        assert [[frame_number(f) for f in part] for part in (first, second, last)] == [[0, 1], [2, 3, 4], [5, 6]]
    assert swapper.flush() == []


def test_face_free_frames_come_back_bit_identical(overlap, executors):
    script = {i: [BASE_KPS + [i, 0]] for i in (0, 1, 2, 5, 6)}          # frames 3, 4 and 7 have no face
    swapper = scripted_swapper(executors, script, overlap=overlap, batch=3)
    frames = numbered_frames(8)
    copies = [f.copy() for f in frames]
    out = run_stream(swapper, frames, 3)
    for i in (3, 4, 7):
        np.testing.assert_array_equal(out[i], copies[i])
    for i in (0, 1, 2, 5, 6):
        assert not np.array_equal(out[i], copies[i])
    for f, c in zip(frames, copies):                                   # inputs are never written to
        np.testing.assert_array_equal(f, c)
    assert swapper.frames_swapped == 5


def test_face_free_real_frames_are_untouched_with_the_real_detector(overlap, executors, two_faces, grace):
    frame, _ = two_faces
    coffee = cv2.resize(np.ascontiguousarray(skimage.data.coffee()), frame.shape[1::-1])
    frames = moving(frame, 3) + [coffee, coffee.copy()] + moving(frame, 2)
    swapper = VideoSwapper(real_swapper_nets(executors), np.ones((1, 512), np.float32), faces="all", batch=3,
                           overlap=overlap)
    out = run_stream(swapper, frames, 3)
    assert len(out) == len(frames)
    np.testing.assert_array_equal(out[3], coffee)
    np.testing.assert_array_equal(out[4], coffee)
    assert all(not np.array_equal(out[i], frames[i]) for i in (0, 1, 2, 5, 6))


# ------------------------------------------------------------------------------------------ detection

@pytest.mark.parametrize("n, k, batch", [(10, 3, 1), (10, 3, 4), (9, 2, 4), (7, 1, 3)])
def test_detect_every_k_runs_the_detector_on_every_kth_frame(overlap, executors, n, k, batch):
    swapper = scripted_swapper(executors, {i: [BASE_KPS] for i in range(n)}, overlap=overlap, batch=batch,
                               detect_every=k, smoothing=False)
    run_stream(swapper, numbered_frames(n), batch)
    calls = swapper.nets.detector.calls
    assert sum(len(c) for c in calls) == -(-n // k)                   # ceil(n / k) frames detected
    assert [i for c in calls for i in c] == list(range(0, n, k))
    assert len(calls) <= -(-n // batch)                               # at most one detector call per batch
    if batch == 1:
        assert len(calls) == -(-n // k)


def test_frames_between_detections_reuse_the_last_keypoints(overlap, executors, aligned_kps):
    script = {i: [BASE_KPS + [3 * i, 0]] for i in range(6)}
    swapper = scripted_swapper(executors, script, overlap=overlap, batch=4, detect_every=3, smoothing=False)
    out = run_stream(swapper, numbered_frames(6), 4)
    assert len(aligned_kps) == 6 and swapper.frames_swapped == 6      # carried frames are swapped too
    for i, row in enumerate(aligned_kps):
        np.testing.assert_allclose(row, script[i - i % 3][0], atol=1e-5)
    assert len(out) == 6


def test_tracker_keeps_ids_of_moving_faces_and_gives_new_faces_new_ids():
    tracker = FaceTracker()
    a, b = BASE_KPS, BASE_KPS + [150, 0]
    faces, born = tracker.update([Face(box_of(a), 0.9, a), Face(box_of(b), 0.9, b)])
    assert born == [0, 1]
    moved_b, moved_a = b + [4, 2], a + [-3, 1]        # both moved, and detected in the other order
    faces, born = tracker.update([Face(box_of(moved_b), 0.9, moved_b), Face(box_of(moved_a), 0.9, moved_a)])
    assert born == [] and list(faces) == [1, 0]
    np.testing.assert_allclose(faces[0].kps, moved_a)
    far = BASE_KPS + [0, 400]
    faces, born = tracker.update([Face(box_of(far), 0.9, far)])
    assert born == [2] and list(faces) == [2]          # a face elsewhere is new; the old tracks ended
    assert list(tracker.carry()) == [2]


# ------------------------------------------------------------------------------------------ smoothing

def jittered_track(n: int, seed: int = 0) -> list[np.ndarray | None]:
    """A face drifting 1 px/frame with ±1 px keypoint jitter, missing in frame 9, jumping 12 px at 15."""
    rng = np.random.default_rng(seed)
    track = []
    for i in range(n):
        kps = BASE_KPS + [i, 0] + rng.uniform(-1.0, 1.0, (5, 2)) + ([12, 0] if i >= 15 else [0, 0])
        track.append(None if i == 9 else kps)
    return track


def second_difference(rows: np.ndarray) -> float:
    return float(np.abs(rows[2:] - 2 * rows[1:-1] + rows[:-2]).mean())


@pytest.mark.parametrize("batch", [1, 4, 5])
def test_streaming_smoothing_equals_whole_track_smoothing(overlap, executors, aligned_kps, batch):
    """Holding back 2 frames across batches must give what GHOST's smoothing of the whole track gives."""
    track = jittered_track(24)
    script = {i: [k] for i, k in enumerate(track) if k is not None}
    swapper = scripted_swapper(executors, script, overlap=overlap, batch=batch)
    out = run_stream(swapper, numbered_frames(24), batch)
    assert [frame_number(f) for f in out] == list(range(24))
    expected = [k for k in smoothing.smooth_tracks(track) if k is not None]
    assert len(aligned_kps) == len(expected) == 23
    np.testing.assert_allclose(np.stack(aligned_kps), np.stack(expected), atol=1e-4)


def test_smoothing_reduces_keypoint_jitter(overlap, executors, aligned_kps):
    track = [k for k in jittered_track(24)[:9]]                        # one run: frames 0..8
    script = {i: [k] for i, k in enumerate(track)}
    run_stream(scripted_swapper(executors, script, overlap=overlap, batch=4, smoothing=False), numbered_frames(9), 4)
    raw = np.stack(aligned_kps[:9])
    np.testing.assert_allclose(raw, np.stack(track), atol=1e-4)       # unsmoothed: the detections as they are
    run_stream(scripted_swapper(executors, script, overlap=overlap, batch=4), numbered_frames(9), 4)
    smoothed = np.stack(aligned_kps[9:])
    assert second_difference(smoothed) < 0.5 * second_difference(raw)
    np.testing.assert_allclose(smoothed[0], raw[0], atol=1e-4)        # run ends keep their own keypoints


def test_mask_params_are_chosen_once_per_run(overlap, executors):
    track = jittered_track(24)
    script = {i: [k] for i, k in enumerate(track) if k is not None}
    swapper = scripted_swapper(executors, script, overlap=overlap, batch=5)
    landmark_faces = []
    inner = swapper.nets.landmarks.executor

    class Counting:
        input_names, output_names = inner.input_names, inner.output_names

        def run(self, feeds):
            landmark_faces.append(len(feeds["face"]))
            return inner.run(feeds)

    swapper.nets.landmarks = LandmarkNet(Counting())
    run_stream(swapper, numbered_frames(24), 5)
    # 23 swapped faces, plus one target crop per run (runs: 0-8, 10-14, 15-23) for choosing the params
    assert sum(landmark_faces) == 23 + 3


def test_books_stay_bounded_on_a_long_video(overlap, executors):
    """Faces coming and going (new tracks) and jumping (new runs) for 60 frames: the per-track books (target
    embeddings, mask params) only keep what the frames still in the window can use."""
    script = {i: [BASE_KPS + [8 * (i % 4), 0]] for i in range(60) if i % 5 != 4}
    swapper = scripted_swapper(executors, script, overlap=overlap, batch=4)
    swapper.targets = np.ones((1, 512), np.float32)
    swapper.similarity = -1.0                                   # every face matches the one target
    out = run_stream(swapper, numbered_frames(60), 4)
    assert len(out) == 60 and swapper.frames_swapped == 48
    assert swapper.tracker.next_id == 12                        # a new track after each face-free frame
    assert len(swapper.embeddings) <= 1 and len(swapper.mask_params) <= 1
    assert len(swapper.history) == 2 and not swapper.pending
    assert all(record.frame is None for record in swapper.history)     # no pixels kept once released


# ------------------------------------------------------------------------------------------ equivalence

def test_batched_equals_per_frame_when_smoothing_is_off(overlap, executors, two_faces, grace):
    frame, _ = two_faces
    blank = np.full_like(frame, 128)
    frames = moving(frame, 3) + [blank] + moving(frame, 4, step=3)
    image = ImageSwapper(real_swapper_nets(executors), faces="all")
    sources = image.embed_photos([(GRACE, grace)], "--source")
    reference = [image.swap(f, sources).frame for f in frames]
    video = VideoSwapper(real_swapper_nets(executors), sources, faces="all", batch=3, smoothing=False,
                         overlap=overlap)
    out = run_stream(video, frames, 3)
    assert len(out) == len(frames)
    for a, b in zip(out, reference):
        np.testing.assert_array_equal(a, b)
    assert video.faces_swapped == 14                     # 2 faces × 7 frames
    assert len(video.nets.generator.executor.feeds) == 3          # one generator call per batch, all faces together
    assert video.nets.generator.executor.feeds[0]["target"].shape[0] == 6


def test_targets_keep_their_sources_across_face_free_frames(overlap, executors, two_faces, grace, aligned_kps):
    """GHOST-style position bookkeeping would hand target 1's source to target 0 after frames with fewer
    faces; here every face gets the source paired with the target it matches, frame after frame."""
    frame, split = two_faces
    astronaut_only, grace_only, blank = frame.copy(), frame.copy(), np.full_like(frame, 128)
    astronaut_only[:, split:] = 128
    grace_only[:, :split] = 128
    frames = [frame, blank, grace_only, blank, frame, astronaut_only, grace_only, frame]
    nets = real_swapper_nets(executors)
    astro_photo = cv2.resize(np.ascontiguousarray(skimage.data.astronaut()), (320, 320))
    targets = ImageSwapper(nets).embed_photos([(Path("astronaut.png"), astro_photo), (GRACE, grace)],
                                              "--target-face")
    sources = np.stack([np.full(512, 1.0, np.float32), np.full(512, 2.0, np.float32)])
    for batch in (1, 3):
        nets.generator.executor.feeds.clear()
        aligned_kps.clear()
        out = run_stream(VideoSwapper(nets, sources, targets, batch=batch, overlap=overlap), frames, batch)
        identities = np.concatenate([f["source_embedding"] for f in nets.generator.executor.feeds])
        assert len(aligned_kps) == len(identities) == 2 + 1 + 2 + 1 + 1 + 2
        on_grace = [kps[:, 0].mean() >= split for kps in aligned_kps]
        assert sum(on_grace) == 5                      # 3 two-face frames + 2 Grace-only frames
        for grace_face, identity in zip(on_grace, identities):
            np.testing.assert_array_equal(identity, sources[1 if grace_face else 0])
        for i in (1, 3):
            np.testing.assert_array_equal(out[i], blank)


# ------------------------------------------------------------------------------------------ batch limits

def test_run_chunked_respects_an_engine_batch_limit(executors):
    calls = []
    inner = executors["generator"]

    class Limited:
        input_names, output_names = inner.input_names, inner.output_names

        def run(self, feeds):
            calls.append(len(feeds["target"]))
            assert len(feeds["target"]) <= 4
            return inner.run(feeds)

    target = np.random.default_rng(1).uniform(-1, 1, (9, 3, 256, 256)).astype(np.float32)
    out = run_chunked(Limited(), {"target": target, "source_embedding": np.ones((9, 512), np.float32)}, 4)
    assert calls == [4, 4, 1]
    np.testing.assert_allclose(out["swapped"], -target, atol=1e-6)


# ------------------------------------------------------------------------------------------ the loop

class DelayTwo:
    """A lookahead process_batch: answers each frame two frames later, the rest on flush()."""

    def __init__(self):
        self.held = []

    def __call__(self, frames):
        self.held += [f.copy() for f in frames]
        ready, self.held = self.held[:max(len(self.held) - 2, 0)], self.held[max(len(self.held) - 2, 0):]
        return ready

    def flush(self):
        ready, self.held = self.held, []
        return ready


@pytest.mark.parametrize("batch", [1, 3])
def test_loop_pairs_held_frames_with_their_times(tmp_path, batch):
    clip = make_clip(tmp_path / "in.mp4", frames=10, audio=False)
    plain, delayed = tmp_path / "plain.mkv", tmp_path / "delayed.mkv"
    swap_video(clip, plain, lambda frames: [f.copy() for f in frames], batch=batch, progress=False)
    summary = swap_video(clip, delayed, DelayTwo(), batch=batch, progress=False)
    assert summary["frames"] == 10
    a, b = decode_all(plain), decode_all(delayed)
    assert [pts for pts, _ in a] == [pts for pts, _ in b]
    for (_, x), (_, y) in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_loop_rejects_a_flush_that_loses_frames(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=8, audio=False)
    process = DelayTwo()
    process.flush = lambda: []
    with pytest.raises(ValueError, match="process_batch returned 0 frames for 2"):
        swap_video(clip, tmp_path / "out.mp4", process, batch=3, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def write_face_clip(path: Path, frames) -> Path:
    """Encode RGB frames (any iterable) as a 24 frames/s H.264 clip, one frame at a time."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=24, options={"crf": "12"})
        video.pix_fmt, video.time_base = "yuv420p", Fraction(1, 24)
        for i, rgb in enumerate(frames):
            if i == 0:
                video.height, video.width = rgb.shape[:2]
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def test_swap_video_command_uses_the_video_swapper(tmp_path, capsys, monkeypatch, onnx_files, two_faces):
    def fake_resolve(*args, log=print):
        return dict(onnx_files), "retinaface", ["generator", "arcface", "landmarks"], None

    monkeypatch.setattr(loading, "resolve_onnx", fake_resolve)
    frame, _ = two_faces
    clip = write_face_clip(tmp_path / "in.mp4", moving(frame[:, :320], 9))
    out = tmp_path / "out.mp4"
    rc = main(["swap", "video", "--source", str(GRACE), "--target", str(clip), "--output", str(out),
               "--backend", "ort", "--batch", "4", "--detect-every", "2", "--no-progress"])
    assert rc == 0, capsys.readouterr()
    assert len(decode_all(out)) == 9
    label = read_video_label(out)
    assert label["standin_weights"] is True and label["altered"] is True
    assert set(label) == set(make_label(1, True))
    # the same make_process, asked for the webcam: one frame in, one out (no lookahead)
    args = argparse.Namespace(source=[GRACE], target_face=[], backend="ort", precision="fp16", detector=None,
                              faces="largest", similarity=0.15, weights_dir=None, engines_dir=tmp_path / "e",
                              num_blocks=2, threads=None, swap_mode="webcam")
    process = swap_cli.make_process(args)
    assert isinstance(process, VideoSwapper) and process.lookahead == 0
    decoded = [rgb for _, rgb in decode_all(clip)]
    assert len(process([decoded[0]])) == 1 and process.frames_swapped == 1
