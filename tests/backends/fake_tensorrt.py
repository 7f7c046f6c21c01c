"""A small fake of the TensorRT(-RTX) runtime and of cuda.bindings.runtime, on host memory, for the first-run
tests that need no GPU. It follows the real semantics the executor must survive, not a happy path:

- create_execution_context returns None (JIT failure, out of memory) and logs an ERROR; so do
  deserialize_cuda_engine, set_input_shape / set_tensor_address (False), execute_async_v3 (False);
- get_engine_validity returns (EngineValidity, diagnostics bit mask), SUBOPTIMAL included;
- a context keeps only its engine alive: it holds its runtime config (and that config its runtime cache) by a
  raw pointer, here a weakref; enqueueing after the config died is the use-after-free it would be on a GPU;
- nptype raises TypeError for BF16 (as the real helper does);
- an enqueue updates the context's persistent state (its shapes) at enqueue time, and the kernels read that state
  when they run: so a CUDA graph replayed on a context that has since run another shape computes the wrong rows;
- TensorRT-RTX JIT-compiles kernels per shape into its runtime cache, which serialises and deserialises (refused
  for another GPU);
- cudart follows cuda-python: (error, value) tuples with the real cudaError_t enum, cudaErrorInsufficientDriver
  on a driver too old for the CUDA runtime it links, stream capture into graphs that replay later.
Enum values and names are the real ones (tests/backends/test_trt_first_run.py checks every name against the real modules).
"""

import ctypes
import enum
import json
import types
import weakref
from types import SimpleNamespace

import numpy as np
from cuda.bindings import runtime as real_cudart

OK = real_cudart.cudaError_t.cudaSuccess
FAKE_MAGIC = "ghostrt-fake-engine/1"


# ----------------------------------------------------------------------------------------------- cudart

class FakeStream:
    def __init__(self, handle):
        self.handle, self.capture = handle, None    # capture: list of recorded work while capturing

    def __int__(self):
        return self.handle


