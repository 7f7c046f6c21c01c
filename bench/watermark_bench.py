"""The invisible watermark as a bench stage of its own: its cost per 1080p frame (embed, which every written
frame pays, and decode, which `ghostrt verify` pays), set beside ghostrt's slowest CPU stage of the same bench.

Always timed on a 1920×1080 frame whatever --frame-size is, because that is the size the issue's budget names;
the comparison with the swap stages is at the bench's own frame size, recorded next to it. Webcam output embeds
on every WATERMARK_EVERY-th frame only (runtime/loops/webcam_loop.py); the per-live-frame cost is recorded too.
"""

import time

import numpy as np

FRAME_1080P = (1920, 1080)


def bench_frame(size: tuple[int, int] = FRAME_1080P) -> np.ndarray:
    """The bench's target photo (skimage astronaut) stretched to `size`: real image content, not noise."""
    import cv2
    from skimage import data

    return cv2.resize(data.astronaut(), size, interpolation=cv2.INTER_LINEAR)


def time_watermark(iterations: int, warmup: int = 1, size: tuple[int, int] = FRAME_1080P) -> dict:
    """p50/p99/mean of embed and decode on one `size` frame; the decode must find the mark it timed."""
    from ghostrt.bench.stage_bench import summarize
    from ghostrt.runtime.io import watermark
    from ghostrt.runtime.loops.webcam_loop import WATERMARK_EVERY

    frame = bench_frame(size)
    for _ in range(warmup):
        watermark.decode(watermark.embed(frame))
    embed_ms, decode_ms, found = [], [], True
    for _ in range(max(1, iterations)):
        started = time.perf_counter()
        marked = watermark.embed(frame)
        embed_ms.append((time.perf_counter() - started) * 1000.0)
        started = time.perf_counter()
        found = found and bool(watermark.decode(marked)["found"])
        decode_ms.append((time.perf_counter() - started) * 1000.0)
    embed = summarize(embed_ms)
    return {"frame_size": list(size), "stages": {"watermark": embed, "watermark_decode": summarize(decode_ms)},
            "decoded_own_mark": found, "webcam_every": WATERMARK_EVERY,
            "webcam_ms_per_frame": embed["p50_ms"] / WATERMARK_EVERY}


def slowest_cpu_stage(runs: list[dict], frame_size) -> dict | None:
    """ghostrt's slowest stage per frame (p50) over its image/webcam runs, to set the watermark beside."""
    best = None
    for run in runs:
        if run["pipeline"] != "ghostrt" or run["mode"] not in ("image", "webcam"):
            continue
        frames = max(int(run.get("frames_per_iteration", 1)), 1)
        for name, stats in run["stages"].items():
            per_frame = stats["p50_ms"] / frames
            if best is None or per_frame > best["p50_ms_per_frame"]:
                best = {"stage": name, "mode": run["mode"], "batch": run["batch"], "p50_ms_per_frame": per_frame,
                        "frame_size": list(frame_size)}
    return best


def watermark_report(runs: list[dict], frame_size, iterations: int, warmup: int) -> dict:
    report = time_watermark(iterations, warmup)
    slowest = slowest_cpu_stage(runs, frame_size)
    report["slowest_swap_stage"] = slowest
    report["slower_than_every_swap_stage"] = (None if slowest is None else
                                              report["stages"]["watermark"]["p50_ms"] > slowest["p50_ms_per_frame"])
    return report


def watermark_line(report: dict) -> str:
    w = report["stages"]["watermark"]["p50_ms"]
    d = report["stages"]["watermark_decode"]["p50_ms"]
    line = (f"watermark (1920x1080): embed p50 {w:.1f} ms, decode p50 {d:.1f} ms; webcam embeds 1 frame "
            f"in {report['webcam_every']} ({report['webcam_ms_per_frame']:.1f} ms per live frame)")
    slowest = report.get("slowest_swap_stage")
    if slowest is not None:
        line += (f"; slowest ghostrt stage {slowest['stage']} {slowest['p50_ms_per_frame']:.1f} ms/frame at "
                 f"{slowest['frame_size'][0]}x{slowest['frame_size'][1]} ({slowest['mode']})")
    return line
