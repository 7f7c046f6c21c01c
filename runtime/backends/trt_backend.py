"""One thin adapter over TensorRT 10/11 (`tensorrt`) and TensorRT for RTX (`tensorrt_rtx_bindings` from pip,
`tensorrt_rtx` from NVIDIA's tarball wheels).

Both expose the same strongly typed builder/runtime API (precision lives in the ONNX: an FP16 graph or Q/DQ
nodes; no precision flags, no calibrators), so the builder and the runner below are written once. The
differences are kept explicit and few:
- TensorRT-RTX builds ahead of time without a GPU: the engine targets a list of compute capabilities
  ("any RTX": Ampere and later, 8.6/8.9/12.x; Turing, 7.5, only in an engine of its own, because it has no
  FP32 GEMM kernels and a shared engine would be slower); full TensorRT builds for the GPU it runs on, so
  it needs one.
- Full TensorRT reuses a timing cache between builds; in TensorRT-RTX timing caches are no-ops (its kernels
  are JIT-specialised at run time instead, and it captures CUDA graphs natively).
cuda-python is imported only when an engine is run (trt_executor.py) or a GPU probed (cuda_driver.py), so
building and `ghostrt doctor` work without it.
"""

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ghostrt.atomic import atomic_path
from ghostrt.errors import GhostError, file_error
from ghostrt.runtime.backends.cuda_driver import CUDA_PYTHON_PIN, GpuInfo, probe_gpu  # noqa: F401 (re-exported)
from ghostrt.runtime.backends.cuda_driver import check as _check, require_cudart as _cudart  # noqa: F401 (bench/device)

# The Python modules each backend may come as, first found wins: TensorRT-RTX's pip wheels install
# `tensorrt_rtx_bindings`, NVIDIA's tarball wheels and samples `tensorrt_rtx`.
MODULE_NAMES = {"trt": ("tensorrt",), "trt-rtx": ("tensorrt_rtx_bindings", "tensorrt_rtx")}
BACKEND_MODULES = {name: names[0] for name, names in MODULE_NAMES.items()}
BACKEND_TITLES = {"trt": "TensorRT", "trt-rtx": "TensorRT-RTX"}
# Compute capabilities TensorRT-RTX runs on (RTX-class GPUs); data-centre parts (8.0, 9.0, 10.0) are not.
RTX_CCS = ("7.5", "8.6", "8.9", "12.0", "12.1")
ANY_RTX = "any RTX"
RTX_TARGETS = {"ampere+": (ANY_RTX, ("8.6", "8.9", "12.0", "12.1")),       # --rtx-target: (name, CCs)
               "turing": ("RTX Turing", ("7.5",))}
RUN_NEEDS_GPU = "needs an RTX-class GPU (CC 7.5/8.6/8.9/12.x) to run the engine"


@dataclass(frozen=True)
class Backend:
    name: str                                   # "trt" or "trt-rtx"
    version: str
    module: object = field(repr=False, compare=False)
    module_name: str = ""                       # what was imported ("tensorrt_rtx_bindings", "tensorrt_rtx")

    @property
    def title(self) -> str:
        return f"{BACKEND_TITLES[self.name]} {self.version}"


def rtx_supports(cc: str) -> bool:
    return cc in RTX_CCS or cc.split(".")[0] == "12"


# ----------------------------------------------------------------------------------------------- discovery

def available_backends() -> list[Backend]:
    """Every importable backend; an import that fails (missing wheel or library) is simply not listed."""
    found = []
    for name, module_names in MODULE_NAMES.items():
        for module_name in module_names:
            try:
                module = importlib.import_module(module_name)
            except Exception:                   # ImportError, or OSError from a missing shared library
                continue
            found.append(Backend(name, str(getattr(module, "__version__", "unknown")), module, module_name))
            break
    return found


def choose_auto(backends: list[Backend], gpu: GpuInfo | None) -> tuple[Backend | None, str]:
    """The `--backend auto` rule, with the reason (doctor prints it)."""
    by_name = {b.name: b for b in backends}
    if "trt" in by_name and gpu is not None:
        return by_name["trt"], f"full TensorRT builds for the visible GPU ({gpu.name}, CC {gpu.compute_capability})"
    if "trt-rtx" in by_name:
        if gpu is None:
            why = "no GPU visible: TensorRT-RTX builds ahead of time for any RTX GPU"
        elif rtx_supports(gpu.compute_capability):
            why = f"TensorRT-RTX supports the visible GPU (CC {gpu.compute_capability})"
        else:
            why = (f"only TensorRT-RTX is installed; it builds here, but the visible GPU (CC "
                   f"{gpu.compute_capability}) cannot run its engines: install tensorrt for that")
        return by_name["trt-rtx"], why
    if "trt" in by_name:
        return None, ("full TensorRT is installed but needs a visible GPU to build; "
                      "install tensorrt-rtx to build without one")
    return None, "no TensorRT backend installed: pip install 'ghostrt[trt-rtx]' (or tensorrt on a GPU machine)"


