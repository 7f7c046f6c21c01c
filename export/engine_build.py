"""FP32 ONNX → precision variant (FP16 ONNX / INT8 Q/DQ ONNX) → TensorRT(-RTX) engine, through the cache.

Both TensorRT 11 and TensorRT-RTX are strongly typed: the precision is decided by the ONNX graph, not by
builder flags. So a precision variant is an ONNX file of its own (made once, reused while its FP32 source,
calibration set and converter are unchanged), and the engine cache is keyed on that file's sha256.
"""

import inspect
import json
import time
from dataclasses import dataclass
from pathlib import Path

from ghostrt.atomic import atomic_path
from ghostrt.errors import GhostError, file_error
from ghostrt.runtime.backends import engine_cache, trt_backend

PRECISIONS = ("fp32", "fp16", "int8")
MODELS = ("generator", "arcface", "detector", "landmarks")
EXTRA_MODELS = ("retinaface",)
DEFAULT_MAX_BATCH = 4


# ------------------------------------------------------------ the calls into the lead's and D2's modules

def fp32_onnx(model: str, weights_dir, onnx_dir, log=print) -> Path:
    from ghostrt.export.models import ensure_onnx
    return ensure_onnx(model, weights_dir=weights_dir, onnx_dir=onnx_dir, log=log)


def convert_precision(src: Path, dst: Path, model: str, precision: str, calibration_npz,
                      weights_dir=None) -> tuple[dict, dict]:
    """Write the precision variant of `src` to `dst` through the same path as `ghostrt check` (trained INT8 nets
    get the accuracy-gated fallback) and measure it. Returns (recipe for the engine key, fidelity row)."""
    from ghostrt.export.fidelity_check import make_variant
    from ghostrt.export.fidelity import GATES

    row = make_variant(model, precision, src, dst, GATES[precision], weights_dir, src.parent, calibration_npz)
    return recipe_from_row(precision, row), row


def recipe_from_row(precision: str, row: dict) -> dict:
    """The quantization recipe (part of the engine key) from a make_variant row's precision plan."""
    plan = row.get("precision_plan", {})
    return {"precision": precision, **{k: v for k, v in plan.items() if k in RECIPE_FIELDS}}


RECIPE_FIELDS = ("method", "chosen_method", "chosen_ranking", "calibration_samples", "high_precision_layers",
                 "int8_coverage_pct", "fp32_nodes")


def converter_sha256() -> str:
    """sha256 of the converter module's source: a changed converter invalidates the variants it made."""
    from ghostrt.export import precision as converters
    return engine_cache.sha256_file(inspect.getfile(converters))


def default_calibration_npz() -> Path:
    from ghostrt.calibration.build import DEFAULT_OUT
    return Path(DEFAULT_OUT)


# ----------------------------------------------------------------------------------------- the variants

