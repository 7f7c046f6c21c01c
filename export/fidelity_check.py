"""What `ghostrt check` and `ghostrt build` measure: make the FP16 or INT8 ONNX of each net, measure it against FP32 on real photos, apply the
gate, and record the numbers (merged per model and precision) in bench/fidelity.json. With --backend openvino
the blob OpenVINO compiles for this CPU (from the INT8 variant, or bf16/fp32 from the FP32 ONNX) is measured
the same way and recorded under "<precision>/openvino"; a trained net's INT8 variant is then the one searched
and gated on OpenVINO itself (export.openvino_gate), and TensorRT's ONNX Runtime row is left untouched."""

import json
from dataclasses import fields, replace
from pathlib import Path

from ghostrt.atomic import atomic_path
from ghostrt.calibration.build import DEFAULT_OUT as DEFAULT_CALIBRATION
from ghostrt.errors import GhostError

ALL_MODELS = ("generator", "arcface", "detector", "landmarks", "retinaface")
DEFAULT_OUT = Path("bench/fidelity.json")


def _gates():
    from ghostrt.export.fidelity import GATES

    return GATES


def parse_models(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in models if m not in ALL_MODELS]
    if unknown or not models:
        raise GhostError(f"--models: unknown {', '.join(unknown) or '(none given)'}; "
                         f"choose from {','.join(ALL_MODELS)}")
    return models


def parse_gate(precision: str, overrides) -> "Gate":
    gate = _gates()[precision]
    names = {f.name for f in fields(gate)}
    for item in overrides:
        name, _, value = item.partition("=")
        if name not in names:
            raise GhostError(f"--gate {item}: unknown threshold; choose from {', '.join(sorted(names))}")
        try:
            gate = replace(gate, **{name: float(value)})
        except ValueError:
            raise GhostError(f"--gate {item}: {value!r} is not a number") from None
    return gate


def machine_info() -> dict:
    from ghostrt.runtime.backends import host

    # openvino: None where not installed (the OpenVINO rows are absent then too)
    return host.machine_info({"numpy": "numpy", "onnx": "onnx", "onnxruntime": "onnxruntime-gpu",
                              "polygraphy": "polygraphy", "nvidia-modelopt": "nvidia-modelopt",
                              "openvino": "openvino"})


def merge_results(path: Path, rows: list[dict], machine: dict) -> dict:
    """Update bench/fidelity.json in place: results[model][precision] = row (other entries are kept)."""
    data = {"results": {}}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise GhostError(f"{path}: not valid JSON; move it away or fix it") from None
    results = data.setdefault("results", {})
    for row in rows:
        results.setdefault(row["model"], {})[result_key(row)] = {**row, "machine": machine}
    data["machine"] = machine
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    return data


def result_key(row: dict) -> str:
    """'int8' for an ONNX variant's row, 'int8/openvino' for one measured through another backend."""
    return f"{row['precision']}/{row['backend']}" if row.get("backend") else row["precision"]


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _summary(row: dict) -> str:
    t = row["task"]
    if row["model"] == "generator":
        return f"PSNR min {t['psnr_db_min']:.2f} dB"
    if row["model"] == "arcface":
        return f"cosine min {t['embedding_cosine_min']:.5f}"
    if row["model"] == "landmarks":
        return f"point err max {100 * t['point_error_iod_max']:.3f} % IOD"
    return (f"faces {t['faces_found']}/{t['faces_fp32']}  IoU min {t['box_iou_min']:.3f}  "
            f"kps max {t['kps_px_max']:.2f} px / {100 * t['kps_iod_max']:.2f} % IOD")


