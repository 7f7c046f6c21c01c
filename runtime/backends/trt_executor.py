"""Runs one TensorRT / TensorRT-RTX engine, and turns every way a first run on a GPU can fail (no usable driver,
an engine TensorRT calls invalid, a context it cannot create, a shape or address it refuses, a dtype numpy has
no type for) into one GhostError naming the engine and TensorRT's own last error, so `--backend auto` can fall
back and say why.

Lifetimes follow TensorRT's, not Python's: a context keeps only its engine alive, yet holds raw pointers to the
runtime config it was made with (and that config to the runtime cache), so the executor keeps each context
together with its config, and releases contexts, then the engine, then the runtime.
"""

import ctypes
import hashlib
from pathlib import Path
from typing import Mapping

import numpy as np

from ghostrt.atomic import atomic_path
from ghostrt.errors import GhostError, file_error
from ghostrt.runtime.backends import cuda_driver
from ghostrt.runtime.backends.trt_backend import Backend, make_logger

MAX_GRAPH_CONTEXTS = 8          # full TensorRT: shapes captured as CUDA graphs, one execution context each
DIAGNOSTICS = {"VERSION_MISMATCH": "built by another TensorRT-RTX version",
               "UNSUPPORTED_CC": "this GPU's compute capability is not among its targets",
               "OLD_CUDA_DRIVER": "CUDA driver too old", "OLD_CUDA_RUNTIME": "CUDA runtime too old",
               "INSUFFICIENT_GPU_MEMORY": "not enough GPU memory", "MALFORMED_ENGINE": "not a valid engine file",
               "CUDA_ERROR": "CUDA driver or runtime not installed correctly"}


def runtime_cache_path(engine_path, gpu: cuda_driver.GpuInfo) -> Path:
    """Where TensorRT-RTX keeps the kernels it JIT-compiled for `engine_path` on `gpu`: beside the engine, named
    by the engine's own key plus the GPU (one engine serves every RTX GPU; each GPU compiles its own kernels)."""
    engine_path = Path(engine_path)
    tag = hashlib.sha256(f"{gpu.name}|{gpu.compute_capability}".encode()).hexdigest()[:8]
    return engine_path.with_name(f"{engine_path.stem}.{tag}.runtime-cache")


def describe_diagnostics(trt, diagnostics) -> str:
    """get_engine_validity's bit mask as words ("OLD_CUDA_DRIVER: CUDA driver too old")."""
    members = getattr(getattr(trt, "EngineInvalidityDiagnostics", None), "__members__", {})
    names = [name for name, member in members.items() if int(diagnostics or 0) & int(member)]
    return "; ".join(f"{name}: {DIAGNOSTICS.get(name, name.lower())}" for name in names) or "no diagnostics"


