"""`ghostrt check`: parse, run export.fidelity_check per net, print, record, exit 2 on a missed gate."""

from dataclasses import fields
from pathlib import Path

from ghostrt.calibration.build import DEFAULT_OUT as DEFAULT_CALIBRATION
from ghostrt.errors import GhostError
from ghostrt.export.fidelity_check import (ALL_MODELS, DEFAULT_OUT, _gates, check_model, machine_info,
                                           merge_results, parse_gate, parse_models, print_table, result_key)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "check", help="measure FP16/INT8 fidelity against FP32 and apply the gate",
        description="Build the FP16 (AutoCast, normalisation FP32) or INT8 (ModelOpt Q/DQ; trained nets get the "
                    "accuracy-gated fallback) ONNX of each net, compare with FP32 on ONNX Runtime CPU over real "
                    "photos, print the numbers and exit 2 when a gate is missed.")
    parser.add_argument("--precision", choices=("fp16", "bf16", "int8", "fp32"), required=True,
                        help="fp16: ONNX variant (and TensorRT engine where a GPU is); bf16, fp32: --backend "
                             "openvino only; int8: both")
    parser.add_argument("--backend", choices=("onnx", "openvino"), default="onnx",
                        help="onnx (default): the ONNX variant on ONNX Runtime (plus the TensorRT engine where a "
                             "GPU is); openvino: also the blob OpenVINO compiles for this CPU (cached in the "
                             "engines folder above --onnx-dir), recorded as '<precision>/openvino'")
    parser.add_argument("--models", default=",".join(ALL_MODELS),
                        help=f"comma-separated, from {','.join(ALL_MODELS)} (default: all)")
    parser.add_argument("--weights-dir", type=Path, default=None, help="weights (default: resolved as for export)")
    parser.add_argument("--onnx-dir", type=Path, default=Path("engines/onnx"), help="FP32 and variant ONNX folder")
    parser.add_argument("--calibration", type=Path, default=DEFAULT_CALIBRATION,
                        help=f"calibration set (.npz; built with `ghostrt calibrate` defaults if missing; "
                             f"default {DEFAULT_CALIBRATION})")
    parser.add_argument("--methods", default="entropy,max", help="INT8 calibration methods to compare")
    parser.add_argument("--calibration-samples", type=int, default=None, metavar="N",
                        help="use at most N calibration samples per net (memory: the calibrator keeps every "
                             "sample's activations; default: all)")
    parser.add_argument("--gate", action="append", default=[], metavar="NAME=VALUE",
                        help="override one gate threshold, e.g. detector_iou=0.9 (names: "
                             + ", ".join(f.name for f in fields(_gates()["fp16"])) + ")")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"fidelity JSON (default {DEFAULT_OUT})")
    parser.add_argument("--accept-fidelity", action="store_true", help="record a missed gate but exit 0")
    parser.set_defaults(func=run)


def run(args) -> int:
    models = parse_models(args.models)
    if args.precision in ("bf16", "fp32") and getattr(args, "backend", "onnx") != "openvino":
        raise GhostError(f"--precision {args.precision}: no ONNX variant to check; measure the OpenVINO blob "
                         f"with --backend openvino")
    gate = parse_gate("bf16" if args.precision == "fp32" else args.precision, args.gate)
    rows = [row for model in models for row in check_model(model, args.precision, gate, args)]
    print_table(rows)
    merge_results(Path(args.out), rows, machine_info())
    print(f"wrote {args.out}")
    missed = [r for r in rows if r["gate_applied"] and not r["passed"]]
    if missed and not args.accept_fidelity:
        detail = "; ".join(f"{r['model']} {result_key(r)}: {', '.join(r['failures'])}" for r in missed)
        raise GhostError(f"{args.out}: fidelity gate missed ({detail}); pass --accept-fidelity to keep going")
    return 0