def precision_onnx(src: Path, precision: str, model: str, calibration_npz=None, weights_dir=None,
                   log=print) -> tuple[Path, dict | None, dict | None]:
    """(ONNX to build from, quantization recipe, fidelity row). Reuses the variant while its sidecar's inputs
    still match; the fidelity row measured when it was made travels with it into the engine manifest."""
    src = Path(src)
    if precision == "fp32":
        return src, None, None
    if precision not in PRECISIONS:
        raise GhostError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    dst = src.with_name(f"{src.stem}.{precision}.onnx")
    sidecar = dst.with_name(dst.name + ".json")
    inputs = {"source_sha256": engine_cache.sha256_file(src), "converter_sha256": converter_sha256()}
    if precision == "int8" and (calibration_npz is None or not Path(calibration_npz).is_file()):
        raise file_error(calibration_npz or "(no calibration set given)",
                         "INT8 calibration set not found; make it with `ghostrt calibrate`")
    if calibration_npz is not None and Path(calibration_npz).is_file():
        inputs["calibration_sha256"] = engine_cache.sha256_file(calibration_npz)
    if dst.exists() and sidecar.exists():
        recorded = json.loads(sidecar.read_text())
        if recorded.get("inputs") == inputs and recorded.get("sha256") == engine_cache.sha256_file(dst):
            return dst, recorded["recipe"], recorded.get("fidelity")
    log(f"{model:<10} {precision:<5} making {dst.name} from {src.name} and measuring it against FP32")
    recipe, row = convert_precision(src, dst, model, precision, calibration_npz, weights_dir)
    recipe = json.loads(json.dumps(recipe))   # must be plain JSON: it becomes part of the engine key
    row = json.loads(json.dumps(row, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps({"inputs": inputs, "sha256": engine_cache.sha256_file(dst), "recipe": recipe,
                                   "fidelity": row}, indent=2) + "\n")
    return dst, recipe, row


def profiles_for(onnx_path, max_batch: int, opt_batch: int | None = None) -> dict[str, tuple]:
    """{input: (min, opt, max)}: a dynamic axis 0 spans 1..max_batch; every other axis must be static."""
    import onnx

    onnx_path = Path(onnx_path)
    if max_batch < 1:
        raise GhostError(f"--max-batch must be at least 1, not {max_batch}")
    opt_batch = max_batch if opt_batch is None else min(max(opt_batch, 1), max_batch)
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    profiles = {}
    for tensor in graph.input:
        if tensor.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.type.tensor_type.shape.dim]
        if any(d is None for d in dims[1:]):
            raise file_error(onnx_path, f"input {tensor.name} has a dynamic axis other than the batch axis "
                                        f"({dims}); export it with fixed spatial sizes")
        if dims and dims[0] is None:
            profiles[tensor.name] = tuple([b, *dims[1:]] for b in (1, opt_batch, max_batch))
        else:
            profiles[tensor.name] = (dims, dims, dims)
    return profiles


# ------------------------------------------------------------------------------------------- the builds

@dataclass
class BuildResult:
    model: str
    precision: str
    backend: str                  # "TensorRT-RTX 1.7.1.116"
    seconds: float
    engine_bytes: int
    cached: bool
    engine_path: Path
    manifest_path: Path

    def line(self) -> str:
        state = "cached" if self.cached else "built"
        return (f"{self.model:<10} {self.precision:<5} {self.backend:<22} {self.seconds:7.1f} s "
                f"{self.engine_bytes / 1e6:9.1f} MB  {state:<6} {self.engine_path}")


def engine_key(model: str, onnx_path, precision: str, backend: trt_backend.Backend, profiles: dict,
               quant_recipe: dict | None, target: trt_backend.GpuInfo) -> engine_cache.EngineKey:
    return engine_cache.EngineKey(model=model, onnx_sha256=engine_cache.sha256_file(onnx_path), backend=backend.name,
                                  backend_version=backend.version, target_gpu=target.name,
                                  target_cc=target.compute_capability, precision=precision,
                                  quant_recipe=quant_recipe,
                                  profiles={name: [list(s) for s in shapes] for name, shapes in profiles.items()})


def build_one(model: str, onnx_path, precision: str, backend: trt_backend.Backend, engines_dir,
              max_batch: int = DEFAULT_MAX_BATCH, opt_batch: int | None = None, quant_recipe: dict | None = None,
              source_onnx=None, rtx_target: str = "ampere+", log=print) -> BuildResult:
    """Build `onnx_path` (already in `precision`) into engines_dir, or reuse the cached engine for the same key."""
    started = time.perf_counter()
    onnx_path = Path(onnx_path)
    profiles = profiles_for(onnx_path, max_batch, opt_batch)
    target = trt_backend.build_target(backend, rtx_target)
    key = engine_key(model, onnx_path, precision, backend, profiles, quant_recipe, target)
    cached = engine_cache.find_engine(engines_dir, key, log=log)
    if cached is not None:
        engine_path, manifest = cached
        return BuildResult(model, precision, backend.title, time.perf_counter() - started, manifest["engine_bytes"],
                           True, engine_path, Path(manifest["manifest_path"]))
    Path(engines_dir).mkdir(parents=True, exist_ok=True)
    timing_cache = None                   # full TensorRT only; TensorRT-RTX has no timing cache
    if backend.name == "trt":
        timing_cache = Path(engines_dir) / f"timing-{backend.name}-{backend.version}.cache"
    engine = trt_backend.build_engine(backend, onnx_path, profiles, timing_cache, log=log, target=target)
    seconds = time.perf_counter() - started
    extra = {"onnx_file": str(onnx_path), "max_batch": max_batch,
             "source_onnx_sha256": engine_cache.sha256_file(source_onnx) if source_onnx else None}
    manifest_path = engine_cache.write_engine(engines_dir, key, engine, seconds, extra)
    engine_path, _ = engine_cache.engine_paths(engines_dir, key)
    return BuildResult(model, precision, backend.title, seconds, len(engine), False, engine_path, manifest_path)


