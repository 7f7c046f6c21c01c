"""`ghostrt swap image …` (video and webcam get their own sub-subcommands beside it).

Order matters for the user: every input is read and every output path checked before any net is loaded or
exported, so a typo costs a second, not a minute; outputs are written atomically, so an error leaves no file.
The export side (torch) is reached only through a lazy import when an ONNX file is missing or stale.
"""

import time
from pathlib import Path

from ghostrt.errors import GhostError
from ghostrt.runtime.backends.executors import BACKENDS, PRECISIONS

DETECTORS = ("scrfd", "retinaface")
USED_MODELS = ("generator", "arcface", "landmarks")
STANDIN_BANNER = "!! STAND-IN (untrained) weights: not a real face swap"


def _add_common(p) -> None:
    """Options every swap sub-subcommand shares (image now; video and webcam later)."""
    p.add_argument("--source", action="append", type=Path, required=True,
                   help="photo of the identity to put in; repeat to average several photos, or to pair "
                        "source i with --target-face i")
    p.add_argument("--target-face", action="append", type=Path, default=[],
                   help="photo of a face in the target to replace (repeatable); default: --faces rule")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto: TensorRT when a CUDA GPU and a valid built engine exist, else OpenVINO on the "
                        "CPU when installed, else ONNX Runtime (the summary says which ran and why)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16",
                   help="TensorRT: the engine's precision. OpenVINO: fp16/bf16 run a gated bf16 model on CPUs "
                        "with BF16 (auto falls back to FP32, saying why), int8 a gated INT8 model, fp32 is "
                        "compiled on first use. ONNX Runtime always runs the FP32 ONNX")
    p.add_argument("--detector", choices=DETECTORS, default=None,
                   help="default: scrfd when the official SCRFD weights exist, else retinaface")
    p.add_argument("--faces", choices=("largest", "all"), default="largest",
                   help="which faces to swap when no --target-face is given")
    p.add_argument("--similarity", type=float, default=0.15,
                   help="cosine similarity a face must exceed to match a --target-face (default 0.15)")
    p.add_argument("--weights-dir", type=Path, default=None, help="default: weights/")
    p.add_argument("--engines-dir", type=Path, default=Path("engines"),
                   help="engine cache; FP32 ONNX files live in its onnx/ folder")
    p.add_argument("--num-blocks", type=int, choices=(1, 2, 3), default=2,
                   help="AEI-Net generator blocks (G_unet_<n>block(s).pth; default 2, the main model)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for ONNX Runtime / OpenVINO (default: all)")
    p.add_argument("--graph-stages", action="store_true",
                   help="run the crop warp and paste-back as ONNX graphs through the nets' executor instead of "
                        "OpenCV (on a CPU OpenCV measured 5-20× faster; see runtime/graph_stages.py)")


def register(subparsers) -> None:
    p = subparsers.add_parser("swap", help="swap faces in an image, a video or a webcam stream")
    modes = p.add_subparsers(dest="swap_mode", required=True, metavar="MODE")
    image = modes.add_parser("image", help="swap faces in one image")
    _add_common(image)
    image.add_argument("--target", type=Path, required=True, help="the image whose face(s) to replace")
    image.add_argument("--output", type=Path, required=True, help=".png, .jpg/.jpeg or .webp")
    image.add_argument("--debug-sheet", type=Path, default=None,
                       help="also write one PNG with boxes, crops, swaps, masks, result and timings")
    image.set_defaults(func=run_image)
    from ghostrt.cli.swap_video import add_video_parser, add_webcam_parser

    add_video_parser(modes, make_process, add_common=_add_common)
    add_webcam_parser(modes, make_process, add_common=_add_common)


# --------------------------------------------------------------------------------------------------- setup

def _check_options(args) -> None:
    if not -1.0 <= args.similarity <= 1.0:
        raise GhostError(f"--similarity {args.similarity}: a cosine similarity lies in [-1, 1]")
    if args.threads is not None and args.threads < 1:
        raise GhostError(f"--threads {args.threads}: must be at least 1")
    if args.target_face and len(args.source) not in (1, len(args.target_face)):
        raise GhostError(f"{len(args.source)} --source photos for {len(args.target_face)} --target-face photos: "
                         "give one --source (used for every target face) or one per --target-face")


