"""What this machine is, read one way for everyone who reports it (doctor, bench, check) or keys a cache on it
(the OpenVINO blob key's ISA flags). Torch-free and import-light: nothing here loads a backend."""

import importlib.metadata
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_field(name: str) -> str | None:
    """The first `name : value` line of /proc/cpuinfo, or None (no such file or field, e.g. not Linux)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name):
            return line.split(":", 1)[1].strip()
    return None


def cpu_model() -> str:
    """The CPU's marketing name ("AMD EPYC"), else what platform knows of it."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU's ISA flags as the kernel lists them (avx2, avx512_bf16, amx_tile, ...); empty where unknown."""
    return set((_cpuinfo_field("flags") or "").split())


def package_version(dist: str) -> str | None:
    """The installed version of distribution `dist`, or None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(packages: dict[str, str] | None = None) -> dict:
    """The machine as every report records it (bench, check, device runs): CPU, cores (and those usable by
    this process), OS, Python, the UTC date, and {key: version} of the given {key: distribution} packages
    (None where one is not installed)."""
    import datetime
    import os

    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    info = {"cpu": cpu_model(), "cores": cores, "usable_cores": usable, "os": platform.platform(),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    info.update({key: package_version(dist) for key, dist in (packages or {}).items()})
    return info
