"""`ghostrt build`: TensorRT / TensorRT-RTX engines, or OpenVINO CPU blobs, for the chosen nets and precision,
through the cache."""

from ghostrt.errors import GhostError


def _models(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    if not models:
        raise GhostError("--models needs at least one model name")
    return models


def run(args) -> int:
    from ghostrt.export.engine_build import build_models

    build_models(args.models, args.precision, backend=args.backend, max_batch=args.max_batch,
                 opt_batch=args.opt_batch, weights_dir=args.weights_dir, engines_dir=args.engines_dir,
                 onnx_dir=args.onnx_dir, calibration_npz=args.calibration, rtx_target=args.rtx_target,
                 accept_fidelity=args.accept_fidelity)
    return 0


def register(sub) -> None:
    from ghostrt.export.engine_build import DEFAULT_MAX_BATCH, MODELS

    p = sub.add_parser("build", help="build TensorRT / TensorRT-RTX engines (cached per GPU) or OpenVINO CPU blobs",
                       description="Build one engine per model from its FP32 ONNX (exported if missing). A build "
                                   "whose ONNX, backend version, target GPU (or CPU), precision recipe and shapes "
                                   "are unchanged is reused from the cache and reported as 'cached'. OpenVINO "
                                   "blobs are measured against FP32 on real photos; bf16 and INT8 must pass the "
                                   "fidelity gate.")
    p.add_argument("--precision", required=True, choices=("fp32", "fp16", "bf16", "int8"),
                   help="fp16: TensorRT only; bf16: OpenVINO only, on a CPU with AVX-512-BF16 or AMX")
    p.add_argument("--backend", default="auto", choices=("auto", "trt", "trt-rtx", "openvino"),
                   help="auto: full TensorRT on a GPU it supports, else TensorRT-RTX (builds without a GPU); "
                        "openvino: a blob compiled for this CPU (--max-batch/--rtx-target do not apply)")
    p.add_argument("--rtx-target", default="ampere+", choices=("ampere+", "turing"),
                   help="TensorRT-RTX only: ampere+ = any RTX 30/40/50 (CC 8.6/8.9/12.x, default); turing = "
                        "RTX 20 (CC 7.5; no FP32 GEMM there, so build FP16/INT8)")
    p.add_argument("--models", type=_models, default=list(MODELS), metavar="M1,M2",
                   help=f"comma-separated, from {','.join(MODELS)},retinaface (default: the four GHOST nets)")
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="largest batch the engines accept")
    p.add_argument("--opt-batch", type=int, default=None, help="batch the build optimises for (default: max)")
    p.add_argument("--weights-dir", default=None, help="official GHOST weights (default: stand-ins)")
    p.add_argument("--engines-dir", default="engines", help="engine cache folder (default: engines)")
    p.add_argument("--onnx-dir", default=None, help="ONNX folder (default: ENGINES_DIR/onnx)")
    p.add_argument("--calibration", default=None, metavar="NPZ",
                   help="calibration set from `ghostrt calibrate` (default: calibration/sets/default.npz); "
                        "INT8 needs it, FP16 uses it when present")
    p.add_argument("--accept-fidelity", action="store_true",
                   help="keep (and allow loading) an FP16/bf16/INT8 engine that misses the fidelity gate")
    p.set_defaults(func=run)
