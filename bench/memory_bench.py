"""`ghostrt bench --memory 60,600`: peak memory of the real `ghostrt swap video` on a 1-minute and a 10-minute
synthetic 1080p clip. Memory must not grow with the video's length: a 1080p frame is 6 MB, so a loop or a
swapper that kept every frame would need gigabytes for a few minutes of video.

Each duration gets its own clip and its own child process (`ghostrt swap video …`, started through this
module's launcher), whose peak resident set size is its own VmHWM, written by the child at exit, so the clip
making here and the other runs never mix into it. The clip is written frame by frame (never whole in memory):
the astronaut (scikit-image) drifting over a 1080p canvas in face segments that alternate with faceless ones
(frames without a face pass through unchanged), with an AAC tone track that the swap must copy.

The verdict compares the longest run's peak with the shortest's: growth in MB and in 1080p frames' worth, pass
while within MARGIN_FRAMES frames (queue fill and allocator slack differ by a few frames; a leak by hundreds).
Torch-free, like the rest of runtime/.
"""

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from ghostrt.bench.memory_clip import FPS, TONE_HZ, FacePattern, write_clip
from ghostrt.errors import GhostError

FULL_HD = (1920, 1080)
FRAME_MB_1080P = FULL_HD[0] * FULL_HD[1] * 3 / 2 ** 20
MARGIN_FRAMES = 12                 # allowed growth, in frames of the clip's size
RSS_SAMPLE_SECONDS = 5.0
WEIGHTS_LABEL = "stand-in (untrained)"
LEAK_FLAG = "--leak-every-frame"   # test-only child hook: keep every decoded frame (the verdict must fail)
# The child writes its own VmHWM here at exit. wait4's ru_maxrss is not enough: Linux folds the parent's peak
# into a child at fork/exec, so a parent that once held 1.1 GB (a test that wrote the stand-ins) made every
# child "peak" at 1.1 GB and hid a 180 MB leak.
PEAK_FLAG = "--report-peak"


@dataclass(frozen=True)
class SwapSettings:
    """What the child `swap video` runs with: chosen so 60 s + 600 s finish in ~35 min on a 2-core CPU
    (measured: see DEFAULT_SETTINGS and the JSON's `settings.reason`)."""

    pattern: FacePattern
    detect_every: int
    batch: int
    codec: str = "libx264"
    num_blocks: int = 2
    reason: str = ""


# Chosen from two 5 s 1080p probes (one all faceless, one all face) and a 10 s run of the bench itself on the
# 2-core AMD EPYC (2026-11-29), then one full 60 s + 600 s run with 1 s of face per 60 s (24 min; kept as
# bench/memory-amd-epyc-2c-2026-11-29-period60.json): its peak RSS spiked in every face segment, the spike
# rising from segment 1 to ~segment 4 and flat after, while RSS between segments stayed within ~10 MB. With
# one face segment the 60 s run's peak sat below that plateau, so the pattern now has 1 s of face per 20 s:
# three segments in 60 s, thirty in 600 s; ~32 min for 60 s + 600 s on the shared cores.
DEFAULT_SETTINGS = SwapSettings(
    pattern=FacePattern(period_seconds=20.0, face_seconds=1.0), detect_every=10, batch=8,
    reason="probes on 2 cores: faceless 1080p frames 28.7 frames/s through the loop (decode + x264 encode, "
           "detector every 10th frame), face frames 1.36 frames/s (2-block stand-in generator, batch 8), child "
           "start ~14 s, clip making 33-60 frames/s. A full run with 1 s of face per 60 s took 24 min but gave "
           "the 60 s run a single face segment, whose RSS spike sat below the plateau that later segments "
           "reach (by ~the 4th); 1 s of face per 20 s (5% of frames; 3 segments in 60 s, 30 in 600 s, aligned "
           "to the detection stride and the batch) is affordable (~32 min shared). --batch 8 is swap video's "
           "default; --detect-every 10 tracks the face between detections")


# ------------------------------------------------------------------------------------------- the child run

