"""One thin adapter over TensorRT 10/11 (`tensorrt`) and TensorRT for RTX (`tensorrt_rtx_bindings`).

Both expose the same strongly typed builder/runtime API (precision lives in the ONNX: an FP16 graph or Q/DQ
nodes; no precision flags, no calibrators), so the builder and the runner below are written once. The
differences are kept explicit and few:
- TensorRT-RTX builds ahead of time without a GPU: the engine targets a list of compute capabilities
  ("any RTX": Ampere and later, 8.6/8.9/12.x; Turing, 7.5, only in an engine of its own, because it has no
  FP32 GEMM kernels and a shared engine would be slower); full TensorRT builds for the GPU it runs on, so
  it needs one.
- Full TensorRT reuses a timing cache between builds; in TensorRT-RTX timing caches are no-ops (its kernels
  are JIT-specialised at run time instead, and it captures CUDA graphs natively).
cuda-python is imported only when an engine is run, so building and `ghostrt doctor` work without it.
"""

import ctypes
import importlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from ghostrt.atomic import atomic_path
from ghostrt.errors import GhostError, file_error

BACKEND_MODULES = {"trt": "tensorrt", "trt-rtx": "tensorrt_rtx_bindings"}
BACKEND_TITLES = {"trt": "TensorRT", "trt-rtx": "TensorRT-RTX"}
# Compute capabilities TensorRT-RTX runs on (RTX-class GPUs); data-centre parts (8.0, 9.0, 10.0) are not.
RTX_CCS = ("7.5", "8.6", "8.9", "12.0", "12.1")
ANY_RTX = "any RTX"
RTX_TARGETS = {"ampere+": (ANY_RTX, ("8.6", "8.9", "12.0", "12.1")),       # --rtx-target: (name, CCs)
               "turing": ("RTX Turing", ("7.5",))}
RUN_NEEDS_GPU = "needs an RTX-class GPU (CC 7.5/8.6/8.9/12.x) to run the engine"
CUDA_PYTHON_PIN = "cuda-python==13.4.4"


@dataclass(frozen=True)
class Backend:
    name: str                                   # "trt" or "trt-rtx"
    version: str
    module: object = field(repr=False, compare=False)

    @property
    def title(self) -> str:
        return f"{BACKEND_TITLES[self.name]} {self.version}"


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str                     # "8.9"
    driver: str | None = None


def rtx_supports(cc: str) -> bool:
    return cc in RTX_CCS or cc.split(".")[0] == "12"


# ----------------------------------------------------------------------------------------------- discovery

def available_backends() -> list[Backend]:
    """Every importable backend; an import that fails (missing wheel or library) is simply not listed."""
    found = []
    for name, module_name in BACKEND_MODULES.items():
        try:
            module = importlib.import_module(module_name)
        except Exception:                       # ImportError, or OSError from a missing shared library
            continue
        found.append(Backend(name, str(getattr(module, "__version__", "unknown")), module))
    return found


