"""`ghostrt doctor`: one screen answering "what will run here, and why": Python and ghostrt versions, the
TensorRT backends found, the GPU and driver, ONNX Runtime and its providers, torch (export side only), and
the backend `--backend auto` would pick. It never imports torch and needs no GPU."""

import importlib.metadata
import platform
import sys

import ghostrt
from ghostrt.runtime import trt_backend


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _onnxruntime_line() -> str:
    try:
        import onnxruntime
    except ImportError:
        return "not installed (pip install onnxruntime-gpu==1.24.4)"
    providers = ", ".join(onnxruntime.get_available_providers())
    return f"{onnxruntime.__version__}, providers built in: {providers} (GPU ones need a visible GPU)"


def report() -> list[tuple[str, str]]:
    backends = trt_backend.available_backends()
    gpu, how = trt_backend.probe_gpu()
    found = {b.name: b for b in backends}
    rows = [("python", f"{platform.python_version()} ({sys.executable})"),
            ("ghostrt", ghostrt.__version__)]
    for name, module in trt_backend.BACKEND_MODULES.items():
        title = trt_backend.BACKEND_TITLES[name]
        rows.append((name, f"{title} {found[name].version} (import {module})" if name in found
                     else f"not found (import {module} failed)"))
    if gpu is None:
        rows.append(("gpu", f"none visible ({how})"))
    else:
        cc = gpu.compute_capability
        rtx = ("no (not an RTX-class GPU; use --backend trt)" if not trt_backend.rtx_supports(cc)
               else "yes, with --rtx-target turing engines" if cc == "7.5" else "yes")
        rows.append(("gpu", f"{gpu.name}, CC {gpu.compute_capability}, driver {gpu.driver} ({how})"))
        rows.append(("trt-rtx runs here", rtx))
    cuda_python = _package_version("cuda-python") or _package_version("cuda-bindings")
    rows.append(("cuda-python", cuda_python or f"not installed (needed to run engines: pip install "
                                               f"{trt_backend.CUDA_PYTHON_PIN})"))
    rows.append(("onnxruntime", _onnxruntime_line()))
    torch = _package_version("torch")
    rows.append(("torch", f"{torch} (export side only)" if torch else "not installed (only `ghostrt export` needs it)"))
    choice, why = trt_backend.choose_auto(backends, gpu)
    rows.append(("build (auto)", f"{choice.name}: {why}" if choice else f"none: {why}"))
    runs_engines = gpu is not None and choice is not None
    rows.append(("swap (auto)", f"{choice.name} engines on {gpu.name} (when built; else ONNX Runtime CPU)"
                 if runs_engines else "ONNX Runtime CPU: no GPU to run TensorRT engines on"))
    return rows


def run(args) -> int:
    rows = report()
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("doctor", help="report backends, GPUs, versions and execution providers")
    p.set_defaults(func=run)
