"""The one `ghostrt` command. It only wires subcommands; each area registers its own."""

import argparse
import importlib
import sys

from ghostrt.errors import GhostError

# (module, description) -- each module exposes register(subparsers); imported lazily so that
# `ghostrt swap` never pays for (or needs) torch.
AREAS = {
    "weights": ("ghostrt.weights.cli", "write stand-in weights or fetch the official GHOST set"),
    "export": ("ghostrt.export.cli", "export the four nets to ONNX with a parity check"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ghostrt", description="Real-time GHOST face swap (TensorRT / ONNX Runtime)")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in AREAS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        importlib.import_module(module).register(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in AREAS else None)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GhostError as err:
        if args.verbose:
            raise
        print(f"ghostrt: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ghostrt: interrupted; no partial output was left", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
