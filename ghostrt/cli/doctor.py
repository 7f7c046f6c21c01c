"""`ghostrt doctor`: one screen answering "what will run here, and why": Python and ghostrt versions, the
TensorRT backends found, the GPU and driver, OpenVINO and what this CPU lets it run (bf16, INT8), ONNX Runtime
and its providers, torch (export side only), and the backend `--backend auto` would pick. A GPU whose driver is
too old for cuda-python is named as such, with the driver needed and the wheels that would work. It never
imports torch, needs no GPU and compiles nothing (OpenVINO is only asked for the CPU's properties)."""

import platform
import sys

from ghostrt.version import __version__
from ghostrt.errors import GhostError
from ghostrt.runtime.backends import cuda_driver, host, openvino_backend, trt_backend

VNNI = ("avx512_vnni", "avx_vnni", "amx_int8")


def _onnxruntime_line() -> str:
    try:
        import onnxruntime
    except ImportError:
        return "not installed (pip install onnxruntime-gpu==1.24.4)"
    providers = ", ".join(onnxruntime.get_available_providers())
    return f"{onnxruntime.__version__}, providers built in: {providers} (GPU ones need a visible GPU)"


def _probe_cpu() -> tuple[openvino_backend.CpuInfo | None, str]:
    """(this CPU as OpenVINO sees it, or None) and the openvino row's text."""
    try:
        cpu, version = openvino_backend.probe_cpu(), openvino_backend.version()
    except GhostError:
        return None, f"not installed (pip install {openvino_backend.PIN}); CPU runs fall back to ONNX Runtime"
    return cpu, f"{version} (CPU plugin)"


def _cpu_rows(cpu) -> list[tuple[str, str]]:
    if cpu is None:
        return [("cpu", f"{host.cpu_model()}; OpenVINO capabilities unknown (not installed)")]
    isa = ", ".join(cpu.isa) or "no AVX2"
    bf16 = ("yes: --precision fp16/bf16 run a gated bf16 model (ghostrt build --backend openvino "
            "--precision bf16)" if cpu.supports("bf16")
            else "no (needs AVX-512-BF16 or AMX): fp16/bf16 requests run FP32 on OpenVINO")
    vnni = next((f for f in VNNI if f in cpu.isa), None)
    int8 = (f"yes, {'with ' + vnni if vnni else 'without VNNI'} (a gated INT8 model from ghostrt build "
            "--backend openvino --precision int8)" if cpu.supports("int8") else "no: INT8 runs FP32 here")
    return [("cpu", f"{cpu.name}; ISA {isa}; OpenVINO capabilities {', '.join(cpu.capabilities)}"),
            ("bf16 (cpu)", bf16), ("int8 (cpu)", int8)]


def _swap_auto(gpu, choice, cpu, unusable: bool = False) -> str:
    """What `swap --backend auto` runs, in the order executors.make_executor tries."""
    cpu_side = (f"OpenVINO on {cpu.name} (fp32{', bf16 when built and gated' if cpu.supports('bf16') else ''})"
                if cpu is not None else "ONNX Runtime CPU (OpenVINO not installed)")
    if gpu is not None and choice is not None:
        return f"{choice.name} engines on {gpu.name} (when built; else {cpu_side})"
    if unusable:
        return f"{cpu_side}: the GPU cannot run TensorRT engines until the driver problem in the gpu row is fixed"
    return f"{cpu_side}: no GPU to run TensorRT engines on" if gpu is None else \
        f"{cpu_side}: no TensorRT backend to run engines on {gpu.name}"


def report() -> list[tuple[str, str]]:
    backends = trt_backend.available_backends()
    gpu, how = trt_backend.probe_gpu()
    found = {b.name: b for b in backends}
    rows = [("python", f"{platform.python_version()} ({sys.executable})"),
            ("ghostrt", __version__)]
    for name, modules in trt_backend.MODULE_NAMES.items():
        title = trt_backend.BACKEND_TITLES[name]
        rows.append((name, f"{title} {found[name].version} (import {found[name].module_name})" if name in found
                     else f"not found (import {' or '.join(modules)} failed)"))
    unusable = gpu is None and cuda_driver.nvidia_driver_seen() is not None
    if unusable:                                # a GPU and a driver exist, CUDA cannot use them: say why
        rows.append(("gpu", f"present but not usable: {how}"))
    elif gpu is None:
        rows.append(("gpu", f"none visible ({how})"))
    else:
        cc = gpu.compute_capability
        rtx = ("no (not an RTX-class GPU; use --backend trt)" if not trt_backend.rtx_supports(cc)
               else "yes, with --rtx-target turing engines" if cc == "7.5" else "yes")
        rows.append(("gpu", f"{gpu.name}, CC {gpu.compute_capability}, driver {gpu.driver} ({how})"))
        rows.append(("trt-rtx runs here", rtx))
    cuda_python = host.package_version("cuda-python") or host.package_version("cuda-bindings")
    rows.append(("cuda-python", cuda_python or f"not installed (needed to run engines: pip install "
                                               f"{trt_backend.CUDA_PYTHON_PIN})"))
    cpu, openvino_line = _probe_cpu()
    rows.append(("openvino", openvino_line))
    rows += _cpu_rows(cpu)
    rows.append(("onnxruntime", _onnxruntime_line()))
    torch = host.package_version("torch")
    rows.append(("torch", f"{torch} (export side only)" if torch else "not installed (only `ghostrt export` needs it)"))
    choice, why = trt_backend.choose_auto(backends, gpu)
    rows.append(("build (auto)", f"{choice.name}: {why}" if choice else f"none: {why}"))
    rows.append(("swap (auto)", _swap_auto(gpu, choice, cpu, unusable)))
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