class TrtExecutor:
    """Runs one engine; tensors are bound by name. Buffers (pinned host + device) are allocated once for the
    profile's max shapes and reused for every smaller batch. TensorRT-RTX captures CUDA graphs itself, per shape,
    and JIT-compiles kernels into a runtime cache kept beside the engine. Full TensorRT: each input shape seen a
    second time gets an execution context of its own, captured as a CUDA graph and replayed from then on (a graph
    replayed on a context that has since run another shape would read that shape's state)."""

    def __init__(self, engine_path, backend: Backend, runtime_cache_path=None, cuda_graphs: bool = True, log=None):
        self.engine_path = Path(engine_path)
        self.backend = backend
        self.runtime_cache_path = Path(runtime_cache_path) if runtime_cache_path else None
        self.warnings: list[str] = []           # said once each (SUBOPTIMAL engine, stale runtime cache, ...)
        self._log, self._cuda_graphs, self._closed = log, cuda_graphs, False
        self._trt, self._cudart = backend.module, cuda_driver.require_cudart()
        self.engine = self.context = self.stream = self._runtime = self._runtime_cache = None
        self._contexts: list[tuple] = []        # (context, its runtime config): they live and die together
        self._graphs: dict[tuple, tuple | None] = {}   # shapes → (context, graph exec), or None: plain enqueue
        self._seen: set[tuple] = set()
        self._host, self._device, self._pinned = {}, {}, []
        self._manual_graphs = cuda_graphs and backend.name == "trt"
        try:
            self._open()
        except GhostError:
            self.close(save=False)
            raise
        except Exception as err:                # a binding's TypeError/RuntimeError, an unreadable file
            self.close(save=False)
            raise self._error(f"cannot open the engine ({type(err).__name__}: {err})") from err

    @property
    def title(self) -> str:
        return self.backend.title

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            if self._log is not None:
                self._log(message)

    def _error(self, problem: str, mark: int | None = None) -> GhostError:
        """One line: the engine, what failed, and TensorRT's own last error lines (since `mark`)."""
        errors = getattr(getattr(self, "_logger", None), "errors", [])
        lines = errors[mark:] if mark is not None else errors[-1:]
        reason = f": {' | '.join(lines[-3:])}" if lines else ""
        return file_error(self.engine_path, " ".join(f"{self.title} {problem}{reason}".split()))

    def _mark(self) -> int:
        return len(self._logger.errors)

    def _cuda(self, result, what: str):
        """cuda-python returns (error, *values); a failure becomes a GhostError naming the engine and the call."""
        cudart = self._cudart
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != cudart.cudaError_t.cudaSuccess:
            raise file_error(self.engine_path, f"CUDA {what} failed: {cuda_driver.error_name(cudart, err)}")
        return values[0] if len(values) == 1 else values

    # ------------------------------------------------------------------------------------------ opening

    def _open(self) -> None:
        trt, cudart = self._trt, self._cudart
        if cudart.cudaFree(0)[0] != cudart.cudaError_t.cudaSuccess:     # creates the CUDA context, or says why not
            _, why = cuda_driver.probe_gpu()
            raise file_error(self.engine_path, f"cannot run: no usable CUDA GPU ({why})")
        self._logger = make_logger(trt, lambda line: self._log(line) if self._log else None)
        blob = self.engine_path.read_bytes()
        self._runtime = trt.Runtime(self._logger)
        if self._runtime is None:
            raise self._error("could not create a runtime")
        if hasattr(self._runtime, "get_engine_validity"):
            validity, diagnostics = self._runtime.get_engine_validity(blob)
            if validity == trt.EngineValidity.INVALID:
                raise self._error(f"says this engine cannot run on this GPU/driver "
                                  f"({describe_diagnostics(trt, diagnostics)})")
            if validity == trt.EngineValidity.SUBOPTIMAL:
                self._warn(f"{self.engine_path.name}: {self.title} runs this engine SUBOPTIMAL here "
                           f"({describe_diagnostics(trt, diagnostics)}); rebuilding it for this GPU may be faster")
        mark = self._mark()
        self.engine = self._runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise self._error("could not deserialize the engine", mark)
        self.context = self._new_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._dtypes = {name: self._numpy_dtype(name) for name in names}
        self.stream = self._cuda(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "stream create")
        self._allocate_max_buffers()

    def _numpy_dtype(self, name: str) -> np.dtype:
        dtype = self.engine.get_tensor_dtype(name)
        try:
            return np.dtype(self._trt.nptype(dtype))
        except TypeError:                       # BF16, FP8, FP4, INT4: no numpy type to hold them
            raise self._error(f"tensor {name} is {getattr(dtype, 'name', dtype)}, which numpy has no type for; "
                              f"export that input/output as float32 or float16") from None

    def _new_context(self):
        """An execution context; TensorRT-RTX's with a runtime config (CUDA graphs, the runtime cache) that is
        kept as long as the context, because the context holds a pointer to it."""
        trt, mark, config = self._trt, self._mark(), None
        if self.backend.name == "trt-rtx":
            config = self.engine.create_runtime_config()
            if self._cuda_graphs:               # RTX captures per shape natively, dynamic shapes included
                config.cuda_graph_strategy = trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
            if self._runtime_cache is None:
                self._runtime_cache = config.create_runtime_cache()
                self._load_runtime_cache()
            if config.set_runtime_cache(self._runtime_cache) is False:
                self._warn(f"{self.engine_path.name}: {self.title} refused the runtime cache; kernels compile anew")
            context = self.engine.create_execution_context(runtime_config=config)
        else:
            context = self.engine.create_execution_context()
        if context is None:                     # JIT compilation failed, or out of GPU memory
            raise self._error("could not create an execution context", mark)
        self._contexts.append((context, config))
        return context

    def _load_runtime_cache(self) -> None:
        path = self.runtime_cache_path
        if path is None or not path.is_file():
            return
        if not self._runtime_cache.deserialize(path.read_bytes()):    # another GPU/driver/version: rebuilt
            self._warn(f"{path}: runtime cache is from another GPU, driver or {self.title}; recompiling it")

    def _set_shapes(self, context, shapes) -> None:
        for name, shape in zip(self.input_names, shapes):
            mark = self._mark()
            if not context.set_input_shape(name, tuple(int(d) for d in shape)):
                raise self._error(f"refused input shape {tuple(shape)} for {name}", mark)

    def _bind(self, context) -> None:
        for name in self.input_names + self.output_names:
            mark = self._mark()
            if not context.set_tensor_address(name, int(self._device[name])):
                raise self._error(f"refused the device address of tensor {name}", mark)

    def _allocate_max_buffers(self) -> None:
        cudart = self._cudart
        self._set_shapes(self.context, [self.engine.get_tensor_profile_shape(n, 0)[2] for n in self.input_names])
        for name in self.input_names + self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise file_error(self.engine_path, f"tensor {name} has a data-dependent shape {shape}; not supported")
            dtype = self._dtypes[name]
            nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
            host_ptr = self._cuda(cudart.cudaHostAlloc(nbytes, cudart.cudaHostAllocDefault), "cudaHostAlloc")
            self._pinned.append(host_ptr)
            raw = (ctypes.c_byte * nbytes).from_address(int(host_ptr))
            self._host[name] = np.frombuffer(raw, dtype=dtype, count=nbytes // dtype.itemsize)
            self._device[name] = self._cuda(cudart.cudaMalloc(nbytes), f"cudaMalloc of {nbytes} bytes for {name}")
        self._bind(self.context)

    # ------------------------------------------------------------------------------------------ running

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._closed:
            raise GhostError(f"{self.engine_path}: the executor was closed")
        cudart = self._cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        if set(feeds) != set(self.input_names):
            raise GhostError(f"{self.engine_path}: feeds {sorted(feeds)} do not match inputs {self.input_names}")
        for name in self.input_names:
            array = np.ascontiguousarray(feeds[name], dtype=self._host[name].dtype)
            low, _, high = self.engine.get_tensor_profile_shape(name, 0)
            if array.ndim != len(high) or any(not lo <= d <= hi for d, lo, hi in zip(array.shape, low, high)):
                raise GhostError(f"{self.engine_path}: input {name} shape {array.shape} is outside the engine's "
                                 f"profile {tuple(low)}..{tuple(high)}; rebuild with a larger --max-batch")
            self._host[name][:array.size] = array.ravel()
            self._cuda(cudart.cudaMemcpyAsync(self._device[name], self._host[name].ctypes.data, array.nbytes, h2d,
                                              self.stream), "copy to device")
        key = tuple(tuple(int(d) for d in np.shape(feeds[n])) for n in self.input_names)
        first = key not in self._seen
        context = self._execute(key)
        shapes = {name: tuple(context.get_tensor_shape(name)) for name in self.output_names}
        for name, shape in shapes.items():
            nbytes = int(np.prod(shape)) * self._host[name].dtype.itemsize
            self._cuda(cudart.cudaMemcpyAsync(self._host[name].ctypes.data, self._device[name], nbytes, d2h,
                                              self.stream), "copy to host")
        self._cuda(cudart.cudaStreamSynchronize(self.stream), "stream synchronize")
        if first:                               # TensorRT-RTX JIT-compiled kernels for this shape: keep them
            self.save_runtime_cache()
        return {name: self._host[name][:int(np.prod(shape))].reshape(shape).copy() for name, shape in shapes.items()}

    def _enqueue(self, context) -> None:
        mark = self._mark()
        if not context.execute_async_v3(int(self.stream)):
            raise self._error("execution failed", mark)

    def _execute(self, key: tuple):
        """Replay the shape's graph on its own context, else enqueue; returns the context that ran."""
        graph = self._graphs.get(key)
        if graph is not None:
            context, graph_exec = graph
            self._cuda(self._cudart.cudaGraphLaunch(graph_exec, self.stream), "graph launch")
            return context
        capture = (self._manual_graphs and key in self._seen and key not in self._graphs
                   and len(self._graphs) < MAX_GRAPH_CONTEXTS)
        context = self.context
        if capture:                             # second sighting: a context of its own, run once, then captured
            try:
                context = self._new_context()
                self._bind(context)
            except GhostError as err:           # no memory for another context: this shape stays uncaptured
                self._warn(f"{self.engine_path.name}: no CUDA graph for shapes {key} ({err})")
                self._graphs[key], capture, context = None, False, self.context
        self._set_shapes(context, key)
        self._enqueue(context)
        if capture:
            graph_exec = self._try_capture(context)
            self._graphs[key] = (context, graph_exec) if graph_exec is not None else None
            if graph_exec is None:
                self._contexts = [pair for pair in self._contexts if pair[0] is not context]
        self._seen.add(key)
        return context

    def _try_capture(self, context):
        """Capture one enqueue of `context` as a CUDA graph; None (plain enqueue from now on) if it cannot be."""
        cudart = self._cudart
        if hasattr(context, "is_stream_capturable") and not context.is_stream_capturable(int(self.stream)):
            return None
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        if cudart.cudaStreamBeginCapture(self.stream, mode)[0] != cudart.cudaError_t.cudaSuccess:
            return None
        launched = context.execute_async_v3(int(self.stream))
        err, graph = cudart.cudaStreamEndCapture(self.stream)
        if not launched or err != cudart.cudaError_t.cudaSuccess:
            cudart.cudaGetLastError()           # clear the sticky capture error
            if err == cudart.cudaError_t.cudaSuccess and graph is not None:
                cudart.cudaGraphDestroy(graph)
            return None
        err, graph_exec = cudart.cudaGraphInstantiate(graph, 0)
        cudart.cudaGraphDestroy(graph)
        return graph_exec if err == cudart.cudaError_t.cudaSuccess else None

    # ------------------------------------------------------------------------------------------ closing

    def save_runtime_cache(self) -> None:
        """TensorRT-RTX: keep the JIT-compiled kernels for the next start, written atomically beside the engine
        (no-op for full TensorRT). A folder that cannot be written costs the next start its compile, not this run."""
        if self._runtime_cache is None or self.runtime_cache_path is None:
            return
        try:
            blob = bytes(self._runtime_cache.serialize())
            with atomic_path(self.runtime_cache_path) as tmp:
                tmp.write_bytes(blob)
        except (GhostError, OSError) as err:
            self._warn(f"{self.runtime_cache_path}: runtime cache not saved ({err})")

    def close(self, save: bool = True) -> None:
        """Save the runtime cache, then release graphs, contexts (with their configs), the engine, the runtime,
        the stream and the buffers. Safe to call twice."""
        if self._closed:
            return
        if save:
            self.save_runtime_cache()
        self._closed = True
        cudart = self._cudart
        if self.stream is not None:
            cudart.cudaStreamSynchronize(self.stream)
        for graph in self._graphs.values():
            if graph is not None:
                cudart.cudaGraphExecDestroy(graph[1])
        self._graphs, self._contexts, self.context = {}, [], None
        self.engine = self._runtime_cache = None
        self._runtime = None
        self._host = {}
        for pointer in self._device.values():
            cudart.cudaFree(pointer)
        for pointer in self._pinned:
            cudart.cudaFreeHost(pointer)
        if self.stream is not None:
            cudart.cudaStreamDestroy(self.stream)
        self._device, self._pinned, self.stream = {}, [], None


    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