def print_table(rows: list[dict]) -> None:
    print(f"{'model':<11} {'prec':<14} {'raw rel err':>11} {'raw cos':>9}  {'task numbers':<60} verdict")
    for row in rows:
        verdict = ("pass" if row["passed"] else "FAIL") if row["gate_applied"] else \
            (row["weights"] if row["precision"] != "fp32" else "numbers only")
        extra = f"  INT8 {row['precision_plan']['int8_coverage_pct']:.1f} % MACs" \
            if "int8_coverage_pct" in row.get("precision_plan", {}) else ""
        if row.get("runtime_precisions"):
            extra += "  runs " + ", ".join(f"{k} {v}" for k, v in sorted(row["runtime_precisions"].items()))
        print(f"{row['model']:<11} {result_key(row):<14} {row['raw']['max_rel_error']:>11.3e} "
              f"{row['raw']['min_cosine']:>9.6f}  {_summary(row) + extra:<60} {verdict}")
    for runner in dict.fromkeys(row["runner"].split(", blob ")[0] for row in rows):
        print(f"runner: {runner}")


def check_model(model: str, precision: str, gate, args, log=print) -> list[dict]:
    """The rows for one net: the ONNX variant's (fp16/int8), then with --backend openvino the blob's."""
    from ghostrt.export.models import ensure_onnx, is_standin

    fp32 = ensure_onnx(model, weights_dir=args.weights_dir, onnx_dir=args.onnx_dir, log=log)
    if precision == "int8" and getattr(args, "backend", "onnx") == "openvino" and not is_standin(fp32):
        return [openvino_gated_numbers(model, fp32, gate, args, log)]
    rows, compiled_from = [], fp32
    if precision in ("fp16", "int8"):
        variant = Path(args.onnx_dir) / f"{model}.{precision}.onnx"
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        row = make_variant(model, precision, fp32, variant, gate, args.weights_dir, args.onnx_dir,
                           args.calibration, methods=methods, calibration_samples=args.calibration_samples,
                           log=log)
        engine = engine_numbers(model, precision, fp32, args)
        if engine is not None:
            row["engine"] = engine
        rows.append(row)
        compiled_from = variant
    if getattr(args, "backend", "onnx") == "openvino":
        rows.append(openvino_numbers(model, precision, fp32, compiled_from, gate, rows[0] if rows else None, args))
    return rows


def openvino_gated_numbers(model: str, fp32: Path, gate, args, log=print) -> dict:
    """Trained INT8 on OpenVINO: the plan searched and gated on OpenVINO (<model>.int8-openvino.onnx, reused
    while its inputs are unchanged), its blob compiled and measured. TensorRT's ONNX Runtime row is left as is."""
    from ghostrt.export import openvino_build

    openvino_build.require_precision("int8")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    calibration = _calibration(args.calibration, args.weights_dir, model, log)
    variant, _, variant_row = openvino_build.int8_variant(model, fp32, calibration, args.weights_dir, log,
                                                          gate=gate, methods=methods)
    row = openvino_numbers(model, "int8", fp32, variant, gate, variant_row, args)
    return {**row, "precision_plan": variant_row.get("precision_plan", {}),
            "variant_onnx_fidelity": {"runner": variant_row.get("runner"), "task": variant_row.get("task")}}


def openvino_numbers(model: str, precision: str, fp32: Path, onnx_path: Path, gate, variant_row, args) -> dict:
    """The blob OpenVINO compiles for this CPU from `onnx_path` (cached beside the engines, with the same key
    `ghostrt build --backend openvino` uses), run on the validation set and compared with FP32 like the ONNX
    variant: the numbers of what the CPU really executes (u8 kernels, bf16), not a simulation of it."""
    from ghostrt.export import fidelity, openvino_build
    from ghostrt.export.engine_build import recipe_from_row
    from ghostrt.export.models import is_standin
    from ghostrt.runtime.backends import openvino_backend as ovb

    openvino_build.require_precision(precision)
    recipe = recipe_from_row(precision, variant_row) if variant_row is not None else \
        ({"precision": precision, "hint": ovb.HINTS[precision]} if precision != "fp32" else None)
    blob, manifest, _ = ovb.compile_blob(model, onnx_path, precision, Path(args.onnx_dir).parent,
                                         quant_recipe=recipe, source_onnx=fp32 if onnx_path != fp32 else None,
                                         log=lambda line: None)
    reference = fidelity.reference_for(model, fp32, args.weights_dir, args.onnx_dir)
    return openvino_build.measure_blob(model, precision, blob, manifest, reference, gate, is_standin(fp32))


