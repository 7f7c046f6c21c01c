"""OpenVINO on the CPU: the fast path for everyone without a supported GPU.

ONNX Runtime's CPU provider runs every net in FP32 and ignores what the CPU can do beyond that. OpenVINO runs
bf16 on CPUs with AVX-512-BF16 or AMX and really executes INT8 Q/DQ graphs with u8 kernels (measured on this
project's AVX2 EPYC: iresnet100 Q/DQ 76 ms/face vs 151 ms FP32; ONNX Runtime ran the same graph slower than
FP32). A compiled OpenVINO model is tied to the OpenVINO version and the CPU's instruction set, so it is cached
exactly like a TensorRT engine (runtime.engine_cache): the blob beside a manifest whose key holds the CPU model,
its ISA flags, the OpenVINO version, the precision and the ONNX it came from, and a bf16/INT8 blob is only
loaded when its fidelity against FP32 was measured and accepted.
"""

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ghostrt.errors import GhostError, file_error
from ghostrt.runtime.backends import engine_cache, host

BACKEND = "openvino"
TITLE = "OpenVINO"
PIN = "openvino==2026.4.1"
PRECISIONS = ("fp32", "bf16", "int8")
HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}     # INT8 comes from the Q/DQ graph, not a hint
CAPABILITY = {"fp32": "FP32", "bf16": "BF16", "int8": "INT8"}
# The /proc/cpuinfo flags that change which kernels OpenVINO compiles: a blob made with one set is not for another.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")


class GateMissed(GhostError):
    """A blob whose fidelity against FP32 missed the gate and was not accepted: never loaded."""

    def __init__(self, path, problem: str):
        super().__init__(str(file_error(path, problem)))


@dataclass(frozen=True)
class CpuInfo:
    name: str
    isa: tuple[str, ...]
    capabilities: tuple[str, ...]     # OpenVINO's OPTIMIZATION_CAPABILITIES (FP32, BF16, INT8, ...)

    @property
    def target(self) -> str:
        return f"CPU {self.name}"

    def supports(self, precision: str) -> bool:
        return CAPABILITY[precision] in self.capabilities


def load_openvino():
    """The openvino module, or a one-line GhostError saying how to install it."""
    try:
        return importlib.import_module("openvino")
    except ImportError:
        raise GhostError(f"OpenVINO is not installed (pip install {PIN})") from None


def version() -> str:
    return load_openvino().get_version()


