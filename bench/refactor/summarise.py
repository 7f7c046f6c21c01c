"""Summary of bench/refactor/run.sh: per-mode ms per face of the pre-move and moved trees over the alternated
runs (median and range, so a difference can be read against the spread), and whether both trees wrote the
same pixels. Kept beside its script: it only reads the bench JSONs that run wrote."""

import json
import shutil
import statistics
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image


def clip(path: str) -> None:
    """A 10-frame H.264 clip of the astronaut moving sideways: the video half of the pixel check."""
    from skimage import data

    img = data.astronaut()
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = img.shape[1], img.shape[0], "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(img, 3 * i, axis=1)), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def _frames(path: Path) -> list[np.ndarray]:
    if path.suffix == ".png":
        return [np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)]
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)]


def _same_pixels(out: Path) -> dict:
    checks = {}
    for name in ("ort.png", "openvino.png", "ort.mp4"):
        old, new = _frames(out / f"old-{name}"), _frames(out / f"new-{name}")
        diff = max(int(np.abs(a - b).max()) for a, b in zip(old, new)) if len(old) == len(new) else None
        checks[name] = {"frames": [len(old), len(new)], "max_abs_diff": diff}
    return checks


def _per_face(run_dir: Path) -> tuple[dict, dict]:
    data = json.loads(next(run_dir.glob("*.json")).read_text())
    return data, {f"{r['mode']} batch {r['batch']}": r["per_face_ms"] for r in data["runs"]}


def summary(out: str, dest: str) -> None:
    out, dest = Path(out), Path(dest)
    sides: dict[str, list[dict]] = {"before": [], "after": []}
    last: dict[str, tuple[Path, dict]] = {}
    for side in sides:
        for run_dir in sorted(out.glob(f"{side}[0-9]*")):
            data, per_face = _per_face(run_dir)
            sides[side].append(per_face)
            last[side] = (next(run_dir.glob("*.json")), data)
    modes = list(sides["before"][0])
    table = {}
    for mode in modes:
        before = [r[mode] for r in sides["before"]]
        after = [r[mode] for r in sides["after"]]
        table[mode] = {"before_ms": before, "after_ms": after,
                       "before_median": statistics.median(before), "after_median": statistics.median(after),
                       "after_over_before": statistics.median(after) / statistics.median(before),
                       "ranges_overlap": min(after) <= max(before) and min(before) <= max(after)}
    machine = last["after"][1]["machine"]
    result = {"tool": "bench/refactor/run.sh", "before": "6a24f3c (pre-move)", "machine": machine,
              "command": "ghostrt bench --skip-reference --no-floor --frames 8 --batch 1,4 --backend openvino "
                         "--precision fp32, alternated before/after", "per_face_ms": table,
              "same_pixels": _same_pixels(out)}
    (dest / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    for side, (path, _) in last.items():
        shutil.copy(path, dest / f"{side}-move-{path.name}")
    print(f"{'mode':<16}{'before ms/face':>22}{'after ms/face':>22}{'after/before':>14}")
    for mode, row in table.items():
        span = lambda v: f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})"  # noqa: E731
        print(f"{mode:<16}{span(row['before_ms']):>22}{span(row['after_ms']):>22}{row['after_over_before']:>14.2f}")
    print("same pixels:", json.dumps(result["same_pixels"]))
    print(f"wrote {dest / 'summary.json'}")


if __name__ == "__main__":
    {"clip": clip, "summary": summary}[sys.argv[1]](*sys.argv[2:])
