"""`ghostrt verify FILE...`: one block per file saying whether it carries ghostrt's provenance (C2PA manifest,
label, invisible watermark) and whether it is intact. Exit 0: every file's provenance is intact; 1: some file
has none (or a broken one); 2: bad input (missing, empty, not an image or video)."""

import sys

from ghostrt.errors import GhostError


def register(subparsers) -> None:
    p = subparsers.add_parser("verify", help="check files for ghostrt's C2PA manifest, label and watermark")
    p.add_argument("files", nargs="+", metavar="FILE", help="images or videos")
    p.set_defaults(func=run)


def run(args) -> int:
    from ghostrt.runtime.io.verify import verify

    code = 0
    for i, name in enumerate(args.files):
        if i:
            print()
        try:
            report = verify(name)
        except GhostError as err:
            print(f"ghostrt: error: {err}", file=sys.stderr)
            code = 2
            continue
        print("\n".join(report.lines()), flush=True)
        if not report.intact and code == 0:
            code = 1
    return code
