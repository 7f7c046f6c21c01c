"""`ghostrt weights stand-in | fetch`."""

from pathlib import Path


def _standin(args):
    from ghostrt.errors import GhostError
    from ghostrt.weights.standin import ALL_PARTS, write_standins

    blocks = tuple(int(b) for b in args.blocks.split(","))
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = [p for p in parts if p not in ALL_PARTS]
    if unknown or not parts:
        raise GhostError(f"--parts {args.parts}: choose from {', '.join(ALL_PARTS)}")
    write_standins(args.out, seed=args.seed, blocks=blocks, parts=parts)
    print(f"wrote UNTRAINED stand-in weights to {args.out}/ (see README.txt there)")
    return 0


def _fetch(args):
    from ghostrt.weights.fetch import fetch

    fetch(args.weights_dir, timeout=args.timeout)
    return 0


def register(sub):
    p = sub.add_parser("weights", help="write stand-in weights or fetch the official GHOST set")
    wsub = p.add_subparsers(dest="weights_command", required=True)
    s = wsub.add_parser("stand-in", help="write deterministic untrained weights in the official formats")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--blocks", default="1,2,3", help="generator block counts to write (default 1,2,3)")
    s.add_argument("--parts", default="generator,arcface,detector,landmarks",
                   help="nets to write stand-ins for, comma-separated (default all four)")
    s.set_defaults(func=_standin)
    f = wsub.add_parser("fetch", help="download the official set (weights/manifest.json), pin sha256")
    f.add_argument("--weights-dir", type=Path, default=Path("weights"))
    f.add_argument("--timeout", type=float, default=30.0)
    f.set_defaults(func=_fetch)
