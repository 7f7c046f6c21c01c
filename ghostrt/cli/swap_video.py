"""`ghostrt swap video …` and `ghostrt swap webcam …`: parsers and runners for the two loops.

The swap itself stays with whoever owns the swap options: `make_process(args)` builds it from the shared
options (--source, --target-face, backend, …) and returns `process_batch(frames) -> frames` (RGB uint8 lists).
It may carry two optional attributes: `label` (the provenance label dict written into the video; default: a
"video face swap" label from provenance_label.make_label) and `close()` (called when the loop ends).

Order matters as in `swap image`: the target video is probed and the output name, codec and container checked
before make_process loads any net, so a typo costs a second, not a minute.
"""

import sys
from pathlib import Path

from ghostrt.errors import GhostError, at_least_one

DEFAULT_BATCH = 8
DEFAULT_CRF = 18


def _add_sources(p) -> None:
    """--source / --target-face for callers that do not pass the shared option adder."""
    p.add_argument("--source", action="append", type=Path, required=True,
                   help="photo of the identity to put in (repeatable)")
    p.add_argument("--target-face", action="append", type=Path, default=[],
                   help="photo of a face in the target to replace (repeatable)")


def add_video_parser(swap_subparsers, make_process, add_common=None):
    """Add `video` to the `swap` sub-subcommands. `add_common(parser)` adds the shared swap options."""
    p = swap_subparsers.add_parser("video", help="swap faces in a video file (audio and subtitles copied)")
    (add_common or _add_sources)(p)
    p.add_argument("--target", type=Path, required=True, help="the video whose face(s) to replace")
    p.add_argument("--output", type=Path, required=True,
                   help=".mp4/.mov (audio; subtitles only as mov_text), .mkv (keeps every stream) or .webm (VP9 + Opus)")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=f"frames per batch (default {DEFAULT_BATCH})")
    p.add_argument("--codec", default=None,
                   help="video encoder (default: what the extension implies: libvpx-vp9 for .webm, else libx264; "
                        "also mpeg4, libx265 if built)")
    p.add_argument("--crf", type=int, default=DEFAULT_CRF,
                   help=f"x264/x265 quality, 0 = lossless … 51 (default {DEFAULT_CRF}: visually lossless)")
    p.add_argument("--detect-every", type=int, default=1,
                   help="run the face detector every K frames, tracking in between (default 1: every frame)")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.add_argument("--overlap", action="store_true",
                   help="detect/embed the next batch in a worker thread while this batch is swapped (off by "
                        "default: slower on 2 CPU cores where each net already uses both; try it on more cores)")
    p.set_defaults(func=lambda args: run_video(args, make_process))
    return p


def add_webcam_parser(swap_subparsers, make_process, add_common=None):
    """Add `webcam` to the `swap` sub-subcommands. `add_common(parser)` adds the shared swap options."""
    p = swap_subparsers.add_parser("webcam", help="swap faces live from a camera (or a file played as one)")
    (add_common or _add_sources)(p)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--camera", type=int, default=None, help="camera index for OpenCV (default 0)")
    source.add_argument("--camera-file", type=Path, default=None,
                        help="play this video in real time, looping, as if it were a camera")
    p.add_argument("--frames", type=int, default=None, help="stop after N output frames (default: until Ctrl-C)")
    p.add_argument("--virtual-camera", action="store_true",
                   help="send frames to a virtual camera (needs pyvirtualcam; v4l2loopback on Linux)")
    p.add_argument("--preview", action="store_true", help="show frames in a window (q or Esc quits)")
    p.set_defaults(func=lambda args: run_webcam(args, make_process))
    return p


def _check_video_options(args) -> None:
    at_least_one("--batch", args.batch)
    if not 0 <= args.crf <= 51:
        raise GhostError(f"--crf {args.crf}: x264 quality runs from 0 (lossless) to 51")
    at_least_one("--detect-every", args.detect_every)


def _label_for(process) -> dict:
    label = getattr(process, "label", None)
    if label is None:
        from ghostrt.runtime.io.provenance_label import make_label

        label = make_label(1, bool(getattr(process, "standin_weights", False)), operation="video face swap")
    return label


def _with_backend(prov, process):
    """The manifest names the generator's backend and precision, known once the nets are loaded."""
    choice = getattr(getattr(process, "swapper", None), "choices", {}).get("generator")
    return prov if choice is None else prov.for_generator(choice.backend, choice.precision)


def run_video(args, make_process) -> int:
    from ghostrt.runtime.io import provenance, video_io, video_writer
    from ghostrt.runtime.loops import video_loop

    _check_video_options(args)
    info = video_io.probe(args.target)                  # every file check before any net loads
    video_writer.plan_output(args.output, info, args.codec)
    prov = provenance.from_args(args, output=args.output, target=args.target)
    process = make_process(args)
    try:
        summary = video_loop.swap_video(args.target, args.output, process, batch=args.batch, codec=args.codec,
                                        crf=args.crf, label=_label_for(process), progress=not args.no_progress,
                                        provenance=_with_backend(prov, process))
    finally:
        getattr(process, "close", lambda: None)()
    video_loop.print_summary(summary)
    return 0


def run_webcam(args, make_process) -> int:
    from ghostrt.runtime.loops import webcam_loop

    at_least_one("--frames", args.frames)
    if args.camera_file is not None:
        from ghostrt.runtime.io import video_io

        video_io.probe(args.camera_file)                # a bad file fails before any net loads
    if args.virtual_camera:
        webcam_loop.require_pyvirtualcam()
    source = args.camera_file if args.camera_file is not None else (args.camera or 0)
    from ghostrt.runtime.io import provenance

    live = provenance.from_args(args, live=True)        # says what --no-visible-mark means
    process = make_process(args)

    def process_frame(frame):
        return process([frame])[0]

    try:
        summary = webcam_loop.run_webcam(source, process_frame, frames=args.frames,
                                         virtual_camera=args.virtual_camera, preview=args.preview,
                                         visible_mark=live.visible_mark)
    finally:
        getattr(process, "close", lambda: None)()
    lat = summary["latency_ms"]
    print(f"ghostrt swap webcam: {summary['source']}: {summary['frames']} frames in {summary['seconds']:.1f} s "
          f"= {summary['fps']:.1f} frames/s; latency p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms; "
          f"dropped {summary['dropped']} of {summary['captured']} captured", file=sys.stdout)
    return 0
