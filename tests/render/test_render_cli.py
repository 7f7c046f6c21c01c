"""`ghostrt render` end to end: the real Swapper (stand-in tiny graphs, ONNX Runtime) in >= 3 segments equals
its one-process render (and `swap video`'s frame count, timestamps and audio); `--ray auto` (a local Ray in this process, 2 workers) through the CLI equals the
one-process render; Ctrl-C mid-render cancels everything and leaves no output and no temp segment.
Provenance: every render output (one process, local pool, Ray) carries what `swap video`'s does: watermarked
pixels equal to its output, the label, and a valid C2PA manifest (the .c2pa sidecar for .mkv) signed before
the rename, so Ctrl-C while signing leaves nothing either."""

from pathlib import Path

import numpy as np
import pytest
import ray

import test_render_jobs
import test_render_segments
import ghostrt
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


def assert_provenance(path: Path, like: Path | None = None):
    """ghostrt.verify calls it intact: a valid ghostrt manifest, the watermark and the label, stand-in said;
    `like`: a `swap video` output whose manifest names the same backend, precision and marks."""
    report = ghostrt.verify(path)
    assert report.intact and report.c2pa_ghostrt and report.c2pa["state"] != "tampered", report.lines()
    assert report.watermark["found"] and report.label is not None and report.label["altered"]
    assert report.standin and report.label["standin_weights"]
    assert any("stand-in=True" in line for line in report.lines())
    if like is not None:
        other = ghostrt.verify(like)
        keys = ("backend", "precision", "watermark", "visible_mark", "standin_weights", "target_sha256")
        assert {k: report.c2pa["ghostrt"].get(k) for k in keys} == {k: other.c2pa["ghostrt"].get(k) for k in keys}
        assert report.c2pa["state"] == other.c2pa["state"]
        assert [a["action"] for a in report.c2pa["actions"]] == [a["action"] for a in other.c2pa["actions"]]
    return report


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
    printed = capsys.readouterr().out
    assert printed.count("1 of 1 jobs complete") == 2
    assert printed.count("!! STAND-IN (untrained) weights") == 3       # render one-process, swap video, render segmented
    assert len(tasks) >= 3 and {type(t.spec).__name__ for t in tasks} == {"SwapSpec"}     # the real Swapper
    assert_same(one, seg, 24)
    assert_same(swapped, seg, 24)                    # swap video: the same watermarked pixels, times and audio
    assert_provenance(swapped)
    assert assert_provenance(one, like=swapped).c2pa["ghostrt"]["backend"] == "ort"
    assert_provenance(seg, like=swapped)


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
    assert_provenance(seg)                          # marked by the Ray workers, signed on the driver


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


def test_segmented_mkv_is_signed_at_its_temporary_name_with_the_c2pa_sidecar(tmp_path, monkeypatch):
    from ghostrt.runtime.io import c2pa_manifest
    from ghostrt.runtime.io.provenance import Provenance

    clip = keyframed_clip(tmp_path / "t.mp4", frames=16, gop=4, size=(128, 96))
    out = tmp_path / "seg.mkv"
    seen = []
    sign = Provenance.sign

    def spy(self, path, label, final_name=None, log=print):
        seen.append((Path(path), Path(final_name), out.exists(), self.signer is not None))
        return sign(self, path, label, final_name=final_name, log=log)
    monkeypatch.setattr(Provenance, "sign", spy)
    opts = driver.RenderOptions(crf=0, batch=4, segment_seconds=0.2)
    (r,) = driver.render_jobs([jobs.Job(clip, out, (Path("s.jpg"),))], lambda j: StubSpec(), opts,
                              pool=LocalPool(), progress=False)
    assert r.status == "done" and r.segments >= 2, r.reason
    (signed,) = [s for s in seen if s[3]]           # the segments are marked in the worker, never signed there
    tmp, final, existed, _ = signed
    assert final == out and tmp != out and tmp.parent == tmp_path and not existed
    assert c2pa_manifest.sidecar_path(out).is_file()
    report = assert_provenance(out)
    assert report.c2pa["sidecar"] and report.c2pa["ghostrt"]["target_sha256"] == c2pa_manifest.sha256_file(clip)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.mkv", "seg.mkv.c2pa", "t.mp4"]


@pytest.mark.parametrize("pool", [None, "local"])
def test_ctrl_c_while_signing_leaves_no_output(tmp_path, monkeypatch, pool):
    from ghostrt.runtime.io import c2pa_manifest

    (tmp_path / "in").mkdir()
    clip = keyframed_clip(tmp_path / "in" / "t.mp4", frames=8, gop=4)
    out = tmp_path / "out"
    out.mkdir()
    signing = []

    def interrupt(path, *a, **k):
        signing.append(Path(path))
        raise KeyboardInterrupt
    monkeypatch.setattr(c2pa_manifest, "sign_file", interrupt)
    job = jobs.Job(clip, out / "t.mp4", (Path("s.jpg"),))
    with pytest.raises(KeyboardInterrupt):
        driver.render_jobs([job], lambda j: StubSpec(), driver.RenderOptions(crf=0, batch=4, segment_seconds=0.2),
                           pool=LocalPool() if pool else None, progress=False)
    assert len(signing) == 1 and signing[0].parent == out      # the whole file, at its temporary name
    assert list(out.iterdir()) == []


def test_a_bad_signing_key_fails_the_render_before_any_job(tmp_path, monkeypatch, capsys):
    def no_spec(job):
        raise AssertionError("a job started before the signing key was checked")
    monkeypatch.setattr(render_cli, "make_spec_for", lambda args: no_spec)
    clip = keyframed_clip(tmp_path / "t.mp4", frames=4)
    assert main(["render", "--source", "me.jpg", "--target", str(clip), "--output", str(tmp_path / "o.mp4"),
                 "--sign-cert", "missing.pem", "--sign-key", "missing.key", "--no-progress"]) == 2
    assert "signing certificate does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.mp4"]


def test_visible_mark_is_put_on_by_the_workers_as_in_one_process(tmp_path):
    from dataclasses import replace

    from ghostrt.runtime.io import provenance

    clip = keyframed_clip(tmp_path / "t.mp4", frames=8, gop=4, size=(128, 96))
    prov = replace(provenance.for_output(log=lambda *_: None), visible_mark=True)
    opts = driver.RenderOptions(crf=0, batch=4, segment_seconds=0.1)
    outs = {}
    for name, pool, p in (("plain", None, None), ("one", None, prov), ("seg", LocalPool(), prov)):
        outs[name] = tmp_path / f"{name}.mp4"
        (r,) = driver.render_jobs([jobs.Job(clip, outs[name], (Path("s.jpg"),))], lambda j: StubSpec(), opts,
                                  pool=pool, progress=False, provenance=p)
        assert r.status == "done", r.reason
    assert_same(outs["one"], outs["seg"], 8)
    plain, marked = decoded(outs["plain"]), decoded(outs["one"])
    assert max(int(np.abs(x.astype(int) - y).max()) for (_, x), (_, y) in zip(plain, marked)) > 32
    assert ghostrt.verify(outs["seg"]).c2pa["ghostrt"]["visible_mark"] is True
