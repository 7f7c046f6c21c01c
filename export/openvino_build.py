"""`ghostrt build --backend openvino`: FP32 ONNX → (INT8: the Q/DQ variant gated on OpenVINO) → CPU blob, measured.

A trained net's INT8 plan is searched with OpenVINO as the judge (export.openvino_gate), in a file of its own;
TensorRT's ONNX-Runtime-gated <model>.int8.onnx stays as it is.

The blob is what runs, so the blob is what gets measured: after compile_blob (cached like a TensorRT engine),
the compiled blob itself runs the fixed real-photo validation set through OpenVinoExecutor and is compared with
the FP32 ONNX on ONNX Runtime (fidelity.Reference.compare), exactly as the FP16/INT8 ONNX are for TensorRT.
bf16 and INT8 then face fidelity.GATES (untrained stand-in INT8: numbers only, as for TensorRT); the verdict
goes into the blob's manifest, and OpenVinoExecutor's loader (openvino_backend.validate_for_run) refuses a
bf16/INT8 blob whose verdict is missing or not accepted. FP32 blobs are measured too, numbers only: they show
what OpenVINO's own kernels change.
"""

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ghostrt.errors import GhostError
from ghostrt.runtime.backends import engine_cache

CHUNK = 4          # validation images per OpenVINO call: the batch the runtime uses for faces


# ------------------------------------------------------------------------------------------ what runs it

def openvino_title(ov_version: str) -> str:
    """'OpenVINO 2026.4.1' from '2026.4.1-22982-e213a147257-releases/2026/4'."""
    return f"OpenVINO {ov_version.split('-')[0]}"


def require_precision(precision: str):
    """The CpuInfo of this machine, or a one-line GhostError when OpenVINO cannot run `precision` here."""
    from ghostrt.runtime.backends import openvino_backend as ovb

    if precision not in ovb.PRECISIONS:
        raise GhostError(f"--precision {precision}: the OpenVINO backend builds {', '.join(ovb.PRECISIONS)} "
                         f"(CPUs run bf16 where TensorRT runs fp16)")
    cpu = ovb.probe_cpu(ovb.load_openvino().Core())
    if not cpu.supports(precision):
        raise GhostError(f"--precision {precision}: this CPU ({cpu.name}, {', '.join(cpu.isa) or 'no AVX'}) has no "
                         f"{ovb.CAPABILITY[precision]} support in OpenVINO (it offers "
                         f"{', '.join(cpu.capabilities)}); bf16 needs AVX-512-BF16 or AMX; use --precision "
                         f"int8 or fp32")
    return cpu


# --------------------------------------------------------------------------------------------- measuring

def run_blob(blob: Path, inputs: dict) -> dict[str, np.ndarray]:
    """All outputs of the compiled blob for batch-first `inputs`, CHUNK at a time."""
    from ghostrt.runtime.backends.batching import run_chunked
    from ghostrt.runtime.backends.openvino_backend import OpenVinoExecutor

    return {name: np.asarray(value, np.float32)
            for name, value in run_chunked(OpenVinoExecutor(blob), inputs, CHUNK).items()}


def measure_blob(model: str, precision: str, blob: Path, manifest: dict, reference, gate, untrained: bool) -> dict:
    """One fidelity row (the shape of fidelity.fidelity_row) for the compiled blob against the FP32 ONNX.
    Gate applied to bf16 and INT8, except untrained stand-in INT8; FP32 is numbers only."""
    from ghostrt.export import fidelity
    from ghostrt.runtime.backends import openvino_backend as ovb

    numbers = reference.compare(None, run_blob(blob, reference.inputs))
    applied = precision != "fp32" and not (untrained and precision == "int8")
    fails = fidelity.gate_failures(model, numbers["task"], gate) if applied else []
    cpu = manifest["target_gpu"].removeprefix("CPU ")
    return {"model": model, "precision": precision, "backend": ovb.BACKEND, "onnx": manifest.get("onnx_file"),
            "fp32_onnx": str(reference.onnx_path),
            "runner": f"{openvino_title(manifest['backend_version'])} {precision} on {cpu}, blob {blob.name}, "
                      f"vs FP32 ONNX on ONNX Runtime CPU",
            "samples": len(next(iter(reference.inputs.values()))),
            "weights": "untrained: numbers only" if untrained and precision == "int8" else
                       ("untrained stand-in" if untrained else "trained"),
            "gate": asdict(gate), "gate_applied": applied, "passed": (not fails) if applied else None,
            "failures": fails, "runtime_precisions": manifest.get("runtime_precisions", {}),
            "blob": str(blob), "blob_sha256": manifest["engine_sha256"], **numbers}