def engine_numbers(model: str, precision: str, fp32: Path, args) -> dict | None:
    """Where a GPU and a built engine exist, the same comparison with the engine as the test runner, so the
    numbers cover what TensorRT did to the graph too. None (and nothing run) without a GPU."""
    from ghostrt.runtime.backends import engine_cache, trt_backend

    gpu, _ = trt_backend.probe_gpu()
    if gpu is None:
        return None
    from ghostrt.export import fidelity
    from ghostrt.export.models import is_standin
    from ghostrt.runtime.backends.executors import run_chunked
    from ghostrt.runtime.backends.trt_executor import TrtExecutor, runtime_cache_path

    backend = trt_backend.load_backend("auto")
    engines_dir = Path(args.onnx_dir).parent
    path, manifest = engine_cache.engine_for_run(engines_dir, model, precision, backend.name, gpu, backend.version)
    reference = fidelity.validation_reference(model, fp32)
    with TrtExecutor(path, backend, runtime_cache_path(path, gpu)) as runner:
        out = run_chunked(runner, dict(reference.inputs), int(manifest.get("max_batch") or 1))
    outputs = {name: value.astype("float32") for name, value in out.items()}
    untrained = is_standin(fp32)
    numbers = reference.compare(None, outputs)
    gate = fidelity.GATES[precision]
    applied = not (untrained and precision == "int8")
    return {"runner": f"{backend.title} engine {path.name} on {gpu.name} vs FP32 ONNX on ONNX Runtime CPU",
            "failures": fidelity.gate_failures(model, numbers["task"], gate) if applied else [], **numbers}


def make_variant(model: str, precision: str, fp32: Path, variant: Path, gate, weights_dir, onnx_dir, calibration,
                 methods=("entropy", "max"), calibration_samples=None, log=print) -> dict:
    """Write the FP16 / INT8 ONNX of `fp32` to `variant` and measure it: the one path `check` and `build` share,
    so an engine is built from exactly the graph whose numbers were gated. Returns the fidelity row, with the
    quantization plan under "precision_plan". Trained INT8 nets get the accuracy-gated fallback."""
    from ghostrt.export import fidelity, precision as variants
    from ghostrt.export.models import is_standin

    untrained = is_standin(fp32)
    reference = fidelity.reference_for(model, fp32, weights_dir, onnx_dir)
    calibration = Path(calibration) if calibration is not None else DEFAULT_CALIBRATION
    if precision == "fp16":
        variants.make_fp16_onnx(fp32, variant, model, calibration if calibration.is_file() else None)
        quantization = {"fp32_nodes": variants.fp32_nodes(variant)}
    elif untrained:
        _, quantization = variants.make_int8_onnx(fp32, variant, model,
                                                  _calibration(calibration, weights_dir, model, log),
                                                  max_samples=calibration_samples)
    else:
        quantization = variants.quantize_with_fallback(
            fp32, variant, model, _calibration(calibration, weights_dir, model, log), gate, methods=list(methods),
            reference=reference, cache_dir=Path(onnx_dir) / "sensitivity", log=log)
    row = fidelity.fidelity_row(model, precision, reference, variant, untrained, gate)
    row["precision_plan"] = {k: v for k, v in quantization.items() if k != "numbers"}
    return row


def _calibration(path, weights_dir, model: str, log) -> Path:
    path = Path(path)
    if not path.is_file():
        from ghostrt.calibration.build import build

        log(f"calibration set {path} missing: building it from the packaged photos")
        build(path, weights_dir=weights_dir, embed=model == "generator")
    return path


def gate_verdict(row: dict) -> str | None:
    """None when the row passes (or no gate applies); else one line with the numbers that missed."""
    if not row.get("gate_applied") or row.get("passed"):
        return None
    return f"{row['model']} {row['precision']} misses the fidelity gate: {'; '.join(map(str, row['failures']))}"
