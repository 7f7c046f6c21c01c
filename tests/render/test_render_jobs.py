"""`ghostrt render` jobs (ghostrt/render/jobs.py, driver.py) and the encoder the output's container implies."""

from pathlib import Path

import av
import pytest

from ghostrt.runtime.io import video_io, video_writer
from ghostrt.runtime.loops.video_loop import swap_video
from test_video_io import make_clip


def test_default_encoder_follows_the_container(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=12)            # H.264 + AAC
    info = video_io.probe(clip)
    assert video_writer.plan_output(tmp_path / "o.mp4", info).codec == "libx264"
    assert video_writer.plan_output(tmp_path / "o.mkv", info).codec == "libx264"
    webm = video_writer.plan_output(tmp_path / "o.webm", info)
    assert webm.codec == "libvpx-vp9" and set(webm.transcoded.values()) == {"libopus"}
    swap_video(clip, tmp_path / "o.webm", lambda frames: frames, codec=None, progress=False)
    with av.open(str(tmp_path / "o.webm")) as out:
        assert [s.codec_context.name for s in out.streams] == ["vp9", "opus"]
        assert sum(1 for _ in out.decode(video=0)) == 12
    with av.open(str(tmp_path / "o.webm")) as out:
        rate = out.streams.audio[0].codec_context.sample_rate
        assert sum(f.samples for f in out.decode(audio=0)) / rate > 0.45      # the 0.54 s tone, re-encoded


def test_webm_with_libx264_is_still_refused(tmp_path):
    info = video_io.probe(make_clip(tmp_path / "in.mp4", frames=4))
    with pytest.raises(Exception, match="cannot hold libx264"):
        video_writer.plan_output(tmp_path / "o.webm", info, "libx264")


# ------------------------------------------------------------------------------------------------ the jobs

from dataclasses import dataclass

from ghostrt.render import driver, jobs
from ghostrt.runtime.io.provenance_label import make_label
from test_render_segments import TemporalStub, keyframed_clip


@dataclass(frozen=True)
class StubSpec:
    """A processor recipe without nets: the temporal stub, labelled like a real output."""

    every: int = 3

    @property
    def key(self):
        return self

    def load(self):
        return _LoadedStub(self.every)


class _LoadedStub:
    def __init__(self, every):
        self.every = every
        self.label = make_label(1, True, operation="video face swap")

    def stream(self, first_index):
        stream = TemporalStub(self.every)
        stream.first_index = first_index
        return stream


