"""`ghostrt render` end to end: the real Swapper (stand-in tiny graphs, ONNX Runtime) in >= 3 segments equals
its one-process render (and `swap video`'s frame count, timestamps and audio); `--ray auto` (a local Ray in this process, 2 workers) through the CLI equals the
one-process render; Ctrl-C mid-render cancels everything and leaves no output and no temp segment."""

from pathlib import Path

import numpy as np
import pytest
import ray

import test_render_jobs
import test_render_segments
from ghostrt.cli import main
from ghostrt.cli import render as render_cli
from ghostrt.render import driver, jobs
from ghostrt.render.workers import LocalPool
from test_render_jobs import StubSpec
from test_render_segments import audio_packets, decoded, keyframed_clip
from test_swap_image import GRACE, onnx_files, tiny_cli  # noqa: F401  (fixtures)


def assert_same(a_path: Path, b_path: Path, frames: int):
    a, b = decoded(a_path), decoded(b_path)
    assert len(a) == len(b) == frames
    assert [p for p, _ in a] == [p for p, _ in b]
    assert max(int(np.abs(x - y).max()) for (_, x), (_, y) in zip(a, b)) <= 1
    assert audio_packets(a_path) == audio_packets(b_path)


def _render_real(clip, out, *extra) -> int:
    return main(["render", "--source", str(GRACE), "--target", str(clip), "--output", str(out),
                 "--backend", "ort", "--crf", "0", "--no-progress", *extra])


def test_real_swapper_in_segments_equals_the_one_process_render(tmp_path, monkeypatch, capsys, tiny_cli):  # noqa: F811
    clip = keyframed_clip(tmp_path / "t.mp4", frames=24, gop=6, size=(128, 96))
    one, seg, swapped = tmp_path / "one.mp4", tmp_path / "seg.mp4", tmp_path / "swap.mp4"
    assert _render_real(clip, one) == 0
    assert main(["swap", "video", "--source", str(GRACE), "--target", str(clip), "--output", str(swapped),
                 "--backend", "ort", "--crf", "0", "--no-progress"]) == 0
    tasks = []

    class SeenPool(LocalPool):
        """The in-process pool through the CLI's Ray path (tiny graphs live in this process only)."""
        _actors = [None]

        def start(self, spec):
            pass

        def run(self, todo, on_done=None):
            tasks.extend(todo)
            return super().run(todo, on_done)
    monkeypatch.setattr(render_cli, "make_pool", lambda args: SeenPool())
    assert _render_real(clip, seg, "--segment-seconds", "0.25") == 0
    assert capsys.readouterr().out.count("1 of 1 jobs complete") == 2
    assert len(tasks) >= 3 and {type(t.spec).__name__ for t in tasks} == {"SwapSpec"}     # the real Swapper
    assert_same(one, seg, 24)
    a, b = decoded(swapped), decoded(seg)            # swap video: same frames count, timestamps and audio
    assert len(a) == len(b) and [p for p, _ in a] == [p for p, _ in b]
    assert audio_packets(swapped) == audio_packets(seg)


@pytest.mark.xfail(strict=True, reason="known gap: render's outputs are not yet watermarked/signed like "
                                       "swap video's (issue 13 provenance), so pixels differ by the watermark")
def test_render_pixels_equal_swap_video(tmp_path, tiny_cli):  # noqa: F811
    clip = keyframed_clip(tmp_path / "t.mp4", frames=8, gop=4, size=(128, 96))
    assert _render_real(clip, tmp_path / "one.mp4") == 0
    assert main(["swap", "video", "--source", str(GRACE), "--target", str(clip), "--output",
                 str(tmp_path / "swap.mp4"), "--backend", "ort", "--crf", "0", "--no-progress"]) == 0
    assert_same(tmp_path / "swap.mp4", tmp_path / "one.mp4", 8)


def test_ray_auto_through_the_cli_equals_the_one_process_render(tmp_path, monkeypatch, capsys):
    for module in (test_render_jobs, test_render_segments):      # the stub travels to the workers by value
        ray.cloudpickle.register_pickle_by_value(module)
    monkeypatch.setattr(render_cli, "make_spec_for", lambda args: (lambda job: StubSpec()))
    clip = keyframed_clip(tmp_path / "t.mp4", frames=32, gop=8)
    one, seg = tmp_path / "one.mp4", tmp_path / "ray.mp4"
    common = ["--source", "me.jpg", "--target", str(clip), "--crf", "0", "--batch", "4", "--no-progress"]
    assert main(["render", *common, "--output", str(one)]) == 0
    assert main(["render", *common, "--output", str(seg), "--ray", "auto", "--workers", "2",
                 "--segment-seconds", "0.3"]) == 0
    captured = capsys.readouterr()
    assert "Ray up with 2 worker(s)" in captured.err
    assert "1 of 1 jobs complete" in captured.out
    assert not ray.is_initialized()                 # the in-process Ray is shut down with the run
    assert_same(one, seg, 32)


@pytest.mark.parametrize("pool", [None, "local"])
def test_ctrl_c_cancels_and_leaves_no_output_nor_temp_segments(tmp_path, monkeypatch, pool):
    (tmp_path / "in").mkdir()
    clip = keyframed_clip(tmp_path / "in" / "t.mp4", frames=32)
    out = tmp_path / "out"
    out.mkdir()
    calls = []

    def interrupt(self, frames):
        calls.append(frames)
        raise KeyboardInterrupt
    monkeypatch.setattr(driver._Progress, "add", interrupt)
    job = jobs.Job(clip, out / "t.mp4", (Path("s.jpg"),))
    opts = driver.RenderOptions(crf=0, batch=4, segment_seconds=0.3)
    with pytest.raises(KeyboardInterrupt):
        driver.render_jobs([job, jobs.Job(clip, out / "u.mp4", (Path("s.jpg"),))], lambda j: StubSpec(), opts,
                           pool=LocalPool() if pool else None, progress=False)
    assert calls                                     # it was interrupted mid-render, not before
    assert sorted(p.name for p in out.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["t.mp4"]
