"""One call on a lent GPU: the GHOST-style anchor ghostrt must beat, and ghostrt's own device plumbing.

The device image has its own python3 and packages (PyTorch, cuda-bindings, CuPy; no TensorRT), and the repo is
copied there as a plain working tree, not installed; so the `ghostrt` namespace is mapped onto the repo's folders
here (from pyproject's tool.ghostrt.package-dirs), and every section is fenced by a hard time budget, because the lease is
minutes. Results (JSON + PNG) are rewritten after every section, so a run cut short still returns what it measured.
Sections that cannot run (no CUDA, no CUDA provider in ONNX Runtime, budget spent) say why in the JSON.

This file is the entry point: arguments, budget, import shim, section orchestration, JSON/PNG, and the small
ORT-CUDA comparison. The other sections live beside it as plain sibling modules (the script's folder is on
sys.path when run as a script): reference_timing.py (1. the GHOST-style anchor), plumbing.py (2. copies, overlap,
CUDA graphs), timing.py (the budget and clock all sections share).

    python3 bench/device/device_bench.py --out DIR [--budget-s 330] [--cpu-smoke]
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from plumbing import section_copies, section_graphs, section_overlap
from reference_timing import SCOPE_NET, SCOPE_STAGE, section_reference
from timing import VIDEO_BATCH, Budget, stats_ms

REPO = Path(__file__).resolve().parents[2]
SCHEMA = "ghostrt-device-bench/1"
LABEL_REFERENCE = ("reference: GHOST-style PyTorch eager (G fully fp16, ArcFace fp32) on {gpu}, stand-in weights "
                   "(same shapes and FLOPs as the released files) -- the anchor ghostrt must beat on a TensorRT GPU")
LABEL_REFERENCE_CPU = "cpu-smoke: PyTorch eager fp32 on the CPU at tiny size -- proves the code runs, not a measurement"
LABEL_PLUMBING = ("ghostrt plumbing: cuda-python (cuda.bindings.runtime) through runtime/trt_backend.py's helpers "
                  "on {gpu}")
LABEL_GRAPH = "graph replay vs eager launch on {gpu}: what ghostrt's per-shape CUDA-graph capture saves"
LABEL_ORT = "comparison: ghostrt's exported ONNX on ONNX Runtime CUDA EP fp32 on {gpu}"
OPTIONAL_MODULES = ("onnx", "onnxruntime", "av", "cv2", "skimage", "matplotlib", "cupy", "cuda.bindings",
                    "tensorrt", "tensorrt_rtx_bindings")


# ------------------------------------------------------------------------------------------------ set-up

def install_import_shim(repo: Path = REPO) -> dict[str, str]:
    """Map ghostrt, ghostrt.export, ghostrt.runtime, ... onto the working tree exactly as pyproject's
    package-dirs say (the device image has no editable install). Parents first; returns name -> folder."""
    import tomllib

    package_dir = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["ghostrt"]["package-dirs"]
    loaded = {}
    for name in sorted(package_dir, key=lambda n: n.count(".")):
        folder = repo / package_dir[name]
        spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        if "." in name:
            parent, child = name.rsplit(".", 1)
            setattr(sys.modules[parent], child, module)
        loaded[name] = str(folder)
    return loaded


def ort_cuda_decision(cuda_available: bool, providers: list[str] | None) -> tuple[bool, str]:
    """(run the ORT-CUDA comparison?, why). onnxruntime-gpu lists its CUDA provider even with no GPU."""
    if providers is None:
        return False, "onnxruntime is not importable in this image"
    if not cuda_available:
        return False, "no CUDA device visible to PyTorch"
    if "CUDAExecutionProvider" not in providers:
        return False, (f"onnxruntime here offers {providers}: no CUDAExecutionProvider (the image ships the "
                       f"CPU-only onnxruntime wheel; onnxruntime-gpu is far over the 64 MiB carry limit)")
    return True, "CUDAExecutionProvider available"


def module_versions() -> dict:
    found = {}
    for name in OPTIONAL_MODULES:
        try:
            present = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            present = False
        found[name] = present
    for dist in ("torch", "cuda-bindings", "cuda-python", "cupy-cuda13x", "onnxruntime", "onnxruntime-gpu", "onnx",
                 "numpy"):
        try:
            found[f"version:{dist}"] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def nvidia_smi_snapshot() -> str | None:
    """Read-only query of clocks/temperature/power (settings are never changed)."""
    query = "name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw,memory.used"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(torch) -> dict:
    from ghostrt.runtime.backends.trt_backend import probe_gpu

    try:                                       # ghostrt's own probe; a surprise here must not cost the call
        gpu, how = probe_gpu()
    except Exception as err:
        gpu, how = None, f"probe_gpu raised {type(err).__name__}: {err}"
    info = {"python": platform.python_version(), "host": platform.node(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "ghostrt_probe_gpu": {"gpu": None if gpu is None else vars(gpu), "how": how},
            "modules": module_versions(), "nvidia_smi_before": nvidia_smi_snapshot()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                    multiprocessors=props.multi_processor_count, gpu_memory_bytes=props.total_memory,
                    cudnn=torch.backends.cudnn.version(), cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    cudnn_benchmark=torch.backends.cudnn.benchmark,
                    matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return info


# -------------------------------------------------------------------------------- 3. ORT-CUDA comparison

def section_ort(torch, budget, tmp_dir: Path) -> dict:
    """ghostrt's own export (TorchScript exporter, opset 17) of the stand-in G 2-block and ArcFace, run by
    ONNX Runtime's CUDA EP in fp32 with numpy feeds (host copies included, as OrtExecutor runs)."""
    import onnxruntime as ort

    from ghostrt.export.aei_net import SwapOnly, generator_inputs, standin_generator
    from ghostrt.export.iresnet import arcface_inputs, standin_arcface
    from ghostrt.export.onnx_io import export_module

    rows = []
    for name, build, inputs, outputs in (("arcface", standin_arcface, arcface_inputs, ["embedding"]),
                                         ("G_2block", lambda: SwapOnly(standin_generator(2)), generator_inputs,
                                          ["swapped"])):
        if budget.left() < 45:
            rows.append({"model": name, "status": "skipped: budget spent"})
            continue
        path = export_module(build(), inputs(1), outputs, tmp_dir / f"{name}.onnx")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CUDAExecutionProvider"])
        for batch, reps in ((1, 30), (VIDEO_BATCH, 10)):
            feeds = inputs(batch)
            for _ in range(3):
                session.run(None, feeds)
            samples = []
            for _ in range(reps):
                if budget.expired():
                    break
                t0 = time.perf_counter()
                session.run(None, feeds)
                samples.append((time.perf_counter() - t0) * 1e3)
            st = stats_ms(samples)
            rows.append({"model": name, "precision": "fp32", "batch": batch, "per_call": st,
                         "per_face_p50_ms": st["p50_ms"] / batch if samples else None,
                         "providers": session.get_providers()})
        del session
    return {"results": rows, "timing": "perf_counter around session.run (host feeds)"}