class FakeCudart:
    """cuda.bindings.runtime on host memory: device buffers are ctypes arrays, work runs at once (or is
    recorded while its stream captures), graphs replay what was recorded."""

    cudaError_t = real_cudart.cudaError_t
    cudaMemcpyKind = real_cudart.cudaMemcpyKind
    cudaStreamCaptureMode = real_cudart.cudaStreamCaptureMode
    cudaStreamNonBlocking = real_cudart.cudaStreamNonBlocking
    cudaHostAllocDefault = real_cudart.cudaHostAllocDefault
    cudaGetErrorName = staticmethod(real_cudart.cudaGetErrorName)

    def __init__(self, gpu=("NVIDIA GeForce RTX 4090", 8, 9), driver_cuda=13000, runtime_cuda=13040):
        self.gpu, self.driver_cuda, self.runtime_cuda = gpu, driver_cuda, runtime_cuda
        self.live, self.streams, self.graph_execs, self.launches = {}, set(), set(), 0

    @property
    def too_old(self) -> bool:
        return self.driver_cuda // 1000 < self.runtime_cuda // 1000

    def _driver_ok(self):
        return self.cudaError_t.cudaErrorInsufficientDriver if self.too_old else OK

    def cudaGetDeviceCount(self):
        return (self._driver_ok(), None) if self.too_old else (OK, 1)

    def cudaGetDeviceProperties(self, index):
        if self.too_old:
            return self.cudaError_t.cudaErrorInsufficientDriver, None
        name, major, minor = self.gpu
        return OK, SimpleNamespace(name=name.encode() + b"\0" * 8, major=major, minor=minor)

    def cudaDriverGetVersion(self):
        return OK, self.driver_cuda

    def cudaRuntimeGetVersion(self):
        return OK, self.runtime_cuda

    def cudaGetLastError(self):
        return (OK,)

    def _alloc(self, nbytes):
        if self.too_old:
            return self.cudaError_t.cudaErrorInsufficientDriver, 0
        buffer = (ctypes.c_byte * int(nbytes))()
        self.live[ctypes.addressof(buffer)] = buffer
        return OK, ctypes.addressof(buffer)

    def cudaMalloc(self, nbytes):
        return self._alloc(nbytes)

    def cudaHostAlloc(self, nbytes, flags):
        return self._alloc(nbytes)

    def cudaFree(self, pointer):
        if int(pointer) == 0:                   # the usual "create the CUDA context" call
            return (self._driver_ok(),)
        del self.live[int(pointer)]
        return (OK,)

    cudaFreeHost = cudaFree

    def cudaStreamCreateWithFlags(self, flags):
        if self.too_old:
            return self.cudaError_t.cudaErrorInsufficientDriver, None
        stream = FakeStream(0x5000 + len(self.streams) + 1)
        self.streams.add(stream)
        return OK, stream

    def cudaStreamDestroy(self, stream):
        self.streams.discard(stream)
        return (OK,)

    def cudaStreamSynchronize(self, stream):
        return (OK,)

    def launch(self, stream, work) -> None:
        """What a kernel launch does on `stream`: runs now, or is recorded while the stream captures."""
        if stream.capture is not None:
            stream.capture.append(work)
        else:
            work()

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        self.launch(stream, lambda: ctypes.memmove(int(dst), int(src), int(nbytes)))
        return (OK,)

    def cudaStreamBeginCapture(self, stream, mode):
        stream.capture = []
        return (OK,)

    def cudaStreamEndCapture(self, stream):
        work, stream.capture = stream.capture, None
        return OK, SimpleNamespace(work=work)

    def cudaGraphInstantiate(self, graph, flags):
        graph_exec = SimpleNamespace(work=list(graph.work))
        self.graph_execs.add(id(graph_exec))
        return OK, graph_exec

    def cudaGraphDestroy(self, graph):
        return (OK,)

    def cudaGraphExecDestroy(self, graph_exec):
        self.graph_execs.discard(id(graph_exec))
        return (OK,)

    def cudaGraphLaunch(self, graph_exec, stream):
        self.launches += 1
        for work in graph_exec.work:
            work()
        return (OK,)


# ----------------------------------------------------------------------------------------------- TensorRT

class Severity(enum.IntEnum):
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)


class ILogger:
    Severity = Severity

    def __init__(self):
        pass


EngineValidity = enum.IntEnum("EngineValidity", {"VALID": 0, "SUBOPTIMAL": 1, "INVALID": 2})
EngineInvalidityDiagnostics = enum.IntEnum("EngineInvalidityDiagnostics", {
    "VERSION_MISMATCH": 1, "UNSUPPORTED_CC": 2, "OLD_CUDA_DRIVER": 4, "OLD_CUDA_RUNTIME": 8,
    "INSUFFICIENT_GPU_MEMORY": 16, "MALFORMED_ENGINE": 32, "CUDA_ERROR": 64})
TensorIOMode = enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
DataType = enum.IntEnum("DataType", {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4, "UINT8": 5,
                                     "FP8": 6, "BF16": 7, "INT64": 8})
CudaGraphStrategy = enum.IntEnum("CudaGraphStrategy", {"DISABLED": 0, "WHOLE_GRAPH_CAPTURE": 1})
NPTYPES = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
           DataType.INT32: np.int32, DataType.INT64: np.int64, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8}


def nptype(trt_type):
    if trt_type in NPTYPES:
        return NPTYPES[trt_type]
    raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")


def engine_blob(version: str, batch=(1, 2, 4), sample=(3, 2, 2), dtypes=None, targets=("8.6", "8.9")) -> bytes:
    """A serialized fake engine: y = 2x + 1 over input x with a dynamic batch axis."""
    shapes = [[b, *sample] for b in batch]
    return json.dumps({"magic": FAKE_MAGIC, "version": version, "profile": shapes, "targets": list(targets),
                       "dtypes": {"x": "FLOAT", "y": "FLOAT", **(dtypes or {})}}).encode()