def _check_engines_dir(engines_dir: Path) -> None:
    """FP32 ONNX files live under <engines-dir>/onnx; a path through a regular file can never hold them."""
    existing = engines_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise GhostError(f"{engines_dir}: --engines-dir is not a folder ({existing} is a file)")


def _resolve_nets(args, log=print):
    """FP32 ONNX per net (exported now if missing or stale), the detector kind and the stand-in flag."""
    from ghostrt.export.models import ensure_onnx
    from ghostrt.weights.resolve import resolve_weights

    weights = resolve_weights(args.weights_dir, num_blocks=args.num_blocks, log=log)
    kind = args.detector or ("retinaface" if "detector" in weights.standin_models else "scrfd")
    onnx_dir = args.engines_dir / "onnx"
    onnx = {m: ensure_onnx(m, args.weights_dir, onnx_dir, num_blocks=args.num_blocks, log=log)
            for m in USED_MODELS}
    onnx["detector"] = ensure_onnx("detector" if kind == "scrfd" else "retinaface", args.weights_dir, onnx_dir,
                                   num_blocks=args.num_blocks, log=log)
    used = USED_MODELS + (("detector",) if kind == "scrfd" else ())
    standin = [m for m in used if m in weights.standin_models]
    return onnx, kind, standin


def _make_nets(args, onnx: dict, kind: str):
    from ghostrt.runtime.nets.detect import make_detector
    from ghostrt.runtime.backends.executors import make_executor
    from ghostrt.runtime.stages.graph_stages import make_stages
    from ghostrt.runtime.swap.core import Nets

    choices = {m: make_executor(onnx[m], args.backend, args.precision, args.engines_dir, args.threads)
               for m in ("detector", "arcface", "generator", "landmarks")}
    stages = make_stages(choices["generator"].backend, args.engines_dir, args.threads,
                         getattr(args, "graph_stages", False))
    nets = Nets(detector=make_detector(kind, choices["detector"].executor), arcface=choices["arcface"].executor,
                generator=choices["generator"].executor, landmarks=choices["landmarks"].executor, stages=stages)
    return nets, choices


# ----------------------------------------------------------------------------------------------------- run

def make_process(args):
    """The swap for the video and webcam loops: process_batch(frames) -> frames, labelled for the output.
    Both use the tracking VideoSwapper; the webcam without smoothing (its 2-frame lookahead costs latency)."""
    from ghostrt.runtime.io import image_io
    from ghostrt.runtime.swap.image_swapper import ImageSwapper
    from ghostrt.runtime.io.provenance_label import make_label
    from ghostrt.runtime.swap.video_swapper import VideoSwapper

    _check_options(args)
    _check_engines_dir(args.engines_dir)
    sources = [(p, image_io.read_image(p)[0]) for p in args.source]
    target_faces = [(p, image_io.read_image(p)[0]) for p in args.target_face]
    onnx, kind, standin = _resolve_nets(args)
    nets, choices = _make_nets(args, onnx, kind)
    if standin:
        print(f"{STANDIN_BANNER} ({', '.join(standin)} untrained)")
    for model, choice in choices.items():
        print(f"  backend   {model:<10} {choice.reason}")
    swapper = ImageSwapper(nets, faces=args.faces, similarity=args.similarity)
    source_embs = swapper.embed_photos(sources, "--source")
    target_embs = swapper.embed_photos(target_faces, "--target-face") if target_faces else None
    video = args.swap_mode == "video"
    process = VideoSwapper(nets, source_embs, target_embs, faces=args.faces, similarity=args.similarity,
                           batch=args.batch if video else 1, detect_every=args.detect_every if video else 1,
                           smoothing=video, overlap=getattr(args, "overlap", None) or None)
    process.standin_weights = bool(standin)
    process.label = make_label(1, bool(standin), operation=f"{args.swap_mode} face swap")
    return process


