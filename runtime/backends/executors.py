"""Executors run one network each and know tensors by name, nothing about faces.

TensorRT / TensorRT-RTX engines are used when a CUDA GPU, the backend's libraries and a valid cached engine all
exist; otherwise OpenVINO on the CPU when it is installed (compiled once per machine, cached beside the
engines); otherwise ONNX Runtime's CPU provider, the fallback that always works. `make_executor` makes that
choice and says why, so the swap summary can tell the user which backend really ran.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ghostrt.errors import GhostError, file_error
from ghostrt.runtime.backends.batching import run_chunked  # noqa: F401 (its home before batching.py)

BACKENDS = ("auto", "ort", "openvino", "trt", "trt-rtx")
PRECISIONS = ("fp16", "bf16", "int8", "fp32")
NO_GPU = "no CUDA GPU: TensorRT engines need one; use --backend openvino or ort"

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
}


class OrtExecutor:
    """One ONNX file on ONNX Runtime's CPU provider (the onnxruntime-gpu wheel's CPU provider works anywhere)."""

    backend = "ort"

    def __init__(self, onnx_path, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(onnx_path)
        if not self.path.is_file():
            raise file_error(self.path, "ONNX file does not exist (run `ghostrt export`)")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initialisers are noise for users
        if threads:
            options.intra_op_num_threads = int(threads)
        # Stages run one net after another: an idle pool spinning for the next call steals the cores the
        # next net needs (measured: ~2× slower on 2 cores with four sessions alive).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable graphs
            raise file_error(self.path, f"ONNX Runtime cannot load it ({type(err).__name__}: "
                                        f"{str(err).splitlines()[0][:200]})") from err
        inputs = self.session.get_inputs()
        self.input_names = [i.name for i in inputs]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_dtypes = {i.name: _ORT_DTYPES.get(i.type, np.float32) for i in inputs}

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ValueError(f"{self.path.name}: missing inputs {missing}")
        bound = {n: np.ascontiguousarray(feeds[n], dtype=self.input_dtypes[n]) for n in self.input_names}
        outputs = self.session.run(self.output_names, bound)
        return dict(zip(self.output_names, outputs))


    def close(self) -> None:
        self.session = None


@dataclass
class Choice:
    """The executor picked for one model and the reason, shown in the summary."""

    executor: object
    backend: str
    reason: str
    precision: str = "fp32"     # what really runs (OpenVINO falls back to fp32 where bf16/INT8 cannot run)

    def close(self) -> None:
        """Release the executor (TensorRT: save its runtime cache, free contexts, stream and buffers)."""
        close = getattr(self.executor, "close", None)
        if close is not None:
            close()


class TrtUnavailable(GhostError):
    """Why TensorRT cannot run one net, with how far it got: auto reports the reason that got furthest."""

    NO_GPU, NO_BACKEND, NO_ENGINE, REFUSED, FAILED = range(5)

    def __init__(self, message: str, stage: int):
        super().__init__(message)
        self.stage = stage


def _trt_choice(model_onnx: Path, backend_name: str, precision: str, engines_dir: Path) -> Choice:
    """A TensorRT executor for a valid cached engine of this model, or a TrtUnavailable saying what is missing.

    Engines are found through their manifests (model, precision, backend), newest first, and each is checked
    by engine_cache.validate_for_run against this GPU and backend version before it is loaded. An FP32 engine
    must also come from this very ONNX; FP16/INT8 engines are built from derived ONNX files whose hash the
    manifest holds, so for those the manifest's own checks are what we have. The executor gets the runtime
    cache beside the engine (TensorRT-RTX's JIT-compiled kernels, kept between starts)."""
    from ghostrt.runtime.backends import engine_cache, trt_backend, trt_executor

    gpu, why = trt_backend.probe_gpu()
    if gpu is None:
        raise TrtUnavailable(f"{NO_GPU} ({why})", TrtUnavailable.NO_GPU)
    try:
        backend = trt_backend.load_backend(backend_name)
    except GhostError as err:
        raise TrtUnavailable(str(err), TrtUnavailable.NO_BACKEND) from None
    onnx_sha = engine_cache.sha256_file(model_onnx) if precision == "fp32" and model_onnx.is_file() else None
    try:
        path, _ = engine_cache.engine_for_run(engines_dir, model_onnx.stem, precision, backend_name, gpu,
                                              backend.version, onnx_sha)
    except GhostError as err:
        stage = TrtUnavailable.NO_ENGINE if "; build it with" in str(err) else TrtUnavailable.REFUSED
        raise TrtUnavailable(str(err), stage) from None
    try:
        executor = trt_executor.TrtExecutor(path, backend, trt_executor.runtime_cache_path(path, gpu))
    except (GhostError, ImportError, OSError, RuntimeError) as err:
        raise TrtUnavailable(str(err), TrtUnavailable.FAILED) from None
    reason = f"{backend.title} {precision} engine {path.name} on {gpu.name}"
    return Choice(executor, backend_name, reason + "".join(f"; {w}" for w in executor.warnings), precision)


def _openvino_choice(model_onnx: Path, precision: str, engines_dir: Path, threads: int | None,
                     strict: bool) -> Choice:
    """OpenVINO for this model. FP32 is compiled on first use (no gate needed); bf16 (asked for as bf16, or as
    fp16, which CPUs do not run) and INT8 need a blob `ghostrt build --backend openvino` compiled and gated.
    strict (--backend openvino): a missing blob is an error; under auto it falls back to FP32 and says so. A
    blob that missed the gate falls back to FP32 either way: a pipeline of nets keeps the ones that passed."""
    from ghostrt.runtime.backends import openvino_backend as ovb

    ov = ovb.load_openvino()
    cpu = ovb.probe_cpu(ov.Core())
    wanted = "bf16" if precision in ("fp16", "bf16") else precision
    note = ""
    if wanted != "fp32":
        if not cpu.supports(wanted):
            if strict and precision != "fp16":
                raise GhostError(f"--precision {precision}: this CPU ({cpu.name}) has no "
                                 f"{ovb.CAPABILITY[wanted]} support in OpenVINO ({', '.join(cpu.capabilities)})")
            note = f"; {wanted} unsupported on this CPU ({', '.join(cpu.capabilities)})"
        else:
            try:
                path, _ = ovb.blob_for_run(engines_dir, model_onnx.stem, wanted)
                return Choice(ovb.OpenVinoExecutor(path, threads), "openvino",
                              f"OpenVINO {wanted} {path.name} on {cpu.name}", wanted)
            except ovb.GateMissed as err:      # measured and refused: FP32 for this net, said in the summary
                note = f"; {wanted} refused ({err})"
            except GhostError as err:
                if strict and precision != "fp16":
                    raise
                note = f"; no usable {wanted} model ({err})"
    path, _, _ = ovb.compile_blob(model_onnx.stem, model_onnx, "fp32", engines_dir, log=lambda *_: None,
                                  warn=print)      # quiet compile, but a corrupt cached blob is always said
    return Choice(ovb.OpenVinoExecutor(path, threads), "openvino", f"OpenVINO fp32 on {cpu.name}{note}")


def make_executor(model_onnx, backend: str = "auto", precision: str = "fp16", engines_dir=Path("engines"),
                  threads: int | None = None) -> Choice:
    """auto → TensorRT-RTX or TensorRT when a GPU, the backend and a valid cached engine exist, else OpenVINO
    when installed, else ONNX Runtime."""
    if backend not in BACKENDS:
        raise GhostError(f"--backend {backend}: choose from {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise GhostError(f"--precision {precision}: choose from {', '.join(PRECISIONS)}")
    model_onnx, engines_dir = Path(model_onnx), Path(engines_dir)
    if backend in ("trt", "trt-rtx"):
        return _trt_choice(model_onnx, backend, precision, engines_dir)
    if backend == "openvino":
        return _openvino_choice(model_onnx, precision, engines_dir, threads, strict=True)
    if backend == "auto":
        failures = []
        for candidate in ("trt", "trt-rtx"):
            try:
                return _trt_choice(model_onnx, candidate, precision, engines_dir)
            except (GhostError, ImportError, OSError, RuntimeError) as err:
                failures.append(err)
                if getattr(err, "stage", None) == TrtUnavailable.NO_GPU:
                    break
        furthest = max(failures, key=lambda err: getattr(err, "stage", TrtUnavailable.FAILED))
        why = (str(furthest).replace(NO_GPU, "no CUDA GPU", 1) if getattr(furthest, "stage", None) == TrtUnavailable.NO_GPU
               else f"no usable TensorRT engine: {furthest}")
        try:
            choice = _openvino_choice(model_onnx, precision, engines_dir, threads, strict=False)
            choice.reason += f" ({why})"
            return choice
        except GhostError as err:
            why += f"; {err}"
        return Choice(OrtExecutor(model_onnx, threads), "ort", f"ONNX Runtime CPU ({why})")
    return Choice(OrtExecutor(model_onnx, threads), "ort", "ONNX Runtime CPU (--backend ort; runs the FP32 ONNX)")
