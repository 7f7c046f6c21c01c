"""Swapper.swap_video's hooks for callers that run it beside other work (the web UI's video tab): progress
after each batch, a cancel that leaves nothing behind as Ctrl-C does, and a lock held whenever the nets run.
The seven-face nets of test_swap_core keep it fast and make every frame's swap visible."""

import threading

import numpy as np
import pytest

from ghostrt.api import Identity, Swapper
from ghostrt.errors import Cancelled
from ghostrt.loading import LoadedNets
from ghostrt.runtime.backends.executors import Choice
from ghostrt.runtime.swap.core import Nets
from test_swap_core import FACES, WIDTH, Capped, SevenFaces, changed_faces
from test_swap_image import executors, onnx_files  # noqa: F401 (fixtures)
from test_video_io import decode_all, make_clip

FRAMES, BATCH = 7, 3


class Held:
    """A lock that knows whether it is held, and how often it was taken."""

    def __init__(self):
        self.held, self.taken = False, 0

    def __enter__(self):
        assert not self.held, "taken twice at once"
        self.held, self.taken = True, self.taken + 1

    def __exit__(self, *exc):
        self.held = False


class OnlyHeld:
    """An executor (or the detector) that fails the test when it runs without the lock held."""

    def __init__(self, inner, lock: Held, method: str = "run"):
        self.inner, self.lock, self.calls = inner, lock, 0
        self.max_batch = inner.max_batch
        self.input_names = getattr(inner, "input_names", None)
        self.output_names = getattr(inner, "output_names", None)
        setattr(self, method, self._checked(getattr(inner, method)))

    def _checked(self, call):
        def run(*args, **kwargs):
            assert self.lock.held, "a net ran outside the caller's lock"
            self.calls += 1
            return call(*args, **kwargs)
        return run


def make_swapper(nets) -> Swapper:
    choices = {"generator": Choice(None, "ort", "test nets")}
    return Swapper(LoadedNets(nets, choices, "scripted", [], None), log=lambda *_: None)


@pytest.fixture
def clip(tmp_path):
    return make_clip(tmp_path / "seven.mp4", frames=FRAMES, size=(WIDTH * FACES, 256), audio=False)


@pytest.fixture
def who():
    return Identity(np.ones((1, 512), np.float32))


def plain_nets(executors):  # noqa: F811
    return Nets(detector=SevenFaces(), arcface=Capped(executors["arcface"]),
                generator=Capped(executors["generator"]), landmarks=Capped(executors["landmarks"]))


def test_on_progress_counts_every_frame_after_each_batch(executors, clip, who, tmp_path):  # noqa: F811
    calls = []
    sw = make_swapper(plain_nets(executors))
    summary = sw.swap_video(clip, tmp_path / "out.mp4", who, faces="all", batch=BATCH,
                            on_progress=lambda done, total: calls.append((done, total)))
    assert summary["frames"] == FRAMES and summary["faces_swapped"] == FRAMES * FACES
    assert len(calls) >= FRAMES // BATCH + 1                       # each batch, and the flush
    assert calls[-1] == (FRAMES, FRAMES)
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and all(t == FRAMES for _, t in calls)
    frames_in = [rgb for _, rgb in decode_all(clip)]
    frames_out = [rgb for _, rgb in decode_all(tmp_path / "out.mp4")]
    assert len(frames_out) == FRAMES and all(changed_faces(a, b) == FACES for a, b in zip(frames_in, frames_out))


def test_cancel_stops_between_batches_and_leaves_no_output(executors, clip, who, tmp_path):  # noqa: F811
    nets = plain_nets(executors)
    cancel = threading.Event()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    seen = []

    def cancel_after_first(done, total):
        seen.append(done)
        cancel.set()

    sw = make_swapper(nets)
    with pytest.raises(Cancelled) as err:
        sw.swap_video(clip, out_dir / "out.mp4", who, faces="all", batch=BATCH, on_progress=cancel_after_first,
                      cancel=cancel)
    assert isinstance(err.value, KeyboardInterrupt)                # Ctrl-C's path, not an `except Exception`
    assert len(seen) == 1                                          # no batch after the cancel
    assert list(out_dir.iterdir()) == []                           # no partial file, no temporary one
    # set before the start: no net runs at all
    generator = nets.generator.executor
    before = len(generator.batches)
    with pytest.raises(Cancelled):
        sw.swap_video(clip, out_dir / "again.mp4", who, faces="all", batch=BATCH, cancel=cancel)
    assert len(generator.batches) == before and list(out_dir.iterdir()) == []


def test_lock_is_held_whenever_a_net_runs(executors, clip, who, tmp_path):  # noqa: F811
    lock = Held()
    nets = Nets(detector=OnlyHeld(SevenFaces(), lock, "detect"),
                arcface=OnlyHeld(Capped(executors["arcface"]), lock),
                generator=OnlyHeld(Capped(executors["generator"]), lock),
                landmarks=OnlyHeld(Capped(executors["landmarks"]), lock))
    sw = make_swapper(nets)
    summary = sw.swap_video(clip, tmp_path / "out.mp4", who, faces="all", batch=BATCH, lock=lock)
    assert summary["frames"] == FRAMES and summary["faces_swapped"] == FRAMES * FACES
    assert nets.detector.calls > 0 and nets.generator.executor.calls > 0
    assert not lock.held
    assert lock.taken >= FRAMES // BATCH + 1 + 2                   # each batch, the flush, setup and close