def run_image(args) -> int:
    from ghostrt.runtime.io import image_io
    from ghostrt.runtime.io.provenance_label import make_label

    started = time.perf_counter()
    _check_options(args)
    _check_engines_dir(args.engines_dir)
    image_io.check_output_path(args.output)
    if args.debug_sheet is not None:
        image_io.check_output_path(args.debug_sheet, "debug sheet")
        if args.debug_sheet.resolve() == args.output.resolve():
            raise GhostError(f"{args.debug_sheet}: the debug sheet would overwrite --output")
    read_start = time.perf_counter()
    sources = [(p, image_io.read_image(p)[0]) for p in args.source]
    target_faces = [(p, image_io.read_image(p)[0]) for p in args.target_face]
    target_rgb, target_alpha, target_info = image_io.read_image(args.target)
    read_seconds = time.perf_counter() - read_start

    from ghostrt.runtime.swap.image_swapper import ImageSwapper

    from ghostrt.runtime.swap.timer import StageTimer

    timer = StageTimer()
    timer.seconds["read"] = read_seconds
    with timer.stage("prepare"):      # weights and FP32 ONNX: instant when fresh, an export otherwise
        try:
            onnx, kind, standin = _resolve_nets(args)
        except OSError as err:        # e.g. a read-only --engines-dir or --weights-dir that needs writing
            raise GhostError(f"{err.filename or args.engines_dir}: {err.strerror or err}") from err
    with timer.stage("load"):
        nets, choices = _make_nets(args, onnx, kind)
    swapper = ImageSwapper(nets, faces=args.faces, similarity=args.similarity, timer=timer)
    source_embs = swapper.embed_photos(sources, "--source")
    target_embs = swapper.embed_photos(target_faces, "--target-face") if target_faces else None
    result = swapper.swap(target_rgb, source_embs, target_embs)

    label = make_label(len(result.swapped), bool(standin))
    with timer.stage("write"):
        notes = image_io.write_image(args.output, result.frame, target_alpha, label, target_info.icc_profile)
    if args.debug_sheet is not None:
        from ghostrt.runtime.io.debug_sheet import write_debug_sheet

        with timer.stage("sheet"):
            write_debug_sheet(args.debug_sheet, target_rgb, result, timer.seconds, standin_models=standin,
                              title=f"{args.target.name} -> {args.output.name}  ({kind}, {choices['generator'].backend})",
                              label=label)
    _print_summary(args, result, target_info, notes, choices, kind, standin, timer, time.perf_counter() - started)
    return 0


def _print_summary(args, result, info, notes, choices, kind, standin, timer, total) -> None:
    if standin:
        print(f"{STANDIN_BANNER} ({', '.join(standin)} untrained; put the official files in the weights folder)")
    print(f"ghostrt swap image: {args.target} → {args.output}")
    print(f"  image     {info.width}×{info.height} {info.format} {info.mode}"
          + (f" {info.bit_depth}-bit" if info.bit_depth != 8 else ""))
    for note in info.notes + notes:
        print(f"  note      {note}")
    rule = "matched to --target-face" if args.target_face else f"--faces {args.faces}"
    print(f"  detector  {kind}; faces found {len(result.faces)}, swapped {len(result.swapped)} ({rule})")
    for face in result.swapped:
        if face.target_index is not None:
            print(f"            target-face {face.target_index + 1}: similarity {face.similarity:.3f}")
    for warning in result.warnings:
        print(f"  WARNING   {warning}")
    for model, choice in choices.items():
        print(f"  backend   {model:<10} {choice.reason}")
    print("  timings   " + "\n            ".join(timer.lines()))
    print(f"  label     provenance label written (altered={len(result.swapped) > 0}, "
          f"stand-in={bool(standin)}); read it with ghostrt.runtime.io.provenance_label.read_label")
    if args.debug_sheet is not None:
        print(f"  sheet     {args.debug_sheet}")
    print(f"  done in   {total:.2f} s")
    if standin:
        print(STANDIN_BANNER)
