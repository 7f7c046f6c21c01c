"""The torch-free half of `ghostrt bench`: time ghostrt's own stages, summarise any pipeline's timings, and write
the results (JSON + PNG chart) with the machine they were measured on.

Timings are per stage and per iteration (p50 / p99 over iterations), so a stage that is cheap on average but
stalls now and then shows it. Every figure is also given per face, because the two pipelines compared batch
differently: ghostrt runs each stage once for all frames of a batch, the GHOST reference frame by frame.
"""

import json
import os
import platform
import re
import resource
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ghostrt.atomic import atomic_path
from ghostrt.runtime.backends import host
from ghostrt.runtime.swap.image_swapper import ImageSwapper
from ghostrt.runtime.swap.core import Nets
from ghostrt.runtime.swap.timer import StageTimer

STAGES = ("decode", "detect", "align", "embed", "match", "swap", "landmarks", "mask", "blend", "encode")
MODES = ("image", "webcam", "video", "file")
VERSIONED = (("ghostrt", "ghostrt"), ("torch", "torch"), ("onnxruntime", "onnxruntime-gpu"),
             ("onnxruntime", "onnxruntime"), ("numpy", "numpy"), ("av", "av"), ("opencv", "opencv-python-headless"),
             ("tensorrt_rtx", "tensorrt-rtx-cu13-bindings"), ("tensorrt", "tensorrt"))


# --------------------------------------------------------------------------------------- ghostrt, batched

def video_swapper(nets: Nets, sources: np.ndarray, targets: np.ndarray, batch: int, timer: StageTimer):
    """ghostrt's own video stage (runtime.video_swapper), as `ghostrt swap video` runs it: detection every
    frame, smoothing off so a batch comes out at once (smoothing only shifts frames by two)."""
    from ghostrt.runtime.swap.video_swapper import VideoSwapper

    return VideoSwapper(nets, sources, targets, batch=batch, detect_every=1, smoothing=False, timer=timer)


def ghostrt_image_step(swapper: ImageSwapper, frame: np.ndarray, sources: np.ndarray, targets: np.ndarray):
    """One image-mode swap as `ghostrt swap image` does it, for time_runs: returns faces swapped."""
    def step(timer: StageTimer) -> int:
        swapper.timer = timer
        return len(swapper.swap(frame, sources, targets).swapped)
    return step


def ghostrt_batch_step(nets: Nets, frames: Sequence[np.ndarray], sources: np.ndarray, targets: np.ndarray):
    def step(timer: StageTimer) -> int:
        swapper = video_swapper(nets, sources, targets, len(frames), timer)
        swapper.process_batch(list(frames))
        swapper.flush()
        return swapper.faces_swapped
    return step


def write_clip(frames: Sequence[np.ndarray], path, fps: int = 25) -> Path:
    """An H.264 clip of the bench frames: the input of the video-file mode."""
    import av

    path = Path(path)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def time_ghostrt_video(nets: Nets, clip, output, sources: np.ndarray, targets: np.ndarray, batch: int) -> dict:
    """One pass of ghostrt's video loop over `clip` (decode and encode threads overlap the swap). The stage
    times are busy times; the total is the wall time of the whole pass."""
    import io

    from ghostrt.runtime.loops.video_loop import swap_video

    timer = StageTimer()
    process = video_swapper(nets, sources, targets, batch, timer)
    summary = swap_video(clip, output, process, batch=batch, progress=False, log=io.StringIO())
    stage_ms = {"decode": [summary["stages"]["decode"] * 1000.0]}
    stage_ms.update({name: [seconds * 1000.0] for name, seconds in timer.seconds.items()})
    stage_ms["encode"] = [summary["stages"]["encode"] * 1000.0]
    return {"stage_ms": stage_ms, "total_ms": [summary["seconds"] * 1000.0], "faces": [process.faces_swapped],
            "frames": summary["frames"]}


# ------------------------------------------------------------------------------------------------- timing

def time_runs(step: Callable[[StageTimer], int], iterations: int, warmup: int = 1) -> dict:
    """Run `step` warmup + iterations times; keep per-iteration stage seconds, totals and faces swapped."""
    for _ in range(warmup):
        step(StageTimer())
    stage_ms: dict[str, list[float]] = {}
    totals, faces = [], []
    for _ in range(iterations):
        timer = StageTimer()
        start = time.perf_counter()
        faces.append(int(step(timer)))
        totals.append((time.perf_counter() - start) * 1000.0)
        for name, seconds in timer.seconds.items():
            stage_ms.setdefault(name, []).append(seconds * 1000.0)
    return {"stage_ms": stage_ms, "total_ms": totals, "faces": faces}


