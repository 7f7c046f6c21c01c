"""`ghostrt bench --cluster`: one clip rendered in keyframe segments by 1 and by 2 Ray workers on a local Ray in
one run; records throughput, efficiency (speed-up / workers), Ray start-up and the per-segment overhead
(split on the driver, transfer and queueing through Ray, stitch on the driver) for the README's scaling model.
It renders as `ghostrt render --ray` does, provenance included (watermark in the workers, C2PA signing in the
stitch), so the numbers are those of a real render."""

import json
import sys
import tempfile
import time
from pathlib import Path

from ghostrt.bench.stage_bench import machine_slug
from ghostrt.render import segments
from ghostrt.render.workers import RayPool, SegmentTask
from ghostrt.runtime.backends.host import machine_info
from ghostrt.runtime.io import provenance, video_io


def _overhead_per_segment(encoded: list, render_s: float) -> float:
    busy: dict[str, list[float]] = {}
    for e in encoded:
        busy.setdefault(e.worker, []).append(e.seconds)
    worker = max(busy.values(), key=sum)
    return round(max(0.0, render_s - sum(worker)) / len(worker), 4)


def _one_run(pool: RayPool, tasks: list, info, out: Path, crf: int, prov) -> dict:
    began = time.perf_counter()
    encoded = pool.run(tasks)
    render_s = time.perf_counter() - began
    began = time.perf_counter()
    frames = segments.stitch(out, info, encoded, crf=crf, label=next((e.label for e in encoded if e.label), None),
                             provenance=prov)
    stitch_s = time.perf_counter() - began
    compute = sum(e.seconds for e in encoded)
    wall = render_s + stitch_s
    return {"workers": pool.workers, "frames": frames, "segments": len(encoded), "wall_s": round(wall, 3),
            "fps": round(frames / wall, 3), "worker_compute_s": round(compute, 3), "stitch_s": round(stitch_s, 4),
            "transfer_bytes": sum(len(p[4]) for e in encoded for p in e.packets),
            # what the busiest worker's own render time does not explain, per segment it rendered: queueing,
            # object-store transfer, scheduling (an idle worker is not counted as overhead)
            "transfer_overhead_per_segment_s": _overhead_per_segment(encoded, render_s),
            "worker_load_s": round(pool.started_seconds, 3), "retries": pool.resubmitted}


def run_cluster(spec, clip: Path, out_dir: Path, segment_seconds: float = 1.0, crf: int = 18, batch: int = 8,
                workers=(1, 2), tag: str = "", log=print) -> Path:
    """Render `clip` with each worker count on one local Ray; write bench/<machine>-cluster-<date>.json."""
    import ray

    info = video_io.probe(clip)
    began = time.perf_counter()
    found = segments.scan(info)
    parts = segments.plan_segments(found, segment_seconds, getattr(spec, "detect_every", 1))
    split_s = time.perf_counter() - began
    prov = provenance.for_output(target=clip, log=log)
    tasks = [SegmentTask(0, info, found, seg, spec, ".mp4", crf, batch, marks=prov.marks_only()) for seg in parts]
    began = time.perf_counter()
    ray.init(address="local", num_cpus=max(workers), include_dashboard=False, log_to_driver=False)
    startup_s = time.perf_counter() - began
    runs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in workers:
                pool = RayPool(address="auto", workers=n, log=log)
                pool.start(spec)
                try:
                    runs.append(_one_run(pool, tasks, info, Path(tmp) / f"w{n}.mp4", crf, prov))
                finally:
                    pool.close()
                log(f"  {n} worker(s): {runs[-1]['fps']} fps over {runs[-1]['frames']} frames")
    finally:
        ray.shutdown()
    base = runs[0]["fps"] / runs[0]["workers"]
    for r in runs:
        r["speedup"] = round(r["fps"] / runs[0]["fps"], 3)
        r["efficiency"] = round(r["fps"] / (base * r["workers"]), 3)
    host = machine_info({"ray": "ray", "av": "av"})
    report = {"kind": "cluster", "machine": host, "clip": {"path": str(clip), "frames": info.frames,
              "seconds": round(float(info.duration or 0), 3) if hasattr(info, "duration") else None},
              "segment_seconds": segment_seconds, "segments": len(parts), "ray_startup_s": round(startup_s, 3),
              "split_s": round(split_s, 4), "split_per_segment_s": round(split_s / len(parts), 5),
              "runs": runs, "standin_weights": bool(getattr(spec, "standin", True))}
    stamp = str(host.get("date", time.strftime("%Y-%m-%d")))[:10]
    name = f"{machine_slug(host)}-cluster-{stamp}{tag}.json"
    out = Path(out_dir) / name
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out)
    print(f"ghostrt bench --cluster: efficiency {runs[-1]['efficiency']} with {runs[-1]['workers']} workers -> {out}",
          file=sys.stderr)
    return out


def run_from_args(args) -> int:
    """`ghostrt bench --cluster SECONDS`: a SECONDS-long 256x256 clip of the moving astronaut (bench/memory_clip),
    swapped with grace_hopper.jpg by the real Swapper in `--segment-seconds`-long segments (default 1)."""
    from ghostrt.bench.memory_bench import source_photo
    from ghostrt.bench.memory_clip import FPS, FacePattern, write_clip
    from ghostrt.errors import GhostError
    from ghostrt.render.workers import SwapSpec

    if args.cluster <= 0:
        raise GhostError(f"--cluster {args.cluster}: give the clip's length in seconds, above 0")
    load = (("backend", args.backend), ("precision", args.precision), ("weights", args.weights_dir),
            ("engines", str(args.engines_dir)), ("detector", args.detector), ("num_blocks", args.num_blocks),
            ("threads", args.threads or 1), ("graph_stages", False))
    spec = SwapSpec((str(source_photo()),), batch=4, load_options=load)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "cluster-clip.mp4"
        # a keyframe every segment's length: segments are cut only at keyframes (x264's default GOP of 250
        # frames would leave a short clip one segment, and nothing to share between workers)
        write_clip(clip, args.cluster, (256, 256), FacePattern(period_seconds=4.0, face_seconds=3.0),
                   gop=max(1, int(round(args.cluster_segment_seconds * FPS))))
        out = run_cluster(spec, clip, args.out_dir, segment_seconds=args.cluster_segment_seconds, batch=4,
                          tag=f"-{args.backend}-{args.precision}")
    print(f"wrote {out}")
    return 0