class FakeRuntimeCache:
    def __init__(self, trt):
        self.trt, self.kernels = trt, set()

    def serialize(self):
        return json.dumps({"gpu": self.trt.gpu_tag, "kernels": sorted(map(list, self.kernels))}).encode()

    def deserialize(self, blob) -> bool:
        try:
            data = json.loads(bytes(blob))
        except ValueError:
            return False
        if data.get("gpu") != self.trt.gpu_tag:             # another GPU/driver/version: rejected, unchanged
            return False
        self.kernels |= {tuple(map(tuple, k)) if isinstance(k[0], list) else tuple(k) for k in data["kernels"]}
        return True


class FakeRuntimeConfig:
    def __init__(self, trt):
        self.trt, self.cuda_graph_strategy, self._cache = trt, CudaGraphStrategy.DISABLED, None

    def create_runtime_cache(self):
        return FakeRuntimeCache(self.trt)

    def set_runtime_cache(self, cache) -> bool:
        self._cache = weakref.ref(cache)                    # a raw pointer: the config does not own it
        return True

    def get_runtime_cache(self):
        return self._cache() if self._cache else None


class FakeContext:
    def __init__(self, engine, config):
        self.engine, self.trt = engine, engine.trt          # the one thing a real context keeps alive
        self._config = weakref.ref(config) if config is not None else None
        self.shapes, self.addresses, self.state_shape = {}, {}, None
        self._own_kernels = set()
        engine.trt.contexts.add(self)

    def _error(self, message) -> bool:
        self.trt.logger.log(Severity.ERROR, message)
        return False

    def get_runtime_config(self):
        config = self._config() if self._config else None
        if self._config is not None and config is None:
            raise RuntimeError("use after free: the runtime config of this context was destroyed")
        return config

    def set_input_shape(self, name, shape) -> bool:
        low, _, high = self.engine.get_tensor_profile_shape(name, 0)
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(high) or any(not lo <= d <= hi for d, lo, hi in zip(shape, low, high)):
            return self._error(f"IExecutionContext::setInputShape: Error Code 3: API Usage Error (shape {shape} "
                               f"is out of the optimization profile for {name})")
        if self.trt.fail_shape:
            return self._error(self.trt.fail_shape)
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name):
        return self.shapes.get("x", (-1, *self.engine.profile[0][1:]))

    def set_tensor_address(self, name, memory) -> bool:
        if self.trt.fail_address or name not in ("x", "y"):
            return self._error(self.trt.fail_address or f"IExecutionContext::setTensorAddress: unknown tensor {name}")
        self.addresses[name] = int(memory)
        return True

    def is_stream_capturable(self, stream) -> bool:
        return True

    def execute_async_v3(self, stream_handle) -> bool:
        if self._config is not None and self._config() is None:
            return self._error("IExecutionContext::enqueueV3: runtime config destroyed before its context "
                               "(use after free)")
        if set(self.addresses) != {"x", "y"} or "x" not in self.shapes:
            return self._error("IExecutionContext::enqueueV3: not all shapes or addresses are set")
        shape = self.shapes["x"]
        if self.trt.rtx:                                    # JIT: kernels per shape, kept in the runtime cache
            config = self._config() if self._config else None
            cache = config.get_runtime_cache() if config is not None else None
            kernels = cache.kernels if cache is not None else self._own_kernels
            if shape not in kernels:
                self.trt.jit_compiles += 1
                kernels.add(shape)
        self.state_shape = shape                            # persistent state, written at enqueue time
        x_ptr, y_ptr, count = self.addresses["x"], self.addresses["y"], int(np.prod(shape[1:]))

        def kernel():                                       # reads the state when it runs, not when recorded
            rows = self.state_shape[0] * count
            x = np.frombuffer((ctypes.c_float * rows).from_address(x_ptr), np.float32)
            y = np.frombuffer((ctypes.c_float * rows).from_address(y_ptr), np.float32)
            y[:] = 2 * x + 1

        stream = next(s for s in self.trt.cudart.streams if int(s) == int(stream_handle))
        self.trt.cudart.launch(stream, kernel)
        return True


