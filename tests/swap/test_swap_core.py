"""One swap core under every path: a frame with 7 faces goes through image, video and webcam swaps (and the
public API) on executors whose engines accept at most 4 at a time, as a TensorRT profile built with
--max-batch 4 does. Every face must be swapped, and no net may ever see a batch over 4."""

import numpy as np
import pytest

from ghostrt.api import Identity, Swapper
from ghostrt.loading import LoadedNets
from ghostrt.runtime.loops.video_loop import swap_video
from ghostrt.runtime.loops.webcam_loop import run_webcam
from ghostrt.runtime.swap.core import Nets
from ghostrt.runtime.swap.image_swapper import ImageSwapper
from ghostrt.runtime.swap.video_swapper import VideoSwapper
from ghostrt.runtime.types import Face
from test_swap_image import executors, onnx_files  # noqa: F401 (fixtures)
from test_video_io import decode_all, make_clip

FACES, CAP, WIDTH = 7, 4, 256
KPS = np.array([[108, 110], [148, 110], [128, 134], [112, 156], [144, 156]], np.float32)


class Capped:
    """An executor with an engine's batch limit: refuses a batch over `limit`, keeps every batch size."""

    def __init__(self, inner, limit: int = CAP):
        self.inner, self.max_batch, self.batches = inner, limit, []
        self.input_names, self.output_names = inner.input_names, inner.output_names

    def run(self, feeds):
        n = len(next(iter(feeds.values())))
        assert n <= self.max_batch, f"batch {n} over the profile's {self.max_batch}"
        self.batches.append(n)
        return self.inner.run(feeds)


class SevenFaces:
    """A detector that finds the 7 faces laid side by side in every frame (256 px apart)."""

    max_batch = CAP

    def detect(self, frames):
        assert len(frames) <= CAP
        return [[Face(np.array([x + 78, 80, x + 178, 190], np.float32), 0.99, KPS + [x, 0])
                 for x in range(0, WIDTH * FACES, WIDTH)] for _ in frames]


def seven_face_frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 216, (256, WIDTH * FACES, 3), dtype=np.uint8)


@pytest.fixture
def nets(executors):
    return Nets(detector=SevenFaces(), arcface=Capped(executors["arcface"]),
                generator=Capped(executors["generator"]), landmarks=Capped(executors["landmarks"]))


def changed_faces(before: np.ndarray, after: np.ndarray) -> int:
    """How many of the 7 face boxes have pixels the swap changed."""
    return sum(bool(np.any(before[80:190, x + 78:x + 178] != after[80:190, x + 78:x + 178]))
               for x in range(0, WIDTH * FACES, WIDTH))


def generator_of(nets) -> Capped:
    return nets.generator.executor


def test_image_swap_of_seven_faces_on_a_batch_four_engine(nets):
    frame = seven_face_frame()
    result = ImageSwapper(nets, faces="all").swap(frame, np.ones((1, 512), np.float32))
    assert len(result.swapped) == FACES and changed_faces(frame, result.frame) == FACES
    assert generator_of(nets).batches == [4, 3]                     # split, never refused
    assert sum(nets.landmarks.executor.batches) == 2 * FACES        # swapped and target crops


def test_api_swap_and_swap_batch_of_seven_faces(nets):
    sw = Swapper(LoadedNets(nets, {}, "scripted", [], None))
    who = Identity(np.ones((1, 512), np.float32))
    frames = [seven_face_frame(1), seven_face_frame(2)[:, :WIDTH * FACES - 2]]     # sizes differ
    single = sw.swap(frames[0], who, faces="all")
    assert len(single.swapped) == FACES and changed_faces(frames[0], single.image) == FACES
    many = sw.swap_batch(frames, who, faces="all")
    assert [len(r.swapped) for r in many] == [FACES, FACES]
    np.testing.assert_array_equal(many[0].image, single.image)     # batching across frames changes nothing
    assert max(generator_of(nets).batches) <= CAP


def test_video_swap_of_seven_faces_on_a_batch_four_engine(nets, tmp_path):
    clip = make_clip(tmp_path / "seven.mp4", frames=5, size=(WIDTH * FACES, 256), audio=False)
    frames_in = [rgb for _, rgb in decode_all(clip)]
    process = VideoSwapper(nets, np.ones((1, 512), np.float32), faces="all", batch=3)
    summary = swap_video(clip, tmp_path / "out.mp4", process, batch=3, crf=0, progress=False)
    process.close()
    assert summary["frames"] == 5 and process.faces_swapped == 5 * FACES
    out = [rgb for _, rgb in decode_all(tmp_path / "out.mp4")]
    assert all(changed_faces(a, b) == FACES for a, b in zip(frames_in, out))
    assert max(generator_of(nets).batches) <= CAP and sum(generator_of(nets).batches) == 5 * FACES


def test_webcam_swap_of_seven_faces_on_a_batch_four_engine(nets, tmp_path):
    clip = make_clip(tmp_path / "cam.mp4", frames=4, size=(WIDTH * FACES, 256), audio=False)
    process = VideoSwapper(nets, np.ones((1, 512), np.float32), faces="all", batch=1, smoothing=False)
    shown = []

    def process_frame(frame):
        out = process([frame])[0]
        shown.append(changed_faces(frame, out))
        return out

    summary = run_webcam(clip, process_frame, frames=3)
    assert summary["frames"] == 3 and shown == [FACES] * 3
    assert max(generator_of(nets).batches) <= CAP
