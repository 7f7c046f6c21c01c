"""The render driver: runs the jobs in order, each in this process (as `swap video` does) or, with a worker
pool, as keyframe segments rendered in parallel and stitched here; it goes on past a failed job and keeps
the books the summary table shows. Every output carries `swap video`'s provenance: the same watermark on every
frame (put on by the workers in the segmented path), label and container tag, and a C2PA manifest signed here,
on the driver, before the output is renamed into place."""

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


def _check_output(job: Job, codec: str | None):
    """The file checks before any net loads or any worker starts: input, output plan, and a container that
    can carry a C2PA manifest (embedded, or the .c2pa sidecar)."""
    from ghostrt.runtime.io import c2pa_manifest, video_io, video_writer

    info = video_io.probe(job.target)
    plan = video_writer.plan_output(job.output, info, codec)
    c2pa_manifest.sign_mode(plan.path)
    return info, plan


def _job_provenance(base, job: Job, generators) -> object:
    """The run's provenance for this output: its target as the manifest's parent, and the generator's backend
    and precision as the workers ran it (several differing workers are all named)."""
    from dataclasses import replace

    found = sorted({g for g in generators if g})
    prov = replace(base, target=job.target)
    if not found:
        return prov
    return prov.for_generator(",".join(dict.fromkeys(b for b, _ in found)),
                              ",".join(dict.fromkeys(p for _, p in found)))


def _one_process(job: Job, spec, opts: RenderOptions, cache: dict, progress: _Progress, base) -> JobResult:
    from ghostrt.runtime.loops import video_loop

    _check_output(job, opts.codec)
    loaded = cache.get(spec.key)
    if loaded is None:
        loaded = cache[spec.key] = spec.load()
    stream = loaded.stream(0)
    try:
        summary = video_loop.swap_video(job.target, job.output, _Counting(stream, progress), batch=opts.batch,
                                        codec=opts.codec, crf=opts.crf, label=loaded.label, progress=False,
                                        log=sys.stderr, provenance=_job_provenance(
                                            base, job, [getattr(loaded, "generator", None)]))
    finally:
        getattr(stream, "close", lambda: None)()
    return JobResult(job, "done", frames=summary["frames"], segments=1,
                     standin=tuple(getattr(loaded, "standin", ())))


def _segmented(job: Job, spec, opts: RenderOptions, pool, progress: _Progress, base) -> JobResult:
    info, plan = _check_output(job, opts.codec)
    if plan.codec not in segments.STITCHABLE_CODECS:
        raise GhostError(f"{job.output}: segments are stitched as H.264; {plan.codec} output renders in one "
                         "process (drop --ray, or use .mp4/.mkv/.mov)")
    found = segments.scan(info)
    parts = segments.plan_segments(found, opts.segment_seconds, opts.detect_every)
    marks = base.marks_only()
    tasks = [SegmentTask(0, info, found, seg, spec, job.output.suffix, opts.crf, opts.batch, marks=marks)
             for seg in parts]
    before = pool.resubmitted
    encoded = pool.run(tasks, on_done=lambda r: progress.add(r.frames))
    label = next((e.label for e in encoded if e.label), None)
    prov = _job_provenance(base, job, [e.generator for e in encoded])
    frames = segments.stitch(job.output, info, encoded, crf=opts.crf, label=label, provenance=prov)
    standin = tuple(sorted({name for e in encoded for name in e.standin}))
    return JobResult(job, "done", frames=frames, segments=len(parts), retries=pool.resubmitted - before,
                     standin=standin)


def render_jobs(jobs: list[Job], make_spec, opts: RenderOptions, pool=None, progress: bool = True,
                log=print, provenance=None) -> list[JobResult]:
    """Run every job; `make_spec(job)` is the processor recipe, `pool` None renders in this process.
    `provenance` (runtime.io.provenance.Provenance, its signer already checked): what every output carries;
    None resolves the default signer ($GHOSTRT_SIGN_CERT/KEY, else the local test CA), so no output of a
    render goes unsigned or unmarked."""
    if provenance is None:
        from ghostrt.runtime.io import provenance as provenance_io

        provenance = provenance_io.for_output(log=log)
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
                    result = _one_process(job, spec, o, cache, bar, provenance)
                else:
                    result = _segmented(job, spec, o, pool, bar, provenance)
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
