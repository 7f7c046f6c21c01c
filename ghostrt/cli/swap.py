"""`ghostrt swap image …` (video and webcam get their own sub-subcommands beside it).

Order matters for the user: every input is read and every output path checked before any net is loaded or
exported, so a typo costs a second, not a minute; outputs are written atomically, so an error leaves no file.
The export side (torch) is reached only through a lazy import when an ONNX file is missing or stale.
"""

import time
from pathlib import Path

from ghostrt.errors import GhostError
from ghostrt.loading import DETECTORS
from ghostrt.runtime.backends.executors import BACKENDS, PRECISIONS

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
    from ghostrt.runtime.io.provenance import add_provenance_options

    add_provenance_options(p)


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
    """Flag checks that need no file, before any file is read."""
    from ghostrt.loading import check_engines_dir, check_options
    from ghostrt.runtime.stages.match import check_similarity

    check_similarity(args.similarity)
    check_options(args.backend, args.precision, args.detector, args.num_blocks, args.threads)
    if args.target_face and len(args.source) not in (1, len(args.target_face)):
        raise GhostError(f"{len(args.source)} --source photos for {len(args.target_face)} --target-face photos: "
                         "give one --source (used for every target face) or one per --target-face")
    check_engines_dir(args.engines_dir)


def _read_photos(args):
    from ghostrt.runtime.io import image_io

    return ([image_io.read_image(p)[0] for p in args.source], [image_io.read_image(p)[0] for p in args.target_face])


def load_swapper(args):
    """The library's Swapper from the shared swap options (the one factory every command uses)."""
    from ghostrt.api import Swapper

    return Swapper.load(backend=args.backend, precision=args.precision, weights=args.weights_dir,
                        engines=args.engines_dir, detector=args.detector, num_blocks=args.num_blocks,
                        threads=args.threads, graph_stages=getattr(args, "graph_stages", False))


def identities(sw, args, sources, target_faces):
    """(who, targets) as the CLI means them: several --source photos are one averaged identity, unless they
    pair with --target-face photos one to one; each --target-face photo is one target. Photos are passed with
    their file names, so an error names the file."""
    pairs = list(zip(args.source, sources))
    if args.target_face and len(args.source) > 1:
        who = [sw.identity([pair], "--source") for pair in pairs]
    else:
        who = sw.identity(pairs, "--source")
    targets = [sw.identity([pair], "--target-face") for pair in zip(args.target_face, target_faces)]
    return who, targets or None


def print_backends(sw) -> None:
    if sw.standin_models:
        print(f"{STANDIN_BANNER} ({', '.join(sw.standin_models)} untrained)")
    for model, choice in sw.choices.items():
        print(f"  backend   {model:<10} {choice.reason}")


# ----------------------------------------------------------------------------------------------------- run

def make_process(args):
    """The swap for the video and webcam loops: process_batch(frames) -> frames, labelled for the output.
    Both use the Swapper's stream; the webcam without smoothing (its 2-frame lookahead costs latency)."""
    _check_options(args)
    sources, target_faces = _read_photos(args)
    sw = load_swapper(args)
    print_backends(sw)
    who, targets = identities(sw, args, sources, target_faces)
    video = args.swap_mode == "video"
    process = sw.stream(who, targets, faces=args.faces, similarity=args.similarity,
                        batch=args.batch if video else 1, detect_every=args.detect_every if video else 1,
                        smoothing=video, overlap=getattr(args, "overlap", None) or None)
    process.standin_weights = bool(sw.standin_models)
    process.label = sw.label(1, operation=f"{args.swap_mode} face swap")
    process.swapper = sw
    return process


def run_image(args) -> int:
    from ghostrt.runtime.io import image_io, provenance

    started = time.perf_counter()
    _check_options(args)
    image_io.check_output_path(args.output)
    if args.debug_sheet is not None:
        image_io.check_output_path(args.debug_sheet, "debug sheet")
        if args.debug_sheet.resolve() == args.output.resolve():
            raise GhostError(f"{args.debug_sheet}: the debug sheet would overwrite --output")
    provenance.from_args(args, output=args.output)      # a bad key or an unsignable output fails before the nets
    read_started = time.perf_counter()
    sources, target_faces = _read_photos(args)
    image_io.read_image(args.target)                    # a bad target fails before the nets too
    read_s = time.perf_counter() - read_started
    load_started = time.perf_counter()
    sw = load_swapper(args)                             # weights and FP32 ONNX (an export only when missing)
    load_s = time.perf_counter() - load_started
    with sw:
        identity_started = time.perf_counter()
        who, targets = identities(sw, args, sources, target_faces)
        identity_s = time.perf_counter() - identity_started
        out = sw.swap_image(args.target, args.output, who, targets=targets, faces=args.faces,
                            similarity=args.similarity, debug_sheet=args.debug_sheet, sign_cert=args.sign_cert,
                            sign_key=args.sign_key, visible_mark=bool(args.visible_mark))
        timer = out.timer
        timer.seconds = {"read": read_s + timer.seconds.pop("read", 0.0), "load": load_s, "identity": identity_s,
                         **timer.seconds}
        _print_summary(args, out.result, out.info, out.notes, sw.choices, sw.detector_kind, sw.standin_models,
                       timer, time.perf_counter() - started)
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
    print(f"  label     provenance label, watermark and signed C2PA manifest written (altered="
          f"{len(result.swapped) > 0}, stand-in={bool(standin)}); check it with `ghostrt verify {args.output}`")
    if args.debug_sheet is not None:
        print(f"  sheet     {args.debug_sheet}")
    print(f"  done in   {total:.2f} s")
    if standin:
        print(STANDIN_BANNER)