class FakeEngine:
    def __init__(self, trt, data):
        self.trt, self.profile, self.dtypes = trt, [tuple(s) for s in data["profile"]], data["dtypes"]
        self.num_io_tensors = 2

    def get_tensor_name(self, index):
        return ("x", "y")[index]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name == "x" else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return DataType[self.dtypes[name]]

    def get_tensor_profile_shape(self, name, profile_index):
        return list(self.profile)

    def create_runtime_config(self):
        return FakeRuntimeConfig(self.trt)

    def create_execution_context(self, runtime_config=None):
        if self.trt.fail_context:                           # what JIT failure or out-of-memory looks like
            self.trt.logger.log(Severity.ERROR, self.trt.fail_context)
            return None
        return FakeContext(self, runtime_config)


class Runtime:
    def __init__(self, logger):
        self.trt = _current
        self.trt.logger = logger

    def _parse(self, blob):
        try:
            data = json.loads(bytes(blob))
        except ValueError:
            return None
        return data if isinstance(data, dict) and data.get("magic") == FAKE_MAGIC else None

    def get_engine_validity(self, blob):
        data, trt = self._parse(blob), self.trt
        if data is None:
            trt.logger.log(Severity.INFO, "The engine header does not conform to the expected format for "
                                          "TensorRT-RTX.")
            return EngineValidity.INVALID, int(EngineInvalidityDiagnostics.MALFORMED_ENGINE)
        if data["version"] != trt.__version__:
            return EngineValidity.INVALID, int(EngineInvalidityDiagnostics.VERSION_MISMATCH)
        if trt.old_driver_engine:
            return EngineValidity.INVALID, int(EngineInvalidityDiagnostics.OLD_CUDA_DRIVER)
        if trt.cc not in data["targets"]:                   # runs, through a less specialised path
            return EngineValidity.SUBOPTIMAL, int(EngineInvalidityDiagnostics.UNSUPPORTED_CC)
        return EngineValidity.VALID, 0

    def deserialize_cuda_engine(self, blob):
        data = self._parse(blob)
        if data is None:
            self.trt.logger.log(Severity.ERROR, "IRuntime::deserializeCudaEngine: Error Code 1: Serialization "
                                                "(Serialization assertion header.magicTag == kEXPECTED_MAGIC_TAG "
                                                "failed.)")
            return None
        return FakeEngine(self.trt, data)


_current = None


def make_fake_trt(cudart: FakeCudart, name: str = "tensorrt_rtx_bindings", version: str = "1.7.1.116",
                  rtx: bool = True, cc: str = "8.9"):
    """A module object standing in for tensorrt_rtx_bindings / tensorrt_rtx (rtx) or tensorrt. Knobs:
    fail_context / fail_shape / fail_address (an error line: that call fails with it), old_driver_engine."""
    global _current
    trt = types.ModuleType(name)
    trt.__version__ = version
    for item in (ILogger, EngineValidity, EngineInvalidityDiagnostics, TensorIOMode, DataType, CudaGraphStrategy,
                 Runtime, nptype):
        setattr(trt, item.__name__, item)
    trt.cudart, trt.rtx, trt.cc, trt.gpu_tag = cudart, rtx, cc, f"{cudart.gpu[0]}|{cc}"
    trt.fail_context = trt.fail_shape = trt.fail_address = None
    trt.old_driver_engine, trt.jit_compiles, trt.logger = False, 0, None
    trt.contexts = weakref.WeakSet()
    _current = trt
    return trt