def probe_cpu(core=None) -> CpuInfo:
    core = core or load_openvino().Core()
    flags = host.cpu_flags()
    return CpuInfo(name=str(core.get_property("CPU", "FULL_DEVICE_NAME")),
                   isa=tuple(f for f in ISA_FLAGS if f in flags),
                   capabilities=tuple(str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")))


def blob_key(model: str, onnx_path, precision: str, cpu: CpuInfo, ov_version: str,
             quant_recipe: dict | None = None) -> engine_cache.EngineKey:
    """The cache key: the same fields as a TensorRT engine's, with the CPU where the GPU would be."""
    return engine_cache.EngineKey(model=model, onnx_sha256=engine_cache.sha256_file(onnx_path), backend=BACKEND,
                                  backend_version=ov_version, target_gpu=cpu.target, target_cc=",".join(cpu.isa),
                                  precision=precision, quant_recipe=quant_recipe, profiles={})


def compile_config(precision: str, threads: int | None) -> dict:
    config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def import_config(precision: str, threads: int | None) -> dict:
    """The config a cached blob is imported with: the very hints it was compiled with (compile_config)."""
    return compile_config(precision, threads)


def _manifest_beside(blob: Path) -> dict | None:
    manifest = blob.with_suffix(".json")
    try:
        return engine_cache.read_manifest(manifest) if manifest.is_file() else None
    except (GhostError, OSError, ValueError):
        return None


def _precision_list(counts: dict) -> str:
    return ", ".join(f"{name} ({n})" for name, n in sorted(counts.items()))


def compile_blob(model: str, onnx_path, precision: str, engines_dir, quant_recipe: dict | None = None,
                 source_onnx=None, log=print, warn=None) -> tuple[Path, dict, bool]:
    """Compile `onnx_path` for this CPU into engines_dir, or reuse the cached blob of the same key.

    Returns (blob path, manifest, cached). bf16 on a CPU without it is refused: OpenVINO would quietly run
    FP32 and the manifest would lie about the precision. A cached blob whose size or sha256 no longer matches
    its manifest (corrupt or replaced) is never used: it is said in one line naming the file to `warn` (default:
    `log`; callers that compile quietly still pass a `warn`) and compiled again over it -- the way a cached
    TensorRT engine is treated (engine_cache.find_engine says it, export.engine_build.build_one rebuilds it).
    Loading a blob by its manifest (engine_cache.validate_file) refuses a mismatch with a one-line GhostError
    instead, since nothing there can rebuild it."""
    if precision not in PRECISIONS:
        raise GhostError(f"--precision {precision}: OpenVINO runs {', '.join(PRECISIONS)}")
    ov = load_openvino()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise file_error(onnx_path, "ONNX file does not exist (run `ghostrt export`)")
    core = ov.Core()
    cpu = probe_cpu(core)
    if not cpu.supports(precision):
        raise GhostError(f"this CPU ({cpu.name}) has no {CAPABILITY[precision]} support in OpenVINO "
                         f"(it offers {', '.join(cpu.capabilities)}); use --precision fp32")
    key = blob_key(model, onnx_path, precision, cpu, ov.get_version(), quant_recipe)
    cached = engine_cache.find_engine(engines_dir, key, log=warn or log)
    if cached is not None:
        return cached[0], cached[1], True
    started = time.perf_counter()
    try:
        compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", compile_config(precision, None))
    except Exception as err:  # OpenVINO raises RuntimeError subclasses with multi-line messages
        raise file_error(onnx_path, f"OpenVINO cannot compile it ({str(err).splitlines()[0][:200]})") from err
    blob = compiled.export_model().getvalue()
    seconds = time.perf_counter() - started
    extra = {"onnx_file": str(onnx_path), "cpu_capabilities": list(cpu.capabilities),
             "source_onnx_sha256": engine_cache.sha256_file(source_onnx) if source_onnx else None,
             "runtime_precisions": runtime_precisions(compiled)}
    manifest_path = engine_cache.write_engine(engines_dir, key, blob, seconds, extra)
    log(f"{model:<10} {precision:<5} {TITLE} compiled for {cpu.target} in {seconds:.1f} s -> {manifest_path.name}")
    return engine_cache.engine_paths(engines_dir, key)[0], engine_cache.read_manifest(manifest_path), False


def runtime_precisions(compiled) -> dict[str, int]:
    """How many Convolution/MatMul/FullyConnected nodes run in each precision: the proof that bf16 or u8 kernels
    were really chosen, not just asked for."""
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in ("Convolution", "MatMul", "FullyConnected", "Deconvolution"):
            precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
            counts[precision] = counts.get(precision, 0) + 1
    return counts


def validate_for_run(manifest: dict, cpu: CpuInfo, ov_version: str, onnx_sha256: str | None = None) -> Path:
    """Refuse, in one line naming the blob, one that was not compiled for this CPU and OpenVINO; return its path."""

    def check_cpu(path, rebuild):
        if (manifest["target_gpu"], manifest["target_cc"]) != (cpu.target, ",".join(cpu.isa)):
            raise file_error(path, f"compiled for {manifest['target_gpu']} ({manifest['target_cc']}), this is "
                                   f"{cpu.target} ({','.join(cpu.isa)})" + rebuild)

    return engine_cache.check_for_run(manifest, ov_version, check_cpu, onnx_sha256, runtime="OpenVINO",
                                      noun="compiled model", verb="compiled", require_fidelity=True,
                                      gate_missed=GateMissed)


def blob_for_run(engines_dir, model: str, precision: str, onnx_sha256: str | None = None) -> tuple[Path, dict]:
    """The newest blob for (model, precision) valid on this CPU, or a GhostError saying what to build."""
    ov = load_openvino()
    cpu = probe_cpu(ov.Core())
    return engine_cache.newest_valid(
        engines_dir, model, precision, BACKEND, "OpenVINO model",
        f"ghostrt build --backend openvino --precision {precision} --models {model}",
        lambda manifest: validate_for_run(manifest, cpu, ov.get_version(), onnx_sha256))


class OpenVinoExecutor:
    """One compiled OpenVINO model (a cached blob) on the CPU, tensors bound by name like the other executors."""

    backend = BACKEND

    def __init__(self, blob_path, threads: int | None = None, compiled=None):
        """`compiled`: a model compiled in memory (the INT8 search's candidates), which blob_path then only names.

        A cached blob is imported with its manifest's precision and performance hints: import_model does not
        restore them, and on an AMX CPU an "fp32" blob imported without the hint runs in bf16 (measured: max
        diff 0.041 on outputs of scale 3.1), silently and ungated. The imported model's kernels are then
        checked against the precisions counted at compile time before anything runs."""
        self.path = Path(blob_path)
        self.compiled = compiled if compiled is not None else self._import(threads)
        self.request = self.compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        self.input_dtypes = {i.get_any_name(): i.get_element_type().to_dtype() for i in self.compiled.inputs}

    def _import(self, threads: int | None):
        ov = load_openvino()
        manifest = _manifest_beside(self.path)
        precision = manifest.get("precision", "fp32") if manifest else "fp32"
        config = import_config(precision if precision in HINTS else "fp32", threads)
        try:
            compiled = ov.Core().import_model(self.path.read_bytes(), "CPU", config)
        except FileNotFoundError:
            raise file_error(self.path, "compiled OpenVINO model does not exist") from None
        except Exception as err:
            raise file_error(self.path, f"OpenVINO cannot load it ({str(err).splitlines()[0][:200]})") from err
        expected = (manifest or {}).get("runtime_precisions")
        if expected:
            got = runtime_precisions(compiled)
            if set(got) != set(expected):
                raise file_error(self.path, f"imported with kernels in {_precision_list(got)}, compiled in "
                                            f"{_precision_list(expected)}: the blob would not run what was gated; "
                                            "delete it to recompile")
        return compiled

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ValueError(f"{self.path.name}: missing inputs {missing}")
        bound = {n: np.ascontiguousarray(feeds[n], dtype=self.input_dtypes[n]) for n in self.input_names}
        # share_outputs=False (the default): OpenVINO hands back its own copies, which the next call leaves alone
        results = self.request.infer(bound, share_outputs=False)
        return {name: results[port] for name, port in zip(self.output_names, self.compiled.outputs)}