def probe_gpu() -> tuple[GpuInfo | None, str]:
    """(first CUDA GPU or None, how we know). cuda-python answers best; nvidia-smi is the fallback."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return _probe_nvidia_smi("cuda-python not installed")
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess:
        return None, f"cuda-python: {cudart.cudaGetErrorName(err)[1].decode()} (no usable GPU/driver)"
    if count == 0:
        return None, "cuda-python: no CUDA device"
    err, props = cudart.cudaGetDeviceProperties(0)
    if err != cudart.cudaError_t.cudaSuccess:
        return None, f"cuda-python: {cudart.cudaGetErrorName(err)[1].decode()} reading device 0"
    _, driver = cudart.cudaDriverGetVersion()
    name = props.name.split(b"\0", 1)[0].decode(errors="replace")
    return GpuInfo(name, f"{props.major}.{props.minor}", f"{driver // 1000}.{driver % 1000 // 10}"), \
        f"cuda-python: {count} device(s)"


def _probe_nvidia_smi(why: str) -> tuple[GpuInfo | None, str]:
    if shutil.which("nvidia-smi") is None:
        return None, f"{why}; nvidia-smi not found (no NVIDIA driver)"
    query = ["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=10, check=True).stdout
        name, cc, driver = [part.strip() for part in out.splitlines()[0].split(",")]
    except (subprocess.SubprocessError, OSError, IndexError, ValueError):
        return None, f"{why}; nvidia-smi found but reported no GPU"
    return GpuInfo(name, cc, driver), f"{why}; nvidia-smi"


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
    raise GhostError(f"--backend {name}: Python module {BACKEND_MODULES[name]} cannot be imported (not installed?)")


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

def make_logger(trt, log):
    """A TensorRT logger (of `trt`'s own ILogger class) that forwards warnings and errors to `log`, each
    distinct message once (Q/DQ builds repeat the same warning for every layer)."""
    title = "TensorRT-RTX" if trt.__name__ == BACKEND_MODULES["trt-rtx"] else "TensorRT"

    class ForwardingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.seen = set()
            self.errors = []                    # kept for the one-line GhostError of a failed build

        def log(self, severity, msg):
            if severity <= trt.ILogger.Severity.ERROR:
                self.errors.append(msg.strip())
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


# ------------------------------------------------------------------------------------------------- running

def _cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        raise GhostError(f"running a TensorRT engine needs cuda-python: pip install {CUDA_PYTHON_PIN}") from None
    return cudart


def _check(cudart, result, what: str):
    """cuda-python returns (error, *values); turn a failure into a GhostError naming the call."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        raise GhostError(f"CUDA {what} failed: {cudart.cudaGetErrorName(err)[1].decode()}")
    return values[0] if len(values) == 1 else values


class TrtExecutor:
    """Runs one engine; tensors are bound by name. Buffers (pinned host + device) are allocated once for the
    profile's max shapes and reused for every smaller batch; each fixed shape is captured as a CUDA graph on
    its second run (the first warms up / JIT-specialises) and replayed after, falling back to a plain
    enqueue when capture is not possible."""

    def __init__(self, engine_path, backend: Backend, runtime_cache_path=None, cuda_graphs: bool = True):
        self.engine_path = Path(engine_path)
        self.backend = backend
        self.runtime_cache_path = Path(runtime_cache_path) if runtime_cache_path else None
        trt, cudart = backend.module, _cudart()
        self._trt, self._cudart = trt, cudart
        if cudart.cudaFree(0)[0] != cudart.cudaError_t.cudaSuccess:     # creates the CUDA context, or says why not
            _, why = probe_gpu()
            raise file_error(self.engine_path, f"cannot run: no usable CUDA GPU ({why})")
        self._logger = make_logger(trt, lambda line: None)
        blob = self.engine_path.read_bytes()
        runtime = trt.Runtime(self._logger)
        if hasattr(runtime, "get_engine_validity"):
            validity, _ = runtime.get_engine_validity(blob)
            if validity == trt.EngineValidity.INVALID:
                raise file_error(self.engine_path, f"{backend.title} says this engine cannot run on this GPU/driver")
        self._runtime = runtime
        self.engine = runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise file_error(self.engine_path, f"{backend.title} could not deserialize the engine")
        self.context = self._create_context(cuda_graphs)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.stream = _check(cudart, cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "stream create")
        self._graphs: dict[tuple, object] = {}      # input shapes → graph exec, or None when capture failed
        self._seen: set[tuple] = set()
        self._manual_graphs = cuda_graphs and backend.name == "trt"
        self._host, self._device, self._pinned = {}, {}, []
        self._allocate_max_buffers()

    def _create_context(self, cuda_graphs: bool):
        if self.backend.name != "trt-rtx":
            return self.engine.create_execution_context()
        trt = self._trt
        config = self.engine.create_runtime_config()
        if cuda_graphs:                         # RTX captures per shape natively, dynamic shapes included
            config.cuda_graph_strategy = trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
        self._runtime_cache = config.create_runtime_cache()
        if self.runtime_cache_path and self.runtime_cache_path.exists():
            self._runtime_cache.deserialize(self.runtime_cache_path.read_bytes())   # False: stale, ignored
        config.set_runtime_cache(self._runtime_cache)
        return self.engine.create_execution_context(runtime_config=config)

    def _allocate_max_buffers(self) -> None:
        trt, cudart = self._trt, self._cudart
        for name in self.input_names:
            self.context.set_input_shape(name, tuple(self.engine.get_tensor_profile_shape(name, 0)[2]))
        for name in self.input_names + self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise file_error(self.engine_path, f"tensor {name} has a data-dependent shape {shape}; not supported")
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
            host_ptr = _check(cudart, cudart.cudaHostAlloc(nbytes, cudart.cudaHostAllocDefault), "cudaHostAlloc")
            self._pinned.append(host_ptr)
            raw = (ctypes.c_byte * nbytes).from_address(int(host_ptr))
            self._host[name] = np.frombuffer(raw, dtype=dtype, count=nbytes // dtype.itemsize)
            self._device[name] = _check(cudart, cudart.cudaMalloc(nbytes), "cudaMalloc")
            self.context.set_tensor_address(name, int(self._device[name]))

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart, h2d, d2h = self._cudart, self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, \
            self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        if set(feeds) != set(self.input_names):
            raise GhostError(f"{self.engine_path}: feeds {sorted(feeds)} do not match inputs {self.input_names}")
        for name in self.input_names:
            array = np.ascontiguousarray(feeds[name], dtype=self._host[name].dtype)
            low, _, high = self.engine.get_tensor_profile_shape(name, 0)
            if array.ndim != len(high) or any(not lo <= d <= hi for d, lo, hi in zip(array.shape, low, high)):
                raise GhostError(f"{self.engine_path}: input {name} shape {array.shape} is outside the engine's "
                                 f"profile {tuple(low)}..{tuple(high)}; rebuild with a larger --max-batch")
            self.context.set_input_shape(name, array.shape)
            self._host[name][:array.size] = array.ravel()
            _check(cudart, cudart.cudaMemcpyAsync(self._device[name], self._host[name].ctypes.data, array.nbytes,
                                                  h2d, self.stream), "copy to device")
        key = tuple(tuple(feeds[n].shape) for n in self.input_names)
        self._execute(key)
        shapes = {name: tuple(self.context.get_tensor_shape(name)) for name in self.output_names}
        for name, shape in shapes.items():
            nbytes = int(np.prod(shape)) * self._host[name].dtype.itemsize
            _check(cudart, cudart.cudaMemcpyAsync(self._host[name].ctypes.data, self._device[name], nbytes,
                                                  d2h, self.stream), "copy to host")
        _check(cudart, cudart.cudaStreamSynchronize(self.stream), "stream synchronize")
        return {name: self._host[name][:int(np.prod(shape))].reshape(shape).copy() for name, shape in shapes.items()}

    def _execute(self, key: tuple) -> None:
        cudart = self._cudart
        graph_exec = self._graphs.get(key)
        if graph_exec is not None:
            _check(cudart, cudart.cudaGraphLaunch(graph_exec, self.stream), "graph launch")
            return
        if not self.context.execute_async_v3(int(self.stream)):
            raise GhostError(f"{self.engine_path}: {self.backend.title} execution failed")
        if self._manual_graphs and key in self._seen and key not in self._graphs:
            self._graphs[key] = self._try_capture()
        self._seen.add(key)

    def _try_capture(self):
        """Capture one enqueue as a CUDA graph; None (plain enqueue from now on) if this engine cannot."""
        cudart = self._cudart
        if hasattr(self.context, "is_stream_capturable") and not self.context.is_stream_capturable(int(self.stream)):
            return None
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        if cudart.cudaStreamBeginCapture(self.stream, mode)[0] != cudart.cudaError_t.cudaSuccess:
            return None
        launched = self.context.execute_async_v3(int(self.stream))
        err, graph = cudart.cudaStreamEndCapture(self.stream)
        if not launched or err != cudart.cudaError_t.cudaSuccess:
            cudart.cudaGetLastError()           # clear the sticky capture error
            return None
        err, graph_exec = cudart.cudaGraphInstantiate(graph, 0)
        cudart.cudaGraphDestroy(graph)
        return graph_exec if err == cudart.cudaError_t.cudaSuccess else None

    def save_runtime_cache(self) -> None:
        """TensorRT-RTX: keep the JIT-compiled kernels for the next start (no-op for full TensorRT)."""
        cache = getattr(self, "_runtime_cache", None)
        if cache is None or self.runtime_cache_path is None:
            return
        with atomic_path(self.runtime_cache_path) as tmp:
            tmp.write_bytes(bytes(cache.serialize()))

    def close(self) -> None:
        cudart = self._cudart
        for graph_exec in self._graphs.values():
            if graph_exec is not None:
                cudart.cudaGraphExecDestroy(graph_exec)
        for pointer in self._device.values():
            cudart.cudaFree(pointer)
        for pointer in self._pinned:
            cudart.cudaFreeHost(pointer)
        cudart.cudaStreamDestroy(self.stream)
        self._graphs, self._device, self._pinned, self._host = {}, {}, [], {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.save_runtime_cache()
        self.close()
