"""`make demo`: the main job end to end on this machine.

Official weights from weights/ when present, else stand-ins (said loudly) → the four nets as ONNX with their
parity rows → a swap of a real public-domain photo with the result and a debug sheet under demo/.
"""

from pathlib import Path

BANNER = "=" * 78


def _photos() -> tuple[Path, Path]:
    """Public-domain photos shipped inside packages: Grace Hopper (matplotlib) and the astronaut (scikit-image)."""
    import matplotlib
    import skimage

    source = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    target = Path(skimage.__file__).parent / "data" / "astronaut.png"
    return source, target


def run(args) -> int:
    from ghostrt.export.models import MODELS, export_all, read_sidecar
    from ghostrt.weights.resolve import resolve_weights

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ws = resolve_weights(args.weights_dir, num_blocks=args.num_blocks)
    print(BANNER)
    print(ws.banner())
    print(BANNER)
    paths = export_all(args.weights_dir, args.engines_dir / "onnx", num_blocks=args.num_blocks)
    print("\nparity of each export (ONNX Runtime CPU vs reference; fails above 1e-4 relative):")
    for model in MODELS:
        side = read_sidecar(paths[model]) or {}
        p = side.get("parity") or {}
        tag = "stand-in, untrained" if side.get("standin") else "official"
        print(f"  {model:<10} max abs {p.get('max_abs', float('nan')):.3e}  max rel "
              f"{p.get('max_rel', float('nan')):.3e}  batch-N vs stacked {p.get('stacked_max_abs', float('nan')):.3e}"
              f"  [{tag}]")
    source, target = _photos()
    print(f"\nswap: identity of {source.name} (matplotlib sample data) onto {target.name} (scikit-image data)")
    import ghostrt

    with ghostrt.Swapper.load(weights=args.weights_dir, engines=args.engines_dir, num_blocks=args.num_blocks) as sw:
        for model, choice in sw.choices.items():
            print(f"  backend   {model:<10} {choice.reason}")
        out_file = sw.swap_image(target, out / "result.png", sw.identity(source), debug_sheet=out / "sheet.png")
    report = ghostrt.verify(out / "result.png")
    print(f"\ndemo: wrote {out / 'result.png'} and {out / 'sheet.png'} "
          f"({len(out_file.result.swapped)} face swapped)")
    print("demo: `ghostrt verify` on the result:\n  " + "\n  ".join(report.lines()))
    if ws.standin:
        print("demo: made with STAND-IN (untrained) weights -- the face is altered, but this is not a real swap")
    return 0 if report.intact else 1


def register(sub):
    p = sub.add_parser("demo", help="the main job: weights → ONNX (parity) → swap a real photo → demo/")
    p.add_argument("--out-dir", type=Path, default=Path("demo"))
    p.add_argument("--weights-dir", type=Path, default=None, help="default weights/ (stand-ins where missing)")
    p.add_argument("--engines-dir", type=Path, default=Path("engines"), help="engine cache; ONNX under its onnx/")
    p.add_argument("--num-blocks", type=int, choices=(1, 2, 3), default=2)
    p.set_defaults(func=run)
