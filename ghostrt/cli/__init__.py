"""The one `ghostrt` command. It only wires subcommands: each lives in its own module, which exposes
`register(subparsers)` adding one subparser whose `func(args)` runs it. Modules are imported only for the
command being run, so `ghostrt swap` never pays for (or needs) torch."""

import argparse
import importlib
import sys

from ghostrt.errors import GhostError

COMMANDS = {
    "weights": ("ghostrt.cli.weights", "write stand-in weights or fetch the official GHOST set"),
    "export": ("ghostrt.cli.export", "export the four nets to ONNX with a parity check"),
    "build": ("ghostrt.cli.build", "build TensorRT / TensorRT-RTX engines (cached per GPU)"),
    "engines": ("ghostrt.cli.engines", "list built engines with their key fields and fidelity"),
    "doctor": ("ghostrt.cli.doctor", "report backends, GPUs, versions and execution providers"),
    "calibrate": ("ghostrt.cli.calibrate", "build an INT8 calibration set from real face crops"),
    "check": ("ghostrt.cli.check", "measure FP16/INT8 fidelity against FP32 and apply the gate"),
    "swap": ("ghostrt.cli.swap", "swap faces in an image, a video or a webcam stream"),
    "render": ("ghostrt.cli.render", "render many videos (resumable), or split long ones over Ray workers"),
    "bench": ("ghostrt.cli.bench", "per-stage latency/throughput against the GHOST-style reference"),
    "verify": ("ghostrt.cli.verify", "check files for ghostrt's C2PA manifest, label and invisible watermark"),
    "ui": ("ghostrt.cli.ui", "local web app: image, video and live webcam swaps in the browser"),
    "demo": ("ghostrt.cli.demo", "the main job: stand-in or official weights → ONNX → swap a real photo"),
}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ghostrt", description="Real-time GHOST face swap (TensorRT / ONNX Runtime)")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if name == command:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
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
