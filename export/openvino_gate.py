"""The INT8 plan for OpenVINO, chosen by measuring the candidates on OpenVINO itself.

ONNX Runtime (graph optimisations off) simulates Q/DQ arithmetic; OpenVINO's CPU plugin really runs the Q/DQ
layers with u8 kernels, and on an AVX2 CPU without VNNI those round differently (measured here: trained
RetinaFace INT8 4.81 % IOD keypoint error on ONNX Runtime, 6.66 % on OpenVINO, against a 5 % gate). So a plan
gated on ONNX Runtime can be refused once compiled. OpenVinoReference is a drop-in for fidelity.Reference whose
compare() compiles the candidate with OpenVINO in memory (the blob's own compile settings, nothing cached) and
compares its outputs with the same FP32 outputs; handed to precision.quantize_with_fallback as `reference=`,
every gate decision of the search (all-INT8, each greedy step, each give-back, the final ModelOpt file) is an
OpenVINO measurement. Only the per-layer damage ranking stays on ONNX Runtime (the probe subset): it orders the
candidates, it never accepts one.

The result is its own file, <model>.int8-openvino.onnx, beside a sidecar whose inputs hold the OpenVINO
version and this CPU's ISA flags as well as the FP32 source, calibration set, converter and gate: kernels
differ by ISA and version, so a plan measured under one is searched again under another. TensorRT's
<model>.int8.onnx is not touched.
"""

import inspect
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ghostrt.atomic import atomic_path
from ghostrt.errors import file_error
from ghostrt.runtime.backends import engine_cache

VARIANT_SUFFIX = "int8-openvino"


class OpenVinoReference:
    """fidelity.Reference's interface (model, onnx_path, inputs, frames, compare) with OpenVINO as the test
    runner: compare(onnx) = the FP32 reference's own compare on the outputs OpenVINO computes for `onnx`."""

    def __init__(self, reference):
        from ghostrt.runtime.backends import openvino_backend as ovb

        ov = ovb.load_openvino()
        self.reference = reference
        self.model, self.onnx_path = reference.model, reference.onnx_path
        self.inputs, self.frames = reference.inputs, reference.frames
        self.core = ov.Core()
        self.cpu = ovb.probe_cpu(self.core)
        self.version = ov.get_version()
        self.runs: list[str] = []        # one label per OpenVINO compile-and-run (what the gate decisions read)

    @property
    def runner(self) -> str:
        from ghostrt.export.openvino_build import openvino_title

        return (f"{openvino_title(self.version)} int8 on {self.cpu.name}, compiled in memory "
                f"(INFERENCE_PRECISION_HINT f32: only Q/DQ layers in INT8), vs FP32 ONNX on ONNX Runtime CPU")

    def run(self, test_onnx) -> dict[str, np.ndarray]:
        """All outputs of `test_onnx` (a path or serialized bytes) compiled for this CPU as compile_blob does."""
        from ghostrt.export.openvino_build import CHUNK     # the batch the blob itself is measured with
        from ghostrt.runtime.backends import openvino_backend as ovb
        from ghostrt.runtime.backends.batching import run_chunked

        label = "(in-memory ONNX)" if isinstance(test_onnx, bytes) else str(test_onnx)
        try:
            model = self.core.read_model(test_onnx if isinstance(test_onnx, bytes) else str(test_onnx))
            compiled = self.core.compile_model(model, "CPU", ovb.compile_config("int8", None))
        except Exception as err:  # OpenVINO raises RuntimeError subclasses with multi-line messages
            raise file_error(label, f"OpenVINO cannot compile it ({str(err).splitlines()[0][:200]})") from err
        executor = ovb.OpenVinoExecutor(label, compiled=compiled)
        outputs = run_chunked(executor, {n: self.inputs[n] for n in executor.input_names}, CHUNK)
        self.runs.append(label)
        return {name: np.asarray(value, np.float32) for name, value in outputs.items()}

    def compare(self, test_onnx, test_outputs=None) -> dict:
        return self.reference.compare(None, self.run(test_onnx) if test_outputs is None else test_outputs)


# --------------------------------------------------------------------------------------------- the variant