def summarize(values_ms: Sequence[float]) -> dict:
    v = np.asarray(values_ms, np.float64)
    return {"p50_ms": float(np.percentile(v, 50)), "p99_ms": float(np.percentile(v, 99)),
            "mean_ms": float(v.mean()), "n": int(v.size)}


def run_entry(pipeline: str, mode: str, batch: int, samples: dict) -> dict:
    """One row of the report: stage and total summaries, per-face latency and throughput."""
    frames = int(samples.get("frames", batch))
    faces = max(int(np.median(samples["faces"])), 0)
    total = summarize(samples["total_ms"])
    stages = {name: summarize(values) for name, values in samples["stage_ms"].items()}
    per_face = total["p50_ms"] / faces if faces else None
    return {
        "pipeline": pipeline, "mode": mode, "batch": int(batch), "frames_per_iteration": frames,
        "faces_per_iteration": faces, "iterations": len(samples["total_ms"]),
        "stages": stages, "total": total,
        "per_face_ms": per_face,
        "faces_per_s": (sum(samples["faces"]) / (sum(samples["total_ms"]) / 1000.0)) if faces else 0.0,
        "frames_per_s": frames * len(samples["total_ms"]) / (sum(samples["total_ms"]) / 1000.0),
        "peak_rss_mb_so_far": peak_rss_mb(),
    }


def ratios(runs: Sequence[dict]) -> list[dict]:
    """ghostrt / reference per-face latency for every (mode, batch) both pipelines ran; < 1: ghostrt faster."""
    by_key = {(r["mode"], r["batch"], r["pipeline"]): r for r in runs}
    out = []
    for (mode, batch, pipeline), run in by_key.items():
        ref = by_key.get((mode, batch, "reference"))
        if pipeline != "ghostrt" or ref is None or not run["per_face_ms"] or not ref["per_face_ms"]:
            continue
        out.append({"mode": mode, "batch": batch, "ghostrt_per_face_ms": run["per_face_ms"],
                    "reference_per_face_ms": ref["per_face_ms"],
                    "ratio": run["per_face_ms"] / ref["per_face_ms"]})
    return out


# ------------------------------------------------------------------------------------------------ machine

def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if platform.system() == "Darwin" else peak / 1024.0


def _ram_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3, 1)
    except (ValueError, OSError, AttributeError):
        return None


def versions() -> dict:
    """Installed versions, read from package metadata (importing torch here would break the runtime rule)."""
    found = {}
    for key, dist in VERSIONED:
        if key not in found and (version := host.package_version(dist)) is not None:
            found[key] = version
    return found


def machine_info() -> dict:
    from ghostrt.runtime.backends.trt_backend import probe_gpu

    gpu, how = probe_gpu()
    return {**host.machine_info(), "ram_gb": _ram_gb(),
            "gpu": None if gpu is None else {"name": gpu.name, "compute_capability": gpu.compute_capability,
                                             "driver": gpu.driver},
            "gpu_probe": how, "versions": versions()}


def machine_slug(machine: dict) -> str:
    """A file-name-safe name for the machine: its GPU, else its CPU, and the core count."""
    name = machine["gpu"]["name"] if machine.get("gpu") else machine["cpu"]
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "machine"
    return f"{slug}-{machine['cores']}c"


# ------------------------------------------------------------------------------------------------- output

def format_table(report: dict) -> str:
    """Per-stage p50 in ms per iteration, then totals, per-face latency and the ghostrt/reference ratio."""
    stages = [s for s in STAGES if any(s in r["stages"] for r in report["runs"])]
    head = f"{'mode':<7}{'batch':>5}  {'pipeline':<10}" + "".join(f"{s[:9]:>10}" for s in stages)
    head += f"{'total p50':>11}{'p99':>9}{'ms/face':>9}{'faces/s':>9}"
    title = "per-stage p50 ms per iteration (image/webcam/video: `batch` frames; file: the whole clip)"
    lines = [title, head, "-" * len(head)]
    for r in report["runs"]:
        row = f"{r['mode']:<7}{r['batch']:>5}  {r['pipeline']:<10}"
        row += "".join(f"{r['stages'][s]['p50_ms']:>10.1f}" if s in r["stages"] else f"{'-':>10}" for s in stages)
        per_face = f"{r['per_face_ms']:.1f}" if r["per_face_ms"] else "-"
        row += f"{r['total']['p50_ms']:>11.1f}{r['total']['p99_ms']:>9.1f}{per_face:>9}{r['faces_per_s']:>9.2f}"
        lines.append(row)
    for q in report["ratios"]:
        verdict = (f"ghostrt {1.0 / q['ratio']:.2f}× faster" if q["ratio"] < 1.0
                   else f"ghostrt {q['ratio']:.2f}× slower")
        lines.append(f"ghostrt/reference per face, {q['mode']} batch {q['batch']}: {q['ratio']:.3f} "
                     f"({q['ghostrt_per_face_ms']:.1f} vs {q['reference_per_face_ms']:.1f} ms; {verdict})")
    lines.append(f"peak RSS {report['peak_rss_mb']:.0f} MB")
    if report.get("floor"):
        from ghostrt.bench.cpu_floor import format_floor

        lines.append(format_floor(report["floor"]))
        for q in report.get("floor_ratios", []):
            lines.append(f"ghostrt per face vs the {q['precision']} floor, {q['mode']} batch {q['batch']}: "
                         f"{q['ghostrt_per_face_ms']:.1f} vs {q['floor_ms']:.1f} ms ({q['times_floor']:.2f}× the floor)")
    return "\n".join(lines)