def source_photo() -> Path:
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def swap_command(clip: Path, output: Path, settings: SwapSettings, options: dict, leak: bool = False) -> list[str]:
    """The real CLI, as a user types it; `leak` runs it through this module's test-only hook instead."""
    entry = ["-m", "ghostrt.bench.memory_bench", PEAK_FLAG, str(output) + ".peak"] + ([LEAK_FLAG] if leak else [])
    cmd = [sys.executable, *entry, "swap", "video", "--source", str(source_photo()), "--target", str(clip),
           "--output", str(output), "--batch", str(settings.batch), "--detect-every", str(settings.detect_every),
           "--codec", settings.codec, "--num-blocks", str(settings.num_blocks), "--no-progress"]
    for name in ("backend", "precision", "threads", "weights_dir", "engines_dir"):
        if options.get(name) is not None:
            cmd += [f"--{name.replace('_', '-')}", str(options[name])]
    return cmd


def _reported_peak_kb(cmd: list[str]) -> int | None:
    """The VmHWM (KiB) the child wrote through PEAK_FLAG, or None where it wrote none."""
    if PEAK_FLAG not in cmd:
        return None
    path = Path(cmd[cmd.index(PEAK_FLAG) + 1])
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _status_kb(field: str, pid="self") -> int | None:
    """A KiB field of /proc/<pid>/status (VmHWM: the peak resident set, VmRSS: the current one), or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _write_peak(path: str) -> None:
    peak_kb = _status_kb("VmHWM")
    if peak_kb is not None:
        Path(path).write_text(f"{peak_kb}\n")


def _rss_mb(pid: int) -> float | None:
    rss_kb = _status_kb("VmRSS", pid)
    return None if rss_kb is None else rss_kb / 1024.0


def run_child(cmd: list[str], log_path: Path, cwd: Path | None = None) -> dict:
    """Run one child and wait for it with os.wait4: its own peak RSS (ru_maxrss, KiB on Linux), never mixed
    with other children's. VmRSS is sampled every few seconds meanwhile, so the JSON shows the curve too."""
    samples: list[tuple[float, float]] = []
    started = time.perf_counter()
    with open(log_path, "w") as log:
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(RSS_SAMPLE_SECONDS):
                rss = _rss_mb(child.pid)
                if rss is not None:
                    samples.append((round(time.perf_counter() - started, 1), round(rss, 1)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
        child.returncode = os.waitstatus_to_exitcode(status)
    text = log_path.read_text(errors="replace")
    if child.returncode != 0:
        tail = " | ".join(text.strip().splitlines()[-4:])
        raise GhostError(f"swap video exited with {child.returncode}: {tail}")
    found = re.search(r"frames\s+(\d+) in ([\d.]+) s", text)
    frames = int(found.group(1)) if found else None
    peak_kb = _reported_peak_kb(cmd) or usage.ru_maxrss
    return {"peak_rss_mb": round(peak_kb / 1024.0, 1), "wall_s": round(wall, 1),
            "loop_s": float(found.group(2)) if found else None, "frames": frames,
            "fps": round(frames / wall, 2) if frames else None, "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "rss_samples_mb": samples, "standin_banner": "STAND-IN" in text,
            "cli_summary": [line.strip() for line in text.splitlines()
                            if line.lstrip().startswith(("frames ", "stages ", "queues ", "encoded "))]}


def peak_device_memory_mb(machine: dict) -> tuple[float | None, str]:
    """GPU hook: peak device memory of a run. Not implemented: a GPU path would poll cuda-python's
    cudaMemGetInfo (total − free) beside the child and keep the maximum. Here: null with the reason."""
    if not machine.get("gpu"):
        return None, "no GPU"
    return None, "not measured: GPU hook (cudaMemGetInfo polling) not implemented yet"


# ---------------------------------------------------------------------------------------------- the bench

def parse_durations(text: str) -> list[float]:
    try:
        durations = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise GhostError(f"--memory {text}: give comma-separated seconds, e.g. 60,600") from None
    if not durations or durations[0] <= 0:
        raise GhostError(f"--memory {text}: every duration must be more than 0 seconds")
    return durations


def verdict(runs: list[dict], frame_size: tuple[int, int]) -> dict:
    """Growth of the peak from the shortest run to the longest, against MARGIN_FRAMES frames of this size."""
    shortest, longest = runs[0], runs[-1]
    frame_mb = frame_size[0] * frame_size[1] * 3 / 2 ** 20
    growth = longest["peak_rss_mb"] - shortest["peak_rss_mb"]
    margin = MARGIN_FRAMES * frame_mb
    return {"shortest_s": shortest["seconds"], "longest_s": longest["seconds"], "growth_mb": round(growth, 1),
            "growth_frames_1080p": round(growth / FRAME_MB_1080P, 2), "growth_frames": round(growth / frame_mb, 2),
            "margin_frames": MARGIN_FRAMES, "margin_mb": round(margin, 1), "frame_mb": round(frame_mb, 2),
            "pass": growth <= margin}


CODE_WATCHED = ("runtime/swap/core.py", "runtime/swap/video_swapper.py", "runtime/loops/video_loop.py", "runtime/io/video_io.py",
                "runtime/io/video_writer.py", "ghostrt/cli/swap_video.py", "ghostrt/cli/swap.py", "runtime/backends/executors.py")


def code_version(repo: Path) -> dict:
    """Which code a child ran: the commit, the files changed beside it, and the swap path's file hashes taken
    as the child starts (other work may edit the tree during a 20-minute run)."""
    from ghostrt.checksum import sha256_file

    def git(*args) -> str:
        try:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if line[3:].startswith(
        ("runtime/", "ghostrt/", "export/"))]
    return {"commit": git("rev-parse", "HEAD").strip() or None, "changed": changed,
            "sha256": {f: sha256_file(repo / f)[:16] for f in CODE_WATCHED if (repo / f).exists()}}


def run_memory_bench(durations: list[float], out_dir: Path, frame_size: tuple[int, int] = FULL_HD,
                     settings: SwapSettings = DEFAULT_SETTINGS, options: dict | None = None, leak: bool = False,
                     log=print) -> tuple[dict, Path]:
    """Make each clip, swap it in its own child, and write bench/memory-<machine>-<date>.json (after every
    run, so a long run that fails or is stopped still leaves the shorter runs' numbers)."""
    from ghostrt.bench import stage_bench as bench

    options = options or {}
    repo = Path(__file__).resolve().parents[1]
    machine = bench.machine_info()
    device_mb, device_reason = peak_device_memory_mb(machine)
    report = {"kind": "memory", "weights": WEIGHTS_LABEL, "machine": machine,
              "settings": {**asdict(settings), "pattern_text": settings.pattern.describe(),
                           "frame_size": list(frame_size), "fps": FPS, "audio": f"AAC {TONE_HZ:g} Hz tone",
                           "child": "python -m ghostrt.cli swap video (one child per duration)",
                           "peak_rss_source": "the child's own VmHWM, written at its exit (wait4's ru_maxrss includes the parent's peak)",
                           "leak_hook": leak, **{k: str(v) for k, v in options.items() if v is not None}},
              "durations": sorted(durations), "complete": False, "runs": [], "verdict": None,
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = Path(out_dir) / f"memory-{bench.machine_slug(machine)}-{report['date'][:10]}.json"
    with tempfile.TemporaryDirectory(prefix="ghostrt-memory-") as tmp:
        for seconds in sorted(durations):
            clip_path = Path(tmp) / f"clip-{seconds:g}s.mp4"
            log(f"making a {seconds:g} s {frame_size[0]}x{frame_size[1]} clip ({settings.pattern.describe()})")
            made = time.perf_counter()
            clip = write_clip(clip_path, seconds, frame_size, settings.pattern)
            clip["make_s"] = round(time.perf_counter() - made, 1)
            clip.pop("path")
            log(f"swapping it in a child (--batch {settings.batch}, --detect-every {settings.detect_every})")
            cmd = swap_command(clip_path, Path(tmp) / f"out-{seconds:g}s.mp4", settings, options, leak)
            code = code_version(repo)
            run = run_child(cmd, Path(tmp) / f"swap-{seconds:g}s.log", cwd=repo)
            report["runs"].append({"seconds": seconds, "clip": clip, **run, "peak_device_mb": device_mb,
                                   "peak_device_reason": device_reason, "code": code})
            log(f"  {seconds:g} s: peak RSS {run['peak_rss_mb']:.0f} MB, {run['frames']} frames in "
                f"{run['wall_s']:.0f} s")
            clip_path.unlink()
            report["verdict"] = verdict(report["runs"], frame_size)
            report["complete"] = len(report["runs"]) == len(durations)
            bench.write_json(report, path)
    return report, path


def format_summary(report: dict) -> str:
    s, v = report["settings"], report["verdict"]
    lines = [f"ghostrt bench --memory: `swap video` on {s['frame_size'][0]}x{s['frame_size'][1]} {s['fps']} "
             f"frames/s clips, weights {report['weights']}",
             f"  pattern {s['pattern_text']}; --batch {s['batch']} --detect-every {s['detect_every']} "
             f"--codec {s['codec']} --num-blocks {s['num_blocks']}",
             f"  why: {s['reason']}" if s.get("reason") else "",
             f"{'video s':>8}{'frames':>8}{'face fr':>9}{'peak RSS MB':>13}{'device MB':>11}{'wall s':>9}"
             f"{'frames/s':>10}"]
    for r in report["runs"]:
        device = "null" if r["peak_device_mb"] is None else f"{r['peak_device_mb']:.0f}"
        lines.append(f"{r['seconds']:>8g}{r['frames'] or 0:>8}{r['clip']['face_frames']:>9}{r['peak_rss_mb']:>13.0f}"
                     f"{device:>11}{r['wall_s']:>9.0f}{r['fps'] or 0:>10.2f}")
    if report["runs"][0]["peak_device_mb"] is None:
        lines.append(f"  peak device memory: null ({report['runs'][0]['peak_device_reason']})")
    lines.append(f"verdict: {'PASS' if v['pass'] else 'FAIL'}: peak RSS grew {v['growth_mb']:+.1f} MB "
                 f"({v['growth_frames_1080p']:+.2f} 1080p frames) from {v['shortest_s']:g} s to {v['longest_s']:g} s; "
                 f"margin {v['margin_frames']} frames = {v['margin_mb']:.0f} MB")
    return "\n".join(line for line in lines if line)


def run_from_args(args) -> int:
    """`ghostrt bench --memory …`: the bench's own options that the child understands are passed on."""
    durations = parse_durations(args.memory)
    options = {"backend": args.backend, "precision": args.precision, "threads": args.threads,
               "weights_dir": args.weights_dir, "engines_dir": args.engines_dir}
    settings = replace(DEFAULT_SETTINGS, num_blocks=args.num_blocks)
    report, path = run_memory_bench(durations, args.out_dir, settings=settings, options=options)
    print(format_summary(report))
    print(f"wrote {path}")
    return 0


# ------------------------------------------------------------------------------------- the test-only hook

def _leak_every_frame() -> None:
    """Make VideoSwapper keep a reference to every frame it is given: the leak the bench must catch."""
    from ghostrt.runtime.swap.video_swapper import VideoSwapper

    kept = []
    process = VideoSwapper.process_batch

    def leaky(self, frames):
        kept.extend(frames)
        return process(self, frames)

    VideoSwapper.process_batch = leaky


if __name__ == "__main__":
    # The child launcher: `python -m ghostrt.bench.memory_bench --report-peak FILE [--leak-every-frame]
    # <ghostrt args>` runs the ghostrt CLI unchanged and writes its own VmHWM to FILE at exit.
    import atexit

    argv = sys.argv[1:]
    if argv[:1] != [PEAK_FLAG] or len(argv) < 2:
        sys.exit(f"python -m ghostrt.bench.memory_bench is bench's child launcher: {PEAK_FLAG} FILE "
                 f"[{LEAK_FLAG}] <ghostrt args>")
    atexit.register(_write_peak, argv[1])
    argv = argv[2:]
    if argv[:1] == [LEAK_FLAG]:
        _leak_every_frame()
        argv = argv[1:]
    from ghostrt.cli import main

    sys.exit(main(argv))
