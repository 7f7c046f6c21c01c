"""`ghostrt bench --streams 1,2,4,8`: N concurrent in-process live streams through the UI's stream scheduler
(ghostrt.ui.scheduler over one loaded Swapper), with and without cross-stream batching, so the JSON says what
sharing one device between many webcams costs and what batching them buys.

Each synthetic stream is a thread that offers 720p frames (the astronaut, a real face, shifted a little each
frame) at a camera rate for a fixed time, exactly as a WebRTC session's receive loop would submit them; the
scheduler drops stale frames per stream. Recorded per N and mode: per-stream fps, p50/p99 capture->output
latency, frames dropped, mean batch, and aggregate faces/s (each frame holds one face), plus device and backend.
"""

import threading
import time
from datetime import date
from pathlib import Path

import numpy as np

STANDIN_BANNER = "!! STAND-IN (untrained) weights: timings only, not a real face swap"


def parse_counts(text: str) -> list[int]:
    from ghostrt.errors import GhostError

    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise GhostError(f"--streams {text}: give comma-separated whole numbers, e.g. 1,2,4,8") from None
    if not counts or counts[0] < 1:
        raise GhostError(f"--streams {text}: every stream count must be at least 1")
    return counts


def feed(scheduler, sid: str, frames: list, seconds: float, camera_fps: float, stop: threading.Event) -> None:
    """One synthetic camera: submit a frame every 1/camera_fps seconds until `seconds` pass."""
    period = 1.0 / camera_fps
    start = time.perf_counter()
    i = 0
    while not stop.is_set():
        due = start + i * period
        now = time.perf_counter()
        if now - start >= seconds:
            break
        if due > now:
            time.sleep(due - now)
        scheduler.submit(sid, frames[i % len(frames)])
        i += 1


def measure(runner, config_for, frames: list, count: int, batching: bool, seconds: float, camera_fps: float,
            max_batch: int = 8, deadline: float = 0.004) -> dict:
    """`count` streams at once for `seconds`; the scheduler's numbers per stream and in aggregate."""
    from ghostrt.ui.scheduler import StreamScheduler

    stop = threading.Event()
    with StreamScheduler(runner, max_batch=max_batch, deadline=deadline, batching=batching) as sched:
        sids = [f"s{k}" for k in range(count)]
        for sid in sids:
            sched.open(sid, config_for(sid))
        feeders = [threading.Thread(target=feed, args=(sched, sid, frames, seconds, camera_fps, stop), daemon=True)
                   for sid in sids]
        t0 = time.perf_counter()
        for t in feeders:
            t.start()
        for t in feeders:
            t.join(seconds + 30)
        stop.set()
        time.sleep(0.05)
        wall = time.perf_counter() - t0
        stats = sched.stats()
    streams = stats["streams"]
    out_total = sum(s["frames_out"] for s in streams.values())
    fps = [s["frames_out"] / wall for s in streams.values()]
    return {"streams": count, "batching": batching, "seconds": round(wall, 3),
            "per_stream": streams,
            "per_stream_fps_mean": round(float(np.mean(fps)), 2),
            "per_stream_fps_min": round(float(np.min(fps)), 2),
            "p50_ms": _mean_of(streams, "p50_ms"), "p99_ms": _max_of(streams, "p99_ms"),
            "dropped": sum(s["dropped"] for s in streams.values()),
            "errors": sum(s["errors"] for s in streams.values()),
            "mean_batch": stats["mean_batch"],
            "faces_per_s": round(out_total / wall, 2)}


def _mean_of(streams: dict, key: str):
    vals = [s[key] for s in streams.values() if s[key] is not None]
    return round(float(np.mean(vals)), 2) if vals else None


def _max_of(streams: dict, key: str):
    vals = [s[key] for s in streams.values() if s[key] is not None]
    return round(float(np.max(vals)), 2) if vals else None


def collect(runner, config_for, frames, counts, seconds, camera_fps, log=print) -> list[dict]:
    runs = []
    for count in counts:
        for batching in (True, False):
            run = measure(runner, config_for, frames, count, batching, seconds, camera_fps)
            log(f"streams {count:>2} batching {'on ' if batching else 'off'}: "
                f"{run['per_stream_fps_mean']:.1f} fps/stream, p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, "
                f"{run['faces_per_s']:.1f} faces/s, mean batch {run['mean_batch']}")
            runs.append(run)
    return runs


