"""`ghostrt render`: many videos in one run (resumable, past failures, one summary), and with --ray one long
video split into keyframe segments over Ray workers (ghostrt/render/). Without --ray it is `swap video` in a
loop, in this process."""

import sys
from pathlib import Path

from ghostrt.errors import GhostError


def register(subparsers) -> None:
    from ghostrt.cli.swap import _add_common
    from ghostrt.render.driver import DEFAULT_SEGMENT_SECONDS

    p = subparsers.add_parser("render", help="render many videos (resumable), or split long ones over Ray workers")
    _add_common(p)
    for action in p._actions:                 # the jobs file may carry each job's sources
        if action.dest == "source":
            action.required, action.default = False, []
    p.add_argument("--target", action="append", type=Path, default=[],
                   help="a video or a folder of videos (repeatable)")
    p.add_argument("--output-dir", type=Path, default=None, help="each output is OUT/<the target's file name>")
    p.add_argument("--output", type=Path, default=None, help="with one --target: the output file")
    p.add_argument("--jobs", type=Path, default=None,
                   help="jobs file: JSON lines or TOML [[job]] tables with source, target, output and options")
    p.add_argument("--batch", type=int, default=8, help="frames per batch (default 8)")
    p.add_argument("--codec", default=None, help="video encoder (default: what the extension implies)")
    p.add_argument("--crf", type=int, default=18, help="x264 quality, 0 = lossless … 51 (default 18)")
    p.add_argument("--detect-every", type=int, default=1, help="run the detector every K frames (default 1)")
    p.add_argument("--ray", metavar="auto|ADDRESS", default=None,
                   help="split each video into keyframe segments rendered by Ray workers: auto starts a local "
                        "Ray here; ADDRESS joins a cluster (pip install 'ghostrt[cluster]')")
    p.add_argument("--workers", type=int, default=None,
                   help="Ray workers (default: one per GPU, else 2 CPU workers)")
    p.add_argument("--segment-seconds", type=float, default=DEFAULT_SEGMENT_SECONDS,
                   help=f"segment length with --ray, cut at keyframes (default {DEFAULT_SEGMENT_SECONDS:g})")
    p.add_argument("--retries", type=int, default=2, help="times a lost segment is resubmitted (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run_render)


def _check(args) -> None:
    if args.batch < 1:
        raise GhostError(f"--batch {args.batch}: must be at least 1")
    if not 0 <= args.crf <= 51:
        raise GhostError(f"--crf {args.crf}: x264 quality runs from 0 (lossless) to 51")
    if args.detect_every < 1:
        raise GhostError(f"--detect-every {args.detect_every}: must be at least 1")
    if args.segment_seconds <= 0:
        raise GhostError(f"--segment-seconds {args.segment_seconds}: must be above 0")
    if args.workers is not None and args.workers < 1:
        raise GhostError(f"--workers {args.workers}: must be at least 1")
    if not args.target and args.jobs is None:
        raise GhostError("give --target (videos or folders) with --output-dir, or --jobs FILE")


def make_spec_for(args):
    from ghostrt.render.workers import SwapSpec

    load = (("backend", args.backend), ("precision", args.precision), ("weights", args.weights_dir),
            ("engines", str(args.engines_dir)), ("detector", args.detector), ("num_blocks", args.num_blocks),
            ("threads", args.threads), ("graph_stages", bool(args.graph_stages)))

    def make_spec(job):
        o = job.options
        if not job.sources:
            raise GhostError(f"{job.target}: no --source photo for this job")
        for photo in job.sources + job.target_faces:
            if not Path(photo).is_file():
                raise GhostError(f"{photo}: source photo does not exist")
        return SwapSpec(tuple(str(p) for p in job.sources), tuple(str(p) for p in job.target_faces),
                        faces=o.get("faces", args.faces), similarity=float(o.get("similarity", args.similarity)),
                        batch=int(o.get("batch", args.batch)), detect_every=int(o.get("detect_every", args.detect_every)),
                        load_options=load)
    return make_spec


def make_pool(args):
    if args.ray is None:
        return None
    from ghostrt.render.workers import RayPool

    return RayPool(address=args.ray, workers=args.workers, cpus_per_worker=max(1, args.threads or 1),
                   retries=args.retries, log=lambda line: print(line, file=sys.stderr))


def _first_spec(todo, make_spec):
    """The recipe the workers load as they start (so a node that cannot run it says so before any work)."""
    from ghostrt.render.jobs import is_complete

    for job in todo:
        if not is_complete(job):
            try:
                return make_spec(job)
            except GhostError:
                continue
    return None


def run_render(args) -> int:
    from ghostrt.render import driver, jobs
    from ghostrt.runtime.io import provenance

    _check(args)
    prov = provenance.from_args(args)       # a bad signing key fails the run before any job, net or worker
    if args.jobs is not None:
        todo = jobs.load_jobs_file(args.jobs, args.source, args.target_face)
    else:
        todo = jobs.jobs_from_targets(args.target, args.source, args.target_face, args.output, args.output_dir)
    opts = driver.RenderOptions(crf=args.crf, batch=args.batch, codec=args.codec, detect_every=args.detect_every,
                                segment_seconds=args.segment_seconds)
    pool = make_pool(args)
    make_spec = make_spec_for(args)
    try:
        if pool is not None:
            pool.start(_first_spec(todo, make_spec))
            print(f"ghostrt render: Ray up with {len(pool._actors)} worker(s) in {pool.started_seconds:.1f} s",
                  file=sys.stderr)
        results = driver.render_jobs(todo, make_spec, opts, pool=pool, progress=not args.no_progress,
                                     provenance=prov)
    finally:
        if pool is not None:
            pool.close()
    standin = sorted({name for r in results for name in r.standin})
    if standin:
        from ghostrt.cli.swap import STANDIN_BANNER
        print(f"{STANDIN_BANNER} ({', '.join(standin)} untrained; put the official files in the weights folder)")
    print(jobs.summary_table(results))
    failed = [r for r in results if r.status == "failed"]
    retried = sum(r.retries for r in results)
    print(f"ghostrt render: {len(results) - len(failed)} of {len(results)} jobs complete"
          + (f", {len(failed)} failed" if failed else "") + (f"; {retried} segment(s) retried" if retried else ""))
    return 1 if failed else 0