def build_models(models, precision: str, backend: str = "auto", max_batch: int = DEFAULT_MAX_BATCH,
                 opt_batch: int | None = None, weights_dir=None, engines_dir=engine_cache.DEFAULT_ENGINES_DIR,
                 onnx_dir=None, calibration_npz=None, rtx_target: str = "ampere+", accept_fidelity: bool = False,
                 log=print) -> list[BuildResult]:
    """`ghostrt build`: for each model, FP32 ONNX → precision variant → engine; one progress line per engine.
    backend "openvino": the CPU blobs of export.openvino_build instead (fp32, bf16 or int8, gated the same way)."""
    unknown = [m for m in models if m not in MODELS + EXTRA_MODELS]
    if unknown:
        raise GhostError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS + EXTRA_MODELS)}")
    if backend == "openvino":
        from ghostrt.export import openvino_build

        return openvino_build.build_models(models, precision, weights_dir, engines_dir, onnx_dir, calibration_npz,
                                           accept_fidelity, log=log)
    if precision == "bf16":
        raise GhostError("--precision bf16 is a CPU precision: build it with --backend openvino "
                         "(TensorRT runs fp16 instead)")
    if precision not in PRECISIONS:
        raise GhostError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    engines_dir = Path(engines_dir)
    onnx_dir = Path(onnx_dir) if onnx_dir else engines_dir / "onnx"
    calibration_npz = Path(calibration_npz) if calibration_npz else default_calibration_npz()
    chosen = trt_backend.load_backend(backend)
    results = []
    for model in models:
        source = fp32_onnx(model, weights_dir, onnx_dir, log=log)
        onnx_path, recipe, fidelity = precision_onnx(source, precision, model, calibration_npz, weights_dir, log=log)
        result = build_one(model, onnx_path, precision, chosen, engines_dir, max_batch, opt_batch, recipe,
                           source_onnx=source, rtx_target=rtx_target, log=log)
        missed = None
        if fidelity is not None:
            from ghostrt.export.fidelity_check import gate_verdict

            missed = gate_verdict(fidelity)
            engine_cache.record_fidelity(result.manifest_path, {**_fidelity_summary(fidelity),
                                                                "accepted": missed is None or accept_fidelity})
        log(result.line() + (f"  fidelity: {_fidelity_summary(fidelity)['summary']}" if fidelity else ""))
        if missed and not accept_fidelity:
            raise GhostError(f"{result.manifest_path}: {missed}; the engine is recorded as not accepted and will "
                             f"not be loaded (pass --accept-fidelity to accept it)")
        results.append(result)
    return results


def _fidelity_summary(row: dict) -> dict:
    """The gate's numbers as they go into the manifest (and `ghostrt engines`)."""
    task = row.get("task", {})
    if row["model"] == "generator":
        summary = f"PSNR {task.get('psnr_db_min', float('nan')):.1f} dB"
    elif row["model"] == "arcface":
        summary = f"cos {task.get('embedding_cosine_min', float('nan')):.4f}"
    elif row["model"] == "landmarks":
        summary = f"pts {100 * task.get('point_error_iod_max', float('nan')):.2f}% IOD"
    else:
        summary = (f"faces {task.get('faces_found')}/{task.get('faces_fp32')} IoU {task.get('box_iou_min', 0):.3f} "
                   f"kps {100 * task.get('kps_iod_max', 0):.1f}% IOD")
    if not row.get("gate_applied"):
        summary += " (untrained: numbers only)"
    elif not row.get("passed"):
        summary += " (GATE MISSED)"
    return {"summary": summary, "gate_applied": row.get("gate_applied"), "passed": row.get("passed"),
            "weights": row.get("weights"), "runner": row.get("runner"), "raw": row.get("raw"), "task": task,
            "failures": row.get("failures", []),
            "int8_coverage_pct": row.get("precision_plan", {}).get("int8_coverage_pct")}
