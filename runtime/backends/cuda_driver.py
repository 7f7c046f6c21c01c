"""Which CUDA GPU and driver this machine has, and, where a GPU exists but CUDA cannot use it, exactly why: a
driver older than the CUDA runtime cuda-python links reads as "no GPU" unless somebody says otherwise.

cuda-python 13.x links the CUDA 13 runtime, which needs driver >= 580; on an older driver every call returns
cudaErrorInsufficientDriver (so does a machine with no driver at all). The two are told apart by whether the
NVIDIA driver is visible (nvidia-smi, /proc/driver/nvidia), and the message then names the driver found, the one
needed and the wheels that would work with it. cuda-python is imported only here and in the executor.
"""

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ghostrt.errors import GhostError
from ghostrt.runtime.backends import host

CUDA_PYTHON_PIN = "cuda-python==13.4.4"
PROC_NVIDIA = Path("/proc/driver/nvidia")
# The Linux driver each CUDA major needs (CUDA minor-version compatibility: the major's first driver runs them all).
DRIVER_FOR_CUDA = {13: "580", 12: "525", 11: "450"}
# What links an older CUDA runtime, for a driver that cannot be updated (TensorRT-RTX has cu12 wheels too).
WHEELS_FOR_CUDA = {12: "cuda-python==12.9.10 tensorrt-rtx-cu12-bindings==1.7.1.116 tensorrt-rtx-cu12-libs==1.7.1.116",
                   11: "cuda-python==11.8.7 (full TensorRT 10 only: TensorRT-RTX needs CUDA 12 or later)"}


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str                     # "8.9"
    driver: str | None = None                   # the CUDA version the driver supports ("13.0"), or nvidia-smi's


def load_cudart():
    """cuda.bindings.runtime (tests put a fake in its place here, the one door to it)."""
    from cuda.bindings import runtime
    return runtime


def require_cudart():
    """cuda.bindings.runtime, or a GhostError saying how to install it."""
    try:
        return load_cudart()
    except ImportError:
        raise GhostError(f"running a TensorRT engine needs cuda-python: pip install {CUDA_PYTHON_PIN}") from None


def check(cudart, result, what: str):
    """cuda-python returns (error, *values); turn a failure into a GhostError naming the call."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        raise GhostError(f"CUDA {what} failed: {error_name(cudart, err)}")
    return values[0] if len(values) == 1 else values


def error_name(cudart, err) -> str:
    try:
        return cudart.cudaGetErrorName(err)[1].decode()
    except Exception:                           # a binding without the name table: the number says enough
        return str(err)


def _cuda_version(number: int) -> str:
    return f"{number // 1000}.{number % 1000 // 10}"


def probe_gpu() -> tuple[GpuInfo | None, str]:
    """(first CUDA GPU or None, how we know or why none). cuda-python answers best; nvidia-smi is the fallback."""
    try:
        cudart = load_cudart()
    except ImportError:
        return _probe_nvidia_smi("cuda-python not installed")
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess:
        if err == cudart.cudaError_t.cudaErrorInsufficientDriver:
            return None, driver_problem(cudart)
        return None, f"cuda-python: {error_name(cudart, err)} (no usable GPU/driver)"
    if count == 0:
        return None, "cuda-python: no CUDA device"
    err, props = cudart.cudaGetDeviceProperties(0)
    if err != cudart.cudaError_t.cudaSuccess:
        return None, f"cuda-python: {error_name(cudart, err)} reading device 0"
    _, driver = cudart.cudaDriverGetVersion()
    name = props.name.split(b"\0", 1)[0].decode(errors="replace")
    return GpuInfo(name, f"{props.major}.{props.minor}", _cuda_version(driver)), f"cuda-python: {count} device(s)"


def driver_problem(cudart) -> str:
    """Why cudaErrorInsufficientDriver: no NVIDIA driver at all, or one too old for this cuda-python (then the
    driver found, the one needed, and the wheels that would run on it)."""
    seen = nvidia_driver_seen()
    if seen is None:
        return "cuda-python: cudaErrorInsufficientDriver: no NVIDIA driver or GPU found (no nvidia-smi, no " \
               f"{PROC_NVIDIA})"
    gpu, driver = seen
    _, supports = cudart.cudaDriverGetVersion()          # the CUDA version the driver supports; 0: no libcuda
    _, runtime = cudart.cudaRuntimeGetVersion()
    runtime_major = int(runtime or 13000) // 1000
    wheel = f"cuda-python {host.package_version('cuda-python') or host.package_version('cuda-bindings') or '?'}"
    where = f"{gpu or 'an NVIDIA GPU'} is present (NVIDIA driver {driver or 'of unknown version'}"
    if not supports:
        return (f"{where}) but CUDA cannot use it: libcuda is not visible to this process (a container without the "
                f"driver libraries?); {wheel} needs driver >= {DRIVER_FOR_CUDA.get(runtime_major, '?')}")
    major = int(supports) // 1000
    fix = f"update the NVIDIA driver to >= {DRIVER_FOR_CUDA.get(runtime_major, '?')}"
    if major in WHEELS_FOR_CUDA and major < runtime_major:
        fix += f", or keep it and pip install {WHEELS_FOR_CUDA[major]}"
    return (f"{where}, CUDA {_cuda_version(int(supports))}) but the driver is too old for {wheel}, which links "
            f"the CUDA {_cuda_version(int(runtime or 13000))} runtime and needs driver >= "
            f"{DRIVER_FOR_CUDA.get(runtime_major, '?')} (cudaErrorInsufficientDriver): {fix}")


def nvidia_driver_seen() -> tuple[str | None, str | None] | None:
    """(GPU name, NVIDIA driver version) when an NVIDIA driver is loaded (nvidia-smi, else /proc), else None."""
    if shutil.which("nvidia-smi") is not None:
        query = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]
        try:
            out = subprocess.run(query, capture_output=True, text=True, timeout=10, check=True).stdout
            name, driver = [part.strip() for part in out.splitlines()[0].split(",")][:2]
            return name, driver
        except (subprocess.SubprocessError, OSError, IndexError, ValueError):
            pass
    try:
        version = (PROC_NVIDIA / "version").read_text()
    except OSError:
        return None
    found = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", version)
    name = None
    for info in sorted((PROC_NVIDIA / "gpus").glob("*/information")):
        model = re.search(r"^Model:\s*(.+)$", info.read_text(errors="replace"), re.M)
        if model:
            name = model.group(1).strip()
            break
    return name, found.group(1) if found else None


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