def fidelity_record(row: dict, variant_row: dict | None, accept_fidelity: bool) -> dict:
    """What goes into the manifest: the TensorRT summary fields plus the gate used and the blob measured, so a
    rebuild of the cached blob under the same gate reuses the numbers instead of measuring again."""
    from ghostrt.export.engine_build import _fidelity_summary

    record = _fidelity_summary({**row, "precision_plan": (variant_row or {}).get("precision_plan", {})})
    if row["precision"] == "fp32":
        record["summary"] = record["summary"].replace(" (untrained: numbers only)", "") + " (fp32: numbers only)"
    missed = row["gate_applied"] and not row["passed"]
    return {**record, "gate": row["gate"], "blob_sha256": row["blob_sha256"], "samples": row["samples"],
            "variant_onnx_fidelity": (variant_row or {}).get("task"), "accepted": not missed or accept_fidelity}


def measured_before(manifest: dict, gate) -> dict | None:
    """The manifest's fidelity when it was measured on this very blob under this very gate, else None."""
    recorded = manifest.get("fidelity") or {}
    if recorded.get("blob_sha256") == manifest["engine_sha256"] and recorded.get("gate") == asdict(gate):
        return recorded
    return None


# ------------------------------------------------------------------------------------------------ builds

def build_models(models, precision: str, weights_dir=None, engines_dir=engine_cache.DEFAULT_ENGINES_DIR,
                 onnx_dir=None, calibration_npz=None, accept_fidelity: bool = False, log=print) -> list:
    """For each model: FP32 ONNX → (INT8: int8_variant, gated on OpenVINO; bf16: the FP32 ONNX itself) →
    compile_blob (cached) → the blob measured against FP32 and gated → verdict in its manifest → one line."""
    from ghostrt.export import engine_build, fidelity
    from ghostrt.export.models import is_standin
    from ghostrt.runtime.backends import openvino_backend as ovb

    require_precision(precision)
    engines_dir = Path(engines_dir)
    onnx_dir = Path(onnx_dir) if onnx_dir else engines_dir / "onnx"
    calibration_npz = Path(calibration_npz) if calibration_npz else engine_build.default_calibration_npz()
    results = []
    for model in models:
        source = engine_build.fp32_onnx(model, weights_dir, onnx_dir, log=log)
        variant_row = None
        if precision == "int8":
            onnx_path, recipe, variant_row = int8_variant(model, source, calibration_npz, weights_dir, log)
        else:
            onnx_path, recipe = source, ({"precision": precision, "hint": ovb.HINTS[precision]}
                                         if precision != "fp32" else None)
        started = time.perf_counter()
        blob, manifest, cached = ovb.compile_blob(model, onnx_path, precision, engines_dir, quant_recipe=recipe,
                                                  source_onnx=source if onnx_path != source else None,
                                                  log=lambda line: None, warn=log)   # a corrupt cached blob is said
        seconds = time.perf_counter() - started
        gate = fidelity.GATES["bf16" if precision == "fp32" else precision]
        record = measured_before(manifest, gate)
        if record is not None:
            record = {**record, "accepted": record.get("passed") is not False or accept_fidelity}
        else:
            reference = fidelity.reference_for(model, source, weights_dir, onnx_dir)
            row = measure_blob(model, precision, blob, manifest, reference, gate, is_standin(source))
            record = fidelity_record(row, variant_row, accept_fidelity)
        manifest_path = Path(manifest["manifest_path"])
        engine_cache.record_fidelity(manifest_path, record)
        result = engine_build.BuildResult(model, precision, openvino_title(manifest["backend_version"]), seconds,
                                          manifest["engine_bytes"], cached, blob, manifest_path)
        log(f"{result.line()}  fidelity: {record['summary']}  runtime {precision_counts(manifest)}")
        if not record["accepted"]:
            raise GhostError(f"{manifest_path}: {model} {precision} on OpenVINO misses the fidelity gate: "
                             f"{'; '.join(record['failures'])}; the blob is recorded as not accepted and will not "
                             f"be loaded (pass --accept-fidelity to accept it)")
        results.append(result)
    return results


def int8_variant(model: str, source: Path, calibration_npz, weights_dir=None, log=print, gate=None, methods=None):
    """(INT8 ONNX, recipe, fidelity row) for OpenVINO. Trained nets: the plan searched and gated on OpenVINO
    itself (openvino_gate: <model>.int8-openvino.onnx), since its u8 kernels and ONNX Runtime's simulation
    disagree; untrained stand-ins: the plain variant precision_onnx makes (numbers only, no search)."""
    from ghostrt.export import engine_build, fidelity, openvino_gate
    from ghostrt.export.models import is_standin

    if is_standin(source):
        return engine_build.precision_onnx(source, "int8", model, calibration_npz, weights_dir, log=log)
    return openvino_gate.openvino_int8_onnx(source, model, calibration_npz, gate or fidelity.GATES["int8"],
                                            weights_dir, methods, log=log)


def precision_counts(manifest: dict) -> str:
    """'u8 52, f32 4': how many Convolution/MatMul nodes OpenVINO really runs in each precision."""
    counts = manifest.get("runtime_precisions") or {}
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items(), key=lambda kv: -kv[1])) or "?"