def write_json(report: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return path


def write_chart(report: dict, path) -> Path:
    """One panel per (mode, batch): p50 ms per face of every stage, ghostrt beside the reference."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    order = {mode: i for i, mode in enumerate(MODES)}
    keys = sorted({(r["mode"], r["batch"]) for r in report["runs"]}, key=lambda k: (order.get(k[0], 9), k[1]))
    fig = Figure(figsize=(4.2 * len(keys) + 1, 4.2))
    FigureCanvasAgg(fig)
    for n, (mode, batch) in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), n + 1)
        runs = [r for r in report["runs"] if (r["mode"], r["batch"]) == (mode, batch)]
        stages = [s for s in STAGES if any(s in r["stages"] for r in runs)]
        y = np.arange(len(stages))
        height = 0.8 / max(len(runs), 1)
        for k, run in enumerate(runs):
            faces = max(run["faces_per_iteration"], 1)
            values = [run["stages"].get(s, {"p50_ms": 0.0})["p50_ms"] / faces for s in stages]
            ax.barh(y + k * height, values, height, label=run["pipeline"])
        ax.set_yticks(y + height * (len(runs) - 1) / 2, stages)
        ax.invert_yaxis()
        ax.set_xlabel("p50 ms per face")
        ax.set_title(f"{mode}, batch {batch}")
        ax.legend(fontsize=8)
    weights = report["config"]["weights"]
    fig.suptitle(f"ghostrt bench — {report['machine']['cpu']}"
                 + (f" + {report['machine']['gpu']['name']}" if report["machine"].get("gpu") else "")
                 + ("  [STAND-IN weights]" if weights["standin"] else ""), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png", dpi=100)
    return path


def executor_tag(config: dict) -> str:
    """'openvino-int8' for the generator's executor: runs of different backends on one day keep their files."""
    executor = (config.get("ghostrt_executors") or {}).get("generator", "")
    return re.sub(r"[^a-z0-9]+", "-", executor.lower()).strip("-")


def output_paths(report: dict, out_dir) -> tuple[Path, Path]:
    day = report["machine"]["date"][:10]
    tag = executor_tag(report["config"])
    stem = f"{machine_slug(report['machine'])}-{day}" + (f"-{tag}" if tag else "")
    return Path(out_dir) / f"{stem}.json", Path(out_dir) / f"{stem}.png"


def floor_ratios(report: dict) -> list[dict]:
    """ghostrt's per-face time over the CPU floor of each precision: how far from the hardware it runs."""
    floors = (report.get("floor") or {}).get("floor", {})
    return [{"mode": r["mode"], "batch": r["batch"], "precision": precision, "floor_ms": f["ms_per_face"],
             "ghostrt_per_face_ms": r["per_face_ms"], "times_floor": r["per_face_ms"] / f["ms_per_face"]}
            for r in report["runs"] if r["pipeline"] == "ghostrt" and r["per_face_ms"]
            for precision, f in floors.items()]


def build_report(runs: list[dict], config: dict, machine: dict | None = None, floor: dict | None = None) -> dict:
    report = {"schema": 1, "tool": "ghostrt bench", "machine": machine or machine_info(), "config": config,
              "runs": runs, "ratios": ratios(runs), "peak_rss_mb": peak_rss_mb(),
              "peak_rss_note": "one process holds both pipelines' nets; per-run values are the peak so far"}
    if floor is not None:
        report["floor"] = floor
        report["floor_ratios"] = floor_ratios(report)
    return report
