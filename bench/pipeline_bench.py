"""`ghostrt bench`'s main job: ghostrt against the GHOST-style reference, stage by stage, on the same
weights and frames.

Both pipelines swap Grace Hopper (matplotlib's sample photo) onto the astronaut (scikit-image), placed in a
video-sized frame (default 1280×720, because the reference blends the whole frame and that cost grows with
it). As GHOST does in a video without a target photo, the first frame's face is the target: every frame is
detected, aligned, embedded and matched before the swap. Modes:
- image: ghostrt's `swap image` path on one frame;
- webcam (--batch 1) and video (--batch B > 1): B frames per iteration; ghostrt runs each stage once over the
  batch, the reference goes frame by frame with G batched as GHOST batches it;
- file (when ghostrt.runtime.loops.video_loop exists): decode → swap → encode of an H.264 clip of the bench frames at
  the largest batch, so decode and encode are measured too.

The defaults finish in a few minutes on a 2-core CPU: the 2-block generator (GHOST's main model, whose
stand-in `ghostrt weights` writes), --frames 2, --batch 1,2, one warm-up iteration per mode. Use more frames
on a real machine (e.g. --frames 50 --batch 1,8). torch is imported only for the reference (not at all with
--skip-reference).
"""

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ghostrt.loading import USED_MODELS

STANDIN_BANNER = "!! STAND-IN (untrained) weights: timings are real, swaps are not"


# ------------------------------------------------------------------------------------------------- inputs