def variant_path(src) -> Path:
    src = Path(src)
    return src.with_name(f"{src.stem}.{VARIANT_SUFFIX}.onnx")


def variant_inputs(src, calibration_npz, gate, methods, cpu, ov_version: str) -> dict:
    """Everything the plan depends on: a change to any of these searches again."""
    from ghostrt.export.engine_build import converter_sha256

    return {"source_sha256": engine_cache.sha256_file(src), "converter_sha256": converter_sha256(),
            "gate_module_sha256": engine_cache.sha256_file(inspect.getfile(OpenVinoReference)),
            "calibration_sha256": engine_cache.sha256_file(calibration_npz), "gate": asdict(gate),
            "methods": list(methods), "openvino_version": ov_version, "cpu": cpu.name, "cpu_isa": list(cpu.isa)}


def openvino_int8_onnx(src, model: str, calibration_npz, gate, weights_dir=None, methods=None,
                       log=print) -> tuple[Path, dict, dict]:
    """(the OpenVINO-gated INT8 ONNX, its recipe for the blob key, its fidelity row measured on OpenVINO).
    Reused while the sidecar's inputs match and the file is unchanged; else quantize_with_fallback searches
    with every gate decision measured on OpenVINO."""
    from ghostrt.export import precision as variants
    from ghostrt.export.engine_build import recipe_from_row
    from ghostrt.export.fidelity import reference_for
    from ghostrt.runtime.backends import openvino_backend as ovb

    src = Path(src)
    methods = list(methods or variants.METHODS)
    if calibration_npz is None or not Path(calibration_npz).is_file():
        raise file_error(calibration_npz or "(no calibration set given)",
                         "INT8 calibration set not found; make it with `ghostrt calibrate`")
    ov = ovb.load_openvino()
    dst = variant_path(src)
    sidecar = dst.with_name(dst.name + ".json")
    inputs = variant_inputs(src, calibration_npz, gate, methods, ovb.probe_cpu(ov.Core()), ov.get_version())
    if dst.exists() and sidecar.exists():
        recorded = json.loads(sidecar.read_text())
        if recorded.get("inputs") == inputs and recorded.get("sha256") == engine_cache.sha256_file(dst):
            return dst, recorded["recipe"], recorded["fidelity"]
    log(f"{model:<10} int8  making {dst.name} from {src.name}, every gate decision measured on OpenVINO")
    reference = OpenVinoReference(reference_for(model, src, weights_dir, src.parent))
    plan = variants.quantize_with_fallback(src, dst, model, calibration_npz, gate, methods=methods,
                                           reference=reference, cache_dir=src.parent / "sensitivity", log=log)
    plan = {k: v for k, v in plan.items() if k != "numbers"}
    plan.update(runner=reference.runner, ranking_runner=_ort_runner(), openvino_runs=len(reference.runs))
    row = variant_row(model, reference, dst, gate, plan)
    recipe = json.loads(json.dumps(recipe_from_row("int8", row)))
    row = json.loads(json.dumps(row, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps({"inputs": inputs, "sha256": engine_cache.sha256_file(dst), "recipe": recipe,
                                   "fidelity": row}, indent=2) + "\n")
    return dst, recipe, row


def variant_row(model: str, reference: OpenVinoReference, onnx_path: Path, gate, plan: dict) -> dict:
    """The shape of fidelity.fidelity_row, measured on OpenVINO (the plan's final numbers)."""
    from ghostrt.export import fidelity

    numbers = reference.compare(onnx_path)
    fails = fidelity.gate_failures(model, numbers["task"], gate)
    return {"model": model, "precision": "int8", "onnx": str(onnx_path), "fp32_onnx": str(reference.onnx_path),
            "runner": reference.runner, "samples": len(next(iter(reference.inputs.values()))),
            "weights": "trained", "gate": asdict(gate), "gate_applied": True, "passed": not fails,
            "failures": fails, **numbers, "precision_plan": plan}


def _ort_runner() -> str:
    from ghostrt.export.fidelity import runner_name

    return f"per-layer ranking on the probe subset: {runner_name()}"
