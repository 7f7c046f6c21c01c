"""`ghostrt export generator | arcface | detector | landmarks | all` — each prints its parity row."""

from pathlib import Path

from ghostrt.errors import GhostError


def _need_file(path: Path) -> Path:
    if not path.exists():
        raise GhostError(f"{path}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise GhostError(f"{path}: file is empty")
    return path


def _one(args):
    from ghostrt.export.models import export_one

    row = export_one(args.model, _need_file(args.weights), args.out, num_blocks=getattr(args, "num_blocks", 2))
    print(row.line())
    print(f"wrote {args.out}")
    return 0


def _all(args):
    from ghostrt.export.models import MODELS, read_sidecar, export_all
    from ghostrt.export.parity import ParityRow

    paths = export_all(args.weights_dir, args.out_dir, num_blocks=args.num_blocks)
    print(f"\n{'model':<12} {'parity (ONNX Runtime CPU vs PyTorch / original ONNX)'}")
    for model in MODELS:
        side = read_sidecar(paths[model]) or {}
        parity = side.get("parity")
        line = ParityRow(**{**parity, "batches": tuple(parity["batches"])}).line() if parity else "(no record)"
        tag = "  [stand-in, untrained]" if side.get("standin") else ""
        print(f"{line}{tag}")
    return 0


def register(sub):
    p = sub.add_parser("export", help="export the four nets to ONNX (opset 17, dynamic batch) with a parity check")
    esub = p.add_subparsers(dest="model", required=True)
    for model, what in (("generator", "G_unet_*.pth"), ("arcface", "backbone.pth"),
                        ("detector", "scrfd_10g_bnkps.onnx"), ("landmarks", "2d106det-symbol.json or 2d106det.onnx")):
        m = esub.add_parser(model, help=f"export from {what}")
        m.add_argument("--weights", type=Path, required=True, help=what)
        m.add_argument("--out", type=Path, required=True)
        if model == "generator":
            m.add_argument("--num-blocks", type=int, choices=(1, 2, 3), default=2)
        m.set_defaults(func=_one)
    a = esub.add_parser("all", help="export all four from a weights folder (stand-ins where files are missing)")
    a.add_argument("--weights-dir", type=Path, default=None, help="default weights/")
    a.add_argument("--out-dir", type=Path, default=Path("engines/onnx"))
    a.add_argument("--num-blocks", type=int, choices=(1, 2, 3), default=2)
    a.set_defaults(func=_all)
