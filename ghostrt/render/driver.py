"""The render driver: runs the jobs in order, each in this process (as `swap video` does) or, with a worker
pool, as keyframe segments rendered in parallel and stitched here; it goes on past a failed job and keeps
the books the summary table shows."""

import sys
import time
from dataclasses import dataclass

from ghostrt.errors import GhostError
from ghostrt.render import segments
from ghostrt.render.jobs import Job, JobResult, is_complete
from ghostrt.render.workers import SegmentTask

DEFAULT_SEGMENT_SECONDS = 10.0


@dataclass
class RenderOptions:
    crf: int = 18
    batch: int = 8
    codec: str | None = None
    detect_every: int = 1
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS


class _Progress:
    """One bar over all jobs: frames done of the total, and the frame rate (tqdm, on stderr)."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="frame", file=sys.stderr, dynamic_ncols=True, desc="render")

    def add(self, frames: int) -> None:
        if self.bar is not None:
            self.bar.update(frames)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Counting:
    """process_batch for video_loop with the stream's flush, counting frames for the bar."""

    def __init__(self, stream, progress: _Progress):
        self.stream, self.progress = stream, progress

    def __call__(self, frames):
        out = self.stream.process_batch(frames)
        self.progress.add(len(out))
        return out

    def flush(self):
        out = self.stream.flush()
        self.progress.add(len(out))
        return out


def _frames_of(job: Job) -> int:
    from ghostrt.runtime.io import video_io

    try:
        return video_io.probe(job.target).frames
    except GhostError:
        return 0


def _one_process(job: Job, spec, opts: RenderOptions, cache: dict, progress: _Progress) -> JobResult:
    from ghostrt.runtime.io import video_io, video_writer
    from ghostrt.runtime.loops import video_loop

    info = video_io.probe(job.target)                       # the file checks before any net loads
    video_writer.plan_output(job.output, info, opts.codec)
    loaded = cache.get(spec.key)
    if loaded is None:
        loaded = cache[spec.key] = spec.load()
    stream = loaded.stream(0)
    try:
        summary = video_loop.swap_video(job.target, job.output, _Counting(stream, progress), batch=opts.batch,
                                        codec=opts.codec, crf=opts.crf, label=loaded.label, progress=False,
                                        log=sys.stderr)
    finally:
        getattr(stream, "close", lambda: None)()
    return JobResult(job, "done", frames=summary["frames"], segments=1)


def _segmented(job: Job, spec, opts: RenderOptions, pool, progress: _Progress) -> JobResult:
    from ghostrt.runtime.io import video_io, video_writer

    info = video_io.probe(job.target)
    plan = video_writer.plan_output(job.output, info, opts.codec)
    if plan.codec not in segments.STITCHABLE_CODECS:
        raise GhostError(f"{job.output}: segments are stitched as H.264; {plan.codec} output renders in one "
                         "process (drop --ray, or use .mp4/.mkv/.mov)")
    found = segments.scan(info)
    parts = segments.plan_segments(found, opts.segment_seconds, opts.detect_every)
    tasks = [SegmentTask(0, info, found, seg, spec, job.output.suffix, opts.crf, opts.batch) for seg in parts]
    before = pool.resubmitted
    encoded = pool.run(tasks, on_done=lambda r: progress.add(r.frames))
    label = next((e.label for e in encoded if e.label), None)
    frames = segments.stitch(job.output, info, encoded, crf=opts.crf, label=label)
    return JobResult(job, "done", frames=frames, segments=len(parts), retries=pool.resubmitted - before)


def render_jobs(jobs: list[Job], make_spec, opts: RenderOptions, pool=None, progress: bool = True,
                log=print) -> list[JobResult]:
    """Run every job; `make_spec(job)` is the processor recipe, `pool` None renders in this process."""
    results: list[JobResult] = []
    pending = []
    for job in jobs:
        if is_complete(job):
            results.append(JobResult(job, "skipped", reason="output already complete"))
        else:
            pending.append(job)
    bar = _Progress(sum(_frames_of(j) for j in pending), progress and bool(pending))
    cache: dict = {}
    try:
        for job in pending:
            started = time.perf_counter()
            try:
                o = RenderOptions(**{**opts.__dict__, **{k: v for k, v in job.options.items()
                                                         if k in RenderOptions.__dataclass_fields__}})
                spec = make_spec(job)
                if pool is None:
                    result = _one_process(job, spec, o, cache, bar)
                else:
                    result = _segmented(job, spec, o, pool, bar)
            except GhostError as err:
                result = JobResult(job, "failed", reason=str(err).splitlines()[0])
            except Exception as err:      # one job's surprise must not stop the others
                result = JobResult(job, "failed", reason=f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
                                   if str(err) else type(err).__name__)
            result.seconds = time.perf_counter() - started
            results.append(result)
    finally:
        bar.close()
        for loaded in cache.values():
            getattr(loaded, "close", lambda: None)()
    order = {id(j): i for i, j in enumerate(jobs)}
    return sorted(results, key=lambda r: order[id(r.job)])