def write_chart(report: dict, path) -> Path:
    """Left: aggregate faces/s against N; right: p99 latency against N; batching on vs off."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ghostrt.atomic import atomic_path

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    panels = (("faces_per_s", "aggregate faces/s"), ("per_stream_fps_mean", "fps per stream"),
              ("p99_ms", "p99 latency ms"))
    for n, (key, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), n + 1)
        for batching in (True, False):
            runs = [r for r in report["runs"] if r["batching"] is batching]
            ax.plot([r["streams"] for r in runs], [r[key] or 0 for r in runs], marker="o",
                    label="cross-stream batching" if batching else "one call per stream")
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel(label)
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=7)
    cfg = report["config"]
    fig.suptitle(f"ghostrt bench --streams — {report['machine']['cpu']}"
                 + (f" + {report['machine']['gpu']['name']}" if report["machine"].get("gpu") else "")
                 + f", {cfg['executors'].get('generator', cfg['backend'])}"
                 + ("  [STAND-IN weights]" if cfg["standin"] else ""), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png", dpi=100)
    return path


def build_report(runs, machine, config) -> dict:
    return {"kind": "streams", "date": date.today().isoformat(), "machine": machine, "config": config, "runs": runs}


def output_paths(report: dict, out_dir: Path) -> tuple[Path, Path]:
    from ghostrt.bench.stage_bench import machine_slug

    stem = f"{machine_slug(report['machine'])}-streams-{report['date']}"
    return Path(out_dir) / f"{stem}.json", Path(out_dir) / f"{stem}.png"


def run_from_args(args) -> int:
    """The CLI's entry: load the Swapper as `ghostrt ui` does, run every N both ways, write JSON and chart."""
    import ghostrt
    from ghostrt.bench.pipeline_bench import bench_inputs
    from ghostrt.bench.stage_bench import machine_info, write_json
    from ghostrt.errors import at_least_one
    from ghostrt.ui.runner import LiveConfig, SwapperRunner

    counts = parse_counts(args.streams)
    at_least_one("--threads", args.threads)
    if args.stream_seconds <= 0 or args.camera_fps <= 0:
        raise ghostrt.GhostError("--stream-seconds and --camera-fps must be above 0")
    source, frames = bench_inputs((1280, 720), 8)
    sw = ghostrt.Swapper.load(backend=args.backend, precision=args.precision, weights=args.weights_dir,
                              engines=args.engines_dir, detector=args.detector, num_blocks=args.num_blocks,
                              threads=args.threads)
    try:
        if sw.standin_models:
            print(f"{STANDIN_BANNER} ({', '.join(sw.standin_models)})")
        who = sw.identity(source)
        sw.swap(frames[0], who)                      # warm-up: first call's allocations stay out of the numbers
        runner = SwapperRunner(sw)
        runs = collect(runner, lambda sid: LiveConfig(who=who, key="bench"), frames, counts,
                       args.stream_seconds, args.camera_fps)
        described = sw.describe()
        config = {"backend": args.backend, "precision": args.precision, "frame_size": [1280, 720],
                  "stream_seconds": args.stream_seconds, "camera_fps": args.camera_fps, "counts": counts,
                  "deadline_ms": 4.0, "max_batch": 8, "threads": args.threads or "all",
                  "executors": {m: f"{d['backend']} {d['precision']}" for m, d in described.items()},
                  "standin": bool(sw.standin_models), "standin_models": list(sw.standin_models),
                  "inputs": "source grace_hopper.jpg (matplotlib), target skimage astronaut in a 1280x720 frame",
                  "faces_per_s": "frames swapped per second over all streams (one face per frame)"}
    finally:
        sw.close()
    report = build_report(runs, machine_info(), config)
    json_path, png_path = output_paths(report, args.out_dir)
    report["chart"] = png_path.name
    write_chart(report, png_path)
    write_json(report, json_path)
    print(f"wrote {json_path} and {png_path}")
    return 0
