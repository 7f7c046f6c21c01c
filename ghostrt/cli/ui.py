"""`ghostrt ui`: the local web app (image, video and live tabs over one loaded Swapper). It binds to localhost;
serving anything wider is the user's explicit choice (--allow-remote), because the app has no accounts."""

import ipaddress
import sys
from pathlib import Path

from ghostrt.errors import GhostError
from ghostrt.runtime.backends.executors import BACKENDS, PRECISIONS

REMOTE_WARNING = ("ghostrt ui: WARNING: serving on {host}, reachable from other machines; anyone who can reach "
                  "it can upload files and use this machine's GPU/CPU (there is no login)")


def register(subparsers) -> None:
    p = subparsers.add_parser("ui", help="local web app: image, video and live webcam swaps in the browser")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--allow-remote", action="store_true",
                   help="required to bind a --host other than a loopback address (prints a warning)")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16")
    p.add_argument("--detector", choices=("scrfd", "retinaface"), default=None)
    p.add_argument("--weights-dir", type=Path, default=None, help="default: weights/")
    p.add_argument("--engines-dir", type=Path, default=Path("engines"))
    p.add_argument("--num-blocks", type=int, choices=(1, 2, 3), default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-image-mb", type=int, default=40, help="largest image upload (default 40 MB)")
    p.add_argument("--max-video-mb", type=int, default=400, help="largest video upload (default 400 MB)")
    p.add_argument("--batching", choices=("auto", "on", "off"), default="auto",
                   help="cross-stream batching of live streams; auto: on when the generator runs on a GPU engine "
                        "(trt, trt-rtx), off on a CPU, where bench --streams measured no gain and twice the latency")
    p.add_argument("--no-batching", dest="batching", action="store_const", const="off",
                   help="the same as --batching off")
    p.set_defaults(func=run_ui)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool) -> str | None:
    """None for a loopback host; the warning to print for another one; a GhostError without --allow-remote."""
    if is_loopback(host):
        return None
    if not allow_remote:
        raise GhostError(f"--host {host}: not a loopback address; add --allow-remote to serve other machines")
    return REMOTE_WARNING.format(host=host)


GPU_BACKENDS = ("trt", "trt-rtx")


def batching_for(mode: str, described: dict[str, dict]) -> bool:
    """--batching auto follows the measurement: batching pays where a batch fills an idle GPU, not on CPU cores
    that one frame already keeps busy (README, "Measured" under the stream server)."""
    if mode != "auto":
        return mode == "on"
    return described.get("generator", {}).get("backend") in GPU_BACKENDS


def run_ui(args) -> int:
    warning = check_host(args.host, args.allow_remote)
    if not 0 < args.port < 65536:
        raise GhostError(f"--port {args.port}: must lie in 1..65535")
    if min(args.max_image_mb, args.max_video_mb) < 1:
        raise GhostError("--max-image-mb and --max-video-mb must be at least 1")
    import uvicorn

    import ghostrt
    from ghostrt.ui.app import create_app

    if warning:
        print(warning, file=sys.stderr)
    sw = ghostrt.Swapper.load(backend=args.backend, precision=args.precision, weights=args.weights_dir,
                              engines=args.engines_dir, detector=args.detector, num_blocks=args.num_blocks,
                              threads=args.threads)
    if sw.standin_models:
        print(f"!! STAND-IN (untrained) weights: not a real face swap ({', '.join(sw.standin_models)})")
    described = sw.describe()
    batching = batching_for(args.batching, described)
    why = f"--batching {args.batching}" + (", generator on " + described["generator"]["backend"]
                                            if args.batching == "auto" else "")
    print(f"ghostrt ui: cross-stream batching {'on' if batching else 'off'} ({why})")
    app = create_app(sw, max_image_mb=args.max_image_mb, max_video_mb=args.max_video_mb,
                     scheduler_options={"batching": batching})
    print(f"ghostrt ui: http://{args.host}:{args.port}/  (Ctrl-C stops)")
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        sw.close()
    return 0