def make_targets(folder: Path, names=("a.mp4", "b.mp4", "c.mp4"), corrupt=("b.mp4",)) -> Path:
    folder.mkdir()
    for name in names:
        clip = keyframed_clip(folder / name, frames=16, gop=8)
        if name in corrupt:
            data = clip.read_bytes()
            clip.write_bytes(data[: len(data) // 3])          # cut off: the index points past the end
    return folder


def test_jobs_go_on_past_a_corrupt_input_and_a_rerun_skips_the_done_ones(tmp_path):
    targets = make_targets(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    found = jobs.jobs_from_targets([targets], [Path("me.jpg")], [], None, out)
    assert [j.output.name for j in found] == ["a.mp4", "b.mp4", "c.mp4"]
    results = driver.render_jobs(found, lambda job: StubSpec(), driver.RenderOptions(crf=0), progress=False)
    assert [r.status for r in results] == ["done", "failed", "done"]
    assert "b.mp4" in results[1].reason and "\n" not in results[1].reason
    assert [r.frames for r in results] == [16, 0, 16]
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "c.mp4"]      # nothing partial for b
    table = jobs.summary_table(results)
    assert "failed" in table and "truncated" in table
    again = driver.render_jobs(found, lambda job: StubSpec(), driver.RenderOptions(crf=0), progress=False)
    assert [r.status for r in again] == ["skipped", "failed", "skipped"]


def test_jobs_file_jsonl_and_toml(tmp_path):
    keyframed_clip(tmp_path / "t.mp4", frames=8, gop=8, audio=False)
    (tmp_path / "jobs.jsonl").write_text('{"source": "me.jpg", "target": "t.mp4", "output": "o1.mp4", "crf": 0}\n'
                                         '{"target": "t.mp4", "output": "o2.mkv", "detect_every": 2}\n')
    found = jobs.load_jobs_file(tmp_path / "jobs.jsonl", [Path("/x/default.jpg")], [])
    assert [j.sources for j in found] == [(tmp_path / "me.jpg",), (Path("/x/default.jpg"),)]
    assert found[0].options == {"crf": 0} and found[1].output == tmp_path / "o2.mkv"
    (tmp_path / "jobs.toml").write_text('[[job]]\nsource = ["a.jpg", "b.jpg"]\ntarget = "t.mp4"\n'
                                        'output = "o3.mp4"\nfaces = "all"\n')
    (toml_job,) = jobs.load_jobs_file(tmp_path / "jobs.toml", [], [])
    assert toml_job.sources == (tmp_path / "a.jpg", tmp_path / "b.jpg") and toml_job.options == {"faces": "all"}
    (tmp_path / "bad.jsonl").write_text('{"target": "t.mp4", "output": "o.mp4", "colour": 1}\n')
    with pytest.raises(jobs.GhostError, match="unknown key"):
        jobs.load_jobs_file(tmp_path / "bad.jsonl", [Path("s.jpg")], [])
    results = driver.render_jobs(found, lambda job: StubSpec(), driver.RenderOptions(), progress=False)
    assert [r.status for r in results] == ["done", "done"]
    assert (tmp_path / "o2.mkv").is_file()


def test_segmented_jobs_in_a_local_pool_equal_the_one_process_render(tmp_path):
    from ghostrt.render.workers import LocalPool
    from test_render_segments import decoded

    clip = keyframed_clip(tmp_path / "t.mp4", frames=40, gop=8)
    one = jobs.Job(clip, tmp_path / "one.mp4", (Path("s.jpg"),))
    seg = jobs.Job(clip, tmp_path / "seg.mp4", (Path("s.jpg"),))
    opts = driver.RenderOptions(crf=0, batch=4, detect_every=3, segment_seconds=0.5)
    (r1,) = driver.render_jobs([one], lambda job: StubSpec(), opts, progress=False)
    pool = LocalPool()
    (r2,) = driver.render_jobs([seg], lambda job: StubSpec(), opts, pool=pool, progress=False)
    assert (r1.status, r2.status, r2.segments) == ("done", "done", 3)
    a, b = decoded(one.output), decoded(seg.output)
    assert len(a) == len(b) == 40 and [p for p, _ in a] == [p for p, _ in b]
    assert max(int(abs(x - y).max()) for (_, x), (_, y) in zip(a, b)) <= 1
    assert jobs.is_complete(seg)                # labelled, so a rerun skips it


def test_cli_render_exit_code_summary_and_resume(tmp_path, monkeypatch, capsys):
    from ghostrt.cli import main
    from ghostrt.cli import render as render_cli

    monkeypatch.setattr(render_cli, "make_spec_for", lambda args: (lambda job: StubSpec()))
    targets = make_targets(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    argv = ["render", "--source", "me.jpg", "--target", str(targets), "--output-dir", str(out), "--no-progress"]
    assert main(argv) == 1
    text = capsys.readouterr().out
    assert "2 of 3 jobs complete, 1 failed" in text and "b.mp4" in text and "truncated" in text
    assert main(argv) == 1
    assert capsys.readouterr().out.count("skipped") == 2
    (targets / "b.mp4").unlink()
    assert main(argv[:4] + [str(targets / "a.mp4"), "--target", str(targets / "c.mp4")] + argv[5:]) == 0
    assert main(["render", "--source", "me.jpg", "--target", str(targets)]) == 2     # no --output-dir
