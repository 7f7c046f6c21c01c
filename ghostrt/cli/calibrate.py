"""`ghostrt calibrate`: build an INT8 calibration set (.npz + provenance .json) from real face crops."""

from pathlib import Path

from ghostrt.calibration.build import DEFAULT_OUT, build


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "calibrate", help="build an INT8 calibration set from real face crops",
        description="Detect and align faces in real photos (default: the public-domain photos shipped with "
                    "matplotlib and scikit-image, with flips, lighting jitter and multi-face grids) and store "
                    "every net's ONNX inputs in one .npz, with a provenance JSON beside it.")
    parser.add_argument("--images", metavar="DIR|VIDEO", default=None,
                        help="a folder of images, one image or a video (default: the packaged photos)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output .npz (default {DEFAULT_OUT})")
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="weights for the ArcFace ONNX that embeds the generator's source faces")
    parser.add_argument("--no-embed", action="store_true",
                        help="random source embeddings instead of exporting ArcFace (recorded in the provenance)")
    parser.set_defaults(func=run)


def run(args) -> int:
    provenance = build(args.out, args.images, args.weights_dir, embed=not args.no_embed)
    count = provenance["count"]
    print(f"calibration set {args.out}: {count['face_crops']} aligned face crops, "
          f"{count['detector_frames']} detector frames from {len(provenance['sources'])} source image(s)")
    for key, info in provenance["arrays"].items():
        print(f"  {key:<28} {'×'.join(map(str, info['shape']))}")
    print(f"  source embeddings: {count['source_embedding']}")
    print(f"provenance: {Path(args.out).with_suffix('.json')}")
    return 0
