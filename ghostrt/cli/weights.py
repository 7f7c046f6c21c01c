"""`ghostrt weights stand-in | fetch`."""

from pathlib import Path


def _standin(args):
    from ghostrt.weights.standin import write_standins

    blocks = tuple(int(b) for b in args.blocks.split(","))
    write_standins(args.out, seed=args.seed, blocks=blocks)
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
    s.set_defaults(func=_standin)
    f = wsub.add_parser("fetch", help="download the official set (weights/manifest.json), pin sha256")
    f.add_argument("--weights-dir", type=Path, default=Path("weights"))
    f.add_argument("--timeout", type=float, default=30.0)
    f.set_defaults(func=_fetch)