def load_backend(name: str = "auto") -> Backend:
    backends = available_backends()
    if name == "auto":
        backend, why = choose_auto(backends, probe_gpu()[0])
        if backend is None:
            raise GhostError(f"--backend auto: {why}")
        return backend
    if name not in BACKEND_MODULES:
        raise GhostError(f"unknown backend {name!r}; choose auto, trt or trt-rtx")
    for backend in backends:
        if backend.name == name:
            return backend
    raise GhostError(f"--backend {name}: Python module {' or '.join(MODULE_NAMES[name])} cannot be imported "
                     f"(not installed?)")


def _sm(cc: str) -> str:
    return "SM" + cc.replace(".", "")


def build_target(backend: Backend, rtx_target: str = "ampere+") -> GpuInfo:
    """What an engine built now will run on: the visible GPU for full TensorRT; for TensorRT-RTX every
    compute capability of `rtx_target` that this TensorRT-RTX version knows."""
    if backend.name == "trt-rtx":
        if rtx_target not in RTX_TARGETS:
            raise GhostError(f"unknown --rtx-target {rtx_target!r}; choose from {', '.join(RTX_TARGETS)}")
        name, ccs = RTX_TARGETS[rtx_target]
        known = [cc for cc in ccs if hasattr(backend.module.ComputeCapability, _sm(cc))]
        return GpuInfo(name, ",".join(known))
    gpu, why = probe_gpu()
    if gpu is None:
        raise GhostError(f"--backend trt needs a visible CUDA GPU to build ({why}); use --backend trt-rtx")
    return gpu


# ------------------------------------------------------------------------------------------------ building

ERRORS_KEPT = 20

def make_logger(trt, log):
    """A TensorRT logger (of `trt`'s own ILogger class) that forwards warnings and errors to `log`, each
    distinct message once (Q/DQ builds repeat the same warning for every layer)."""
    title = "TensorRT-RTX" if trt.__name__ in MODULE_NAMES["trt-rtx"] else "TensorRT"

    class ForwardingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.seen = set()
            self.errors = []                    # the last errors, for the one-line GhostError of a failure

        def log(self, severity, msg):
            if severity <= trt.ILogger.Severity.ERROR:
                self.errors.append(" ".join(str(msg).split()))
                del self.errors[:-ERRORS_KEPT]
            if severity <= trt.ILogger.Severity.WARNING and msg not in self.seen:
                self.seen.add(msg)
                log(f"  [{title} {severity.name}] {msg}")

    return ForwardingLogger()


def build_engine(backend: Backend, onnx_path, profiles: Mapping[str, tuple], timing_cache_path=None,
                 log=print, target: GpuInfo | None = None) -> bytes:
    """Parse `onnx_path` and build one serialized engine with one optimisation profile covering `profiles`
    ({input name: (min shape, opt shape, max shape)}). `target`: TensorRT-RTX compute capabilities
    (default: build_target's "any RTX"). Raises GhostError naming the ONNX file on failure."""
    trt = backend.module
    onnx_path = Path(onnx_path)
    logger = make_logger(trt, log)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:              # where the flag still exists (TensorRT 10, RTX); 11: always
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise file_error(onnx_path, f"{backend.title} ONNX parser failed: {errors}")

    config = builder.create_builder_config()
    if backend.name == "trt-rtx":
        ccs = (target or build_target(backend)).compute_capability.split(",")
        config.num_compute_capabilities = len(ccs)
        for index, cc in enumerate(ccs):
            config.set_compute_capability(getattr(trt.ComputeCapability, _sm(cc)), index)
    profile = builder.create_optimization_profile()
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    for tensor in inputs:
        if tensor.name not in profiles:
            raise file_error(onnx_path, f"no optimisation profile for input {tensor.name!r}")
        low, opt, high = (tuple(int(d) for d in s) for s in profiles[tensor.name])
        profile.set_shape(tensor.name, low, opt, high)
    config.add_optimization_profile(profile)

    timing_cache = _load_timing_cache(backend, config, timing_cache_path, log)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        last = logger.errors[-1].replace("\n", " ") if logger.errors else "no error message"
        raise file_error(onnx_path, f"{backend.title} engine build failed: {last}")
    if timing_cache is not None:
        _save_timing_cache(config, timing_cache_path)
    return bytes(serialized)


def _load_timing_cache(backend: Backend, config, path, log):
    if path is None or backend.name == "trt-rtx":  # RTX: timing caches are no-ops (deprecated in 1.2)
        return None
    path = Path(path)
    blob = path.read_bytes() if path.exists() else b""
    cache = config.create_timing_cache(blob)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        log(f"  timing cache {path} does not match this TensorRT/GPU; starting a fresh one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=True)
    return cache


def _save_timing_cache(config, path) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
