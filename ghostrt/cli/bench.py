"""`ghostrt bench`: parse and check the options, then hand over to the bench package (ghostrt.bench): the
per-stage comparison with the GHOST-style reference is bench/pipeline_bench.py, --memory bench/memory_bench.py."""

from pathlib import Path

from ghostrt.errors import GhostError, at_least_one
from ghostrt.runtime.backends.executors import BACKENDS, PRECISIONS


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="per-stage latency of ghostrt vs the GHOST-style reference")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="ghostrt's executors (auto: TensorRT engine when a GPU and a built engine exist, "
                        "else OpenVINO when installed, else ONNX Runtime CPU)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16",
                   help="engine precision (TensorRT: fp16/int8/fp32; OpenVINO: bf16 where the CPU has it, gated "
                        "int8, else fp32; ONNX Runtime runs the FP32 ONNX)")
    p.add_argument("--batch", default="1,2", help="comma-separated frames per iteration (default 1,2)")
    p.add_argument("--frames", type=int, default=2, help="frames timed per mode (default 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations per mode (default 1)")
    p.add_argument("--frame-size", default="1280x720", help="WxH of the benchmark frames (default 1280x720)")
    p.add_argument("--num-blocks", type=int, choices=(1, 2, 3), default=2,
                   help="AEI-Net generator blocks (default 2, GHOST's main model)")
    p.add_argument("--detector", choices=("scrfd", "retinaface"), default=None,
                   help="default: scrfd when the official SCRFD weights exist, else retinaface")
    p.add_argument("--weights-dir", type=Path, default=None, help="default: weights/")
    p.add_argument("--engines-dir", type=Path, default=Path("engines"),
                   help="engine cache; FP32 ONNX files live in its onnx/ folder")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime CPU threads (default: all)")
    p.add_argument("--out-dir", type=Path, default=Path("bench"), help="where the JSON and PNG go")
    p.add_argument("--skip-reference", action="store_true", help="time ghostrt only (no torch needed)")
    p.add_argument("--no-floor", action="store_true",
                   help="skip the CPU per-face floor (the nets' MACs over this CPU's measured throughput)")
    p.add_argument("--memory", metavar="SECONDS[,SECONDS]", default=None,
                   help="instead: peak RSS of `swap video` on synthetic 1080p clips of these lengths, e.g. 60,600 "
                        "(runtime/memory_bench.py)")
    p.add_argument("--streams", metavar="N[,N]", default=None,
                   help="instead: N concurrent synthetic 720p live streams through the UI's stream scheduler, "
                        "with and without cross-stream batching, e.g. 1,2,4,8 (bench/streams_bench.py)")
    p.add_argument("--stream-seconds", type=float, default=10.0, help="--streams: seconds per N and mode")
    p.add_argument("--cluster", metavar="SECONDS", type=float, default=None,
                   help="render a SECONDS-long clip with 1 and 2 Ray workers (local Ray): efficiency, overheads")
    p.add_argument("--cluster-segment-seconds", type=float, default=1.0, help="--cluster: segment length (default 1)")
    p.add_argument("--camera-fps", type=float, default=30.0, help="--streams: frames each stream offers per second")
    p.set_defaults(func=run_bench)


# ------------------------------------------------------------------------------------------------ options

def parse_batches(text: str) -> list[int]:
    try:
        batches = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise GhostError(f"--batch {text}: give comma-separated whole numbers, e.g. 1,4") from None
    if not batches or any(b < 1 for b in batches):
        raise GhostError(f"--batch {text}: every batch must be at least 1")
    return sorted(set(batches))


def parse_frame_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or min(int(p) for p in parts) < 128:
        raise GhostError(f"--frame-size {text}: give WxH with both sides at least 128, e.g. 1280x720")
    return int(parts[0]), int(parts[1])


def check_options(args) -> None:
    at_least_one("--frames", args.frames)
    if args.warmup < 0:
        raise GhostError(f"--warmup {args.warmup}: must be 0 or more")
    at_least_one("--threads", args.threads)


def run_bench(args) -> int:
    if args.streams is not None:
        from ghostrt.bench.streams_bench import run_from_args as run_streams
        return run_streams(args)
    if args.cluster is not None:
        from ghostrt.bench.cluster_bench import run_from_args as run_cluster
        return run_cluster(args)
    if args.memory is not None:
        from ghostrt.bench.memory_bench import run_from_args
        return run_from_args(args)
    check_options(args)
    batches = parse_batches(args.batch)
    frame_size = parse_frame_size(args.frame_size)
    from ghostrt.bench.pipeline_bench import run

    return run(args, batches, frame_size)