def bench_inputs(frame_size: tuple[int, int], count: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """(source photo RGB, `count` target frames): the astronaut scaled into a W×H frame (reflected border),
    each frame shifted a few pixels from the last so no two are identical."""
    import cv2
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        source = np.asarray(im.convert("RGB"))
    astronaut = skimage.data.astronaut()
    width, height = frame_size
    side = min(width, height)
    scaled = cv2.resize(astronaut, (side, side), interpolation=cv2.INTER_AREA if side < 512 else cv2.INTER_LINEAR)
    left, top = (width - side) // 2, (height - side) // 2
    base = cv2.copyMakeBorder(scaled, top, height - side - top, left, width - side - left, cv2.BORDER_REFLECT)
    frames = [np.ascontiguousarray(np.roll(base, (2 * i, 3 * i), axis=(0, 1))) for i in range(count)]
    return source, frames


# ---------------------------------------------------------------------------------------------- pipelines

@dataclass
class Pipelines:
    nets: object                 # ghostrt.runtime.swap.image_swapper.Nets
    backends: dict               # model -> what ran it (executor choice reason)
    executors: dict              # model -> "<backend> <precision>" that really ran
    reference: object | None     # ghostrt.export.reference_pipeline.ReferencePipeline
    detector_kind: str
    weights: dict                # folder, num_blocks, standin, standin_models, kind


def load_pipelines(args, log=print) -> Pipelines:
    """ghostrt's nets exactly as `ghostrt swap` makes them, and the reference on the same weight files."""
    from ghostrt.loading import build_nets, resolve_onnx

    onnx, kind, _, weights = resolve_onnx(args.weights_dir, args.engines_dir, args.detector, args.num_blocks, log)
    nets, choices = build_nets(onnx, kind, args.backend, args.precision, args.engines_dir, args.threads)
    described = describe_weights(weights, kind, args.num_blocks)
    reference = None
    if not args.skip_reference:
        from ghostrt.export.reference_pipeline import load_reference

        log("loading the GHOST-style reference (PyTorch eager) on the same weights")
        reference = load_reference(weights, kind, retinaface_onnx=onnx["detector"])
    return Pipelines(nets, {m: c.reason for m, c in choices.items()},
                     {m: f"{c.backend} {c.precision}" for m, c in choices.items()}, reference, kind, described)


def describe_weights(weights, detector_kind: str, num_blocks: int) -> dict:
    """What the JSON says about the weights: stand-in per used net (the RetinaFace detector is always real)."""
    used = USED_MODELS + (("detector",) if detector_kind == "scrfd" else ())
    standin = [m for m in used if m in weights.standin_models]
    kind = "stand-in" if len(standin) == len(used) else ("partly stand-in" if standin else "official")
    return {"folder": str(weights.folder), "num_blocks": num_blocks, "standin": bool(standin),
            "standin_models": standin, "kind": kind}


# -------------------------------------------------------------------------------------------------- timing

def reference_step(reference, frames, sources, targets):
    def step(timer) -> int:
        return sum(len(r.swapped) for r in reference.swap_frames(frames, sources, targets, timer))
    return step


def collect(pipes: Pipelines, source: np.ndarray, frames: list[np.ndarray], batches: list[int], frames_per_mode: int,
            warmup: int, log=print) -> list[dict]:
    """Time image mode and every batch size for ghostrt, and the reference beside it on the same frames."""
    from ghostrt.bench import stage_bench as bench
    from ghostrt.runtime.swap.image_swapper import ImageSwapper

    swapper = ImageSwapper(pipes.nets)
    sources = swapper.embed_photos([(Path("grace_hopper.jpg"), source)], "--source")
    targets = swapper.embed_photos([(Path("frame 0"), frames[0])], "first-frame")
    ref_sources = ref_targets = None
    if pipes.reference is not None:
        ref_sources = pipes.reference.embed_photo(source)[None]
        ref_targets = pipes.reference.embed_photo(frames[0])[None]
    plans = [("image", 1, frames_per_mode)] + [("webcam" if b == 1 else "video", b,
                                                 max(1, math.ceil(frames_per_mode / b))) for b in batches]
    runs = []
    for mode, batch, iterations in plans:
        chunk = frames[:batch]
        if mode == "image":
            step = bench.ghostrt_image_step(swapper, chunk[0], sources, targets)
        else:
            step = bench.ghostrt_batch_step(pipes.nets, chunk, sources, targets)
        log(f"timing ghostrt   {mode:<6} batch {batch}: {iterations} iteration(s) + {warmup} warm-up")
        runs.append(bench.run_entry("ghostrt", mode, batch, bench.time_runs(step, iterations, warmup)))
        if pipes.reference is not None:
            log(f"timing reference {mode:<6} batch {batch}: {iterations} iteration(s) + {warmup} warm-up")
            step = reference_step(pipes.reference, chunk, ref_sources, ref_targets)
            runs.append(bench.run_entry("reference", mode, batch, bench.time_runs(step, iterations, warmup)))
    theirs = (ref_sources, ref_targets) if pipes.reference is not None else None
    runs += time_video_file(pipes, frames[:max(frames_per_mode, max(batches))], max(batches),
                            (sources, targets), theirs, log)
    return runs


def time_video_file(pipes: Pipelines, frames, batch: int, ours, theirs, log=print) -> list[dict]:
    """File mode: decode → swap → encode over a clip of the bench frames, once per pipeline."""
    import tempfile

    from ghostrt.bench import stage_bench as bench
    from ghostrt.runtime.swap.timer import StageTimer

    runs = []
    with tempfile.TemporaryDirectory(prefix="ghostrt-bench-") as tmp:
        clip = bench.write_clip(frames, Path(tmp) / "clip.mp4")
        log(f"timing ghostrt   file   batch {batch}: the video loop over a {len(frames)}-frame clip")
        samples = bench.time_ghostrt_video(pipes.nets, clip, Path(tmp) / "ghostrt.mp4", *ours, batch)
        runs.append(bench.run_entry("ghostrt", "file", batch, samples))
        if theirs is not None:
            log(f"timing reference file   batch {batch}: cv2 read-all → swap → cv2 write")
            timer = StageTimer()
            start = time.perf_counter()
            count, faces = pipes.reference.swap_video_file(clip, Path(tmp) / "reference.mp4", *theirs, timer)
            total = (time.perf_counter() - start) * 1000.0
            samples = {"stage_ms": {k: [v * 1000.0] for k, v in timer.seconds.items()}, "total_ms": [total],
                       "faces": [faces], "frames": count}
            runs.append(bench.run_entry("reference", "file", batch, samples))
    return runs


def run(args, batches: list[int], frame_size: tuple[int, int]) -> int:
    """The whole bench from parsed options (the CLI checks them): time, then write the JSON and chart."""
    from ghostrt.bench import stage_bench as bench

    args.out_dir.mkdir(parents=True, exist_ok=True)
    source, frames = bench_inputs(frame_size, max(max(batches), args.frames))
    pipes = load_pipelines(args)
    if pipes.weights["standin"]:
        print(f"{STANDIN_BANNER} ({', '.join(pipes.weights['standin_models'])})")
    floor = None
    if not args.no_floor:     # first: after the reference, torch's idle OpenMP threads still spin for a while
        from ghostrt.bench.cpu_floor import floor_report

        print("measuring this CPU's multiply-add throughput for the per-face floor")
        floor = floor_report(args.engines_dir / "onnx", detector="detector" if pipes.detector_kind == "scrfd"
                             else "retinaface", threads=args.threads, seconds=3.0)
    runs = collect(pipes, source, frames, batches, args.frames, args.warmup)
    from ghostrt.runtime.backends.blas_threads import blas_threads
    config = {"backend": args.backend, "precision": args.precision, "batches": batches, "frames": args.frames,
              "warmup": args.warmup, "frame_size": list(frame_size), "detector": pipes.detector_kind,
              "weights": pipes.weights, "ghostrt_backends": pipes.backends,
              "ghostrt_executors": pipes.executors, "ort_threads": args.threads or "all",
              "blas_threads": blas_threads(),
              "reference": None if pipes.reference is None else reference_config(pipes.reference),
              "inputs": "source grace_hopper.jpg (matplotlib), target skimage astronaut in each frame",
              "video_file": "file mode: H.264 clip of the bench frames; ghostrt video loop (PyAV, threads) vs the "
                            "reference's cv2 read-all / mp4v write (its ffmpeg pass untimed)"}
    report = bench.build_report(runs, config, floor=floor)
    from ghostrt.bench.watermark_bench import watermark_line, watermark_report

    report["watermark"] = watermark_report(runs, frame_size, args.frames, args.warmup)   # a stage of its own
    json_path, png_path = bench.output_paths(report, args.out_dir)
    report["chart"] = png_path.name
    bench.write_chart(report, png_path)
    bench.write_json(report, json_path)
    print(bench.format_table(report))
    print(watermark_line(report["watermark"]))
    print(f"wrote {json_path} and {png_path}")
    if pipes.weights["standin"]:
        print(STANDIN_BANNER)
    return 0



def reference_config(reference) -> dict:
    nets = reference.nets
    return {"device": str(nets.device), "generator_dtype": "fp16" if nets.g_half else "fp32",
            "video_batch": reference.video_batch, "torch_threads": _torch_threads()}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()