# ---------------------------------------------------------------------------------------------- report

def write_report(report: dict, out_dir: Path) -> None:
    from ghostrt.atomic import atomic_path

    with atomic_path(out_dir / "device_bench.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")


def scope_tag(row: dict) -> str:
    return {SCOPE_NET: "net", SCOPE_STAGE: "stage"}.get(row.get("scope"), "")


def write_chart(report: dict, out_dir: Path) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "skipped: matplotlib not importable"
    from ghostrt.atomic import atomic_path

    ref = report["sections"].get("reference", {}).get("results", [])
    bars = [(f"{r['model']} {r['precision']} b{r['batch']} {scope_tag(r)}", r["per_face_p50_ms"]) for r in ref
            if r.get("per_call", {}).get("n")]
    copies = report["sections"].get("copies", {}).get("results", [])
    bw = [(f"{c['buffer'].split('_')[0]} {k}", c[k]["GB_per_s_at_p50"]) for c in copies
          for k in ("pinned_h2d", "pageable_h2d", "pinned_d2h", "pageable_d2h") if c.get(k, {}).get("n")]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, rows, title, unit in ((axes[0], bars, "reference per-face latency (p50)", "ms per face"),
                                  (axes[1], bw, "ghostrt plumbing: host<->device copies", "GB/s")):
        if rows:
            ax.barh([r[0] for r in rows], [r[1] for r in rows], color="tab:blue")
            ax.invert_yaxis()
            if unit == "ms per face" and max(r[1] for r in rows) > 20 * min(r[1] for r in rows):
                ax.set_xscale("log")            # batch-1 and batch-40 per-face times differ by 10x or more
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel(unit)
    fig.suptitle(f"ghostrt device bench -- {report['machine'].get('gpu', 'no GPU (cpu-smoke)')}")
    fig.tight_layout()
    with atomic_path(out_dir / "device_bench.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return "written"


def summary_lines(report: dict) -> list[str]:
    lines = [f"machine: {report['machine'].get('gpu', 'no CUDA GPU')} ({report['mode']}), "
             f"elapsed {report['elapsed_s']:.0f}s of {report['budget_s']:.0f}s"]
    for name, section in report["sections"].items():
        lines.append(f"[{name}] {section.get('status')}" + (f": {section['reason']}" if section.get("reason") else ""))
        for row in section.get("results", []):
            if "per_face_p50_ms" in row and row.get("per_call", {}).get("n"):
                lines.append(f"  {row['model']:<9} {row.get('precision', ''):<5} b{row['batch']:<3} "
                             f"{scope_tag(row):<5} per face p50 {row['per_face_p50_ms']:.3f} ms  "
                             f"call p99 {row['per_call']['p99_ms']:.2f} ms")
            elif "buffer" in row:
                gbs = {k: row[k].get("GB_per_s_at_p50") for k in row if k.endswith(("h2d", "d2h"))}
                lines.append(f"  {row['buffer']}: " + ", ".join(f"{k} {v:.1f} GB/s" for k, v in gbs.items() if v))
    for key, check in report["sections"].get("reference", {}).items():
        if key.endswith("_fp16_vs_fp32"):
            lines.append(f"  {key}: rel L2 {check['rel_l2']}, finite {check['finite']}")
    for key, timing in report["sections"].get("graphs", {}).items():
        if key.endswith(("_eager", "_graph")) and timing.get("n"):
            lines.append(f"  {key}: {timing['per_call_ms_p50'] * 1e3:.1f} us per call (p50)")
    ov = report["sections"].get("overlap", {})
    if "copy_compute_overlap_percent" in ov:
        lines.append(f"  copy/compute overlap {ov['copy_compute_overlap_percent']:.0f}%, "
                     f"duplex overlap {ov['duplex_overlap_percent']:.0f}%")
    return lines


def run_section(report, name, label, fn, budget, min_left_s, out_dir, needs=None) -> None:
    """Run one section unless a precondition fails or too little budget is left; record status either way
    and rewrite the JSON so a run cut short still returns what it had."""
    section = {"label": label}
    if needs:
        section.update(status="skipped", reason=needs)
    elif budget.left() < min_left_s:
        section.update(status="skipped", reason=f"budget: {budget.left():.0f}s left, section needs {min_left_s}s")
    else:
        print(f"device_bench: [{name}] starting, {budget.left():.0f}s of budget left", flush=True)
        t0 = time.monotonic()
        try:
            section.update(fn())
            section["status"] = "partial (budget spent)" if budget.expired() else "ok"
        except Exception as err:               # one broken section must not cost the others
            section.update(status="error", reason=f"{type(err).__name__}: {err}".splitlines()[0][:300],
                           traceback=traceback.format_exc()[-2000:])
        section["seconds"] = round(time.monotonic() - t0, 2)
    report["sections"][name] = section
    report["elapsed_s"] = budget.elapsed()
    write_report(report, out_dir)
    print(f"device_bench: [{name}] {section['status']}" + (f": {section['reason']}" if "reason" in section else ""),
          flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for device_bench.json and .png")
    parser.add_argument("--budget-s", type=float, default=300.0, help="hard wall-clock budget for all sections")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes; CPU-only sections where no CUDA")
    args = parser.parse_args(argv)
    budget = Budget(args.budget_s)
    args.out.mkdir(parents=True, exist_ok=True)
    shim = install_import_shim()
    import torch

    cuda = torch.cuda.is_available()
    smoke = args.cpu_smoke or not cuda
    report = {"schema": SCHEMA, "mode": "device" if not smoke else "cpu-smoke", "budget_s": budget.seconds,
              "elapsed_s": 0.0, "import_shim": shim, "machine": machine_info(torch), "sections": {}}
    gpu = report["machine"].get("gpu", "no GPU")
    no_cuda = None if cuda else f"no CUDA device ({report['machine']['ghostrt_probe_gpu']['how']})"
    write_report(report, args.out)

    run_section(report, "reference", (LABEL_REFERENCE.format(gpu=gpu) if cuda else LABEL_REFERENCE_CPU),
                lambda: section_reference(torch, budget, cuda, smoke), budget, 5, args.out)
    plumbing = LABEL_PLUMBING.format(gpu=gpu)
    run_section(report, "copies", plumbing, lambda: section_copies(torch, budget, smoke), budget, 10, args.out, no_cuda)
    run_section(report, "overlap", plumbing, lambda: section_overlap(torch, budget, smoke), budget, 10, args.out,
                no_cuda)
    run_section(report, "graphs", LABEL_GRAPH.format(gpu=gpu), lambda: section_graphs(torch, budget, smoke), budget,
                15, args.out, no_cuda)
    try:
        import onnxruntime
        providers = list(onnxruntime.get_available_providers())
    except Exception:                          # ImportError, or a broken provider library
        providers = None
    go, why = ort_cuda_decision(cuda, providers)
    with tempfile.TemporaryDirectory(prefix="ghostrt-ort-") as tmp:
        run_section(report, "ort_cuda", LABEL_ORT.format(gpu=gpu), lambda: section_ort(torch, budget, Path(tmp)),
                    budget, 60, args.out, None if go else why)

    report["machine"]["nvidia_smi_after"] = nvidia_smi_snapshot()
    report["loaded_from"] = {name: getattr(module, "__file__", None) for name, module in sorted(sys.modules.items())
                             if name == "ghostrt" or name.startswith("ghostrt.")}
    report["elapsed_s"] = budget.elapsed()
    try:
        report["chart"] = write_chart(report, args.out)
    except Exception as err:                   # the numbers matter more than the picture
        report["chart"] = f"error: {type(err).__name__}: {err}"
    report["summary"] = summary_lines(report)
    write_report(report, args.out)
    print("\n".join(report["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
