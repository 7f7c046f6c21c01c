"""Calibration and validation inputs made from real face photos, run through the same detect → align path as
the runtime, so INT8 ranges and fidelity numbers come from the statistics the engines will really see.

Offline default: the public-domain face photos that ship inside packages (matplotlib's Grace Hopper, skimage's
astronaut and cameraman), plus horizontal flips, lighting jitter and multi-face grids for the detectors. A user
can pass a folder of images or a video instead. The .npz holds one array per (net, ONNX input), keyed
"<net>/<input name>", batch-first; a JSON beside it records sources, sha256s, transforms and counts (it is
also returned, for the engine manifest). The 640-px detector canvases are stored as float16: their values
(integers, or odd multiples of 1/256) are exact in float16, and it halves the file.
"""

import datetime
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ghostrt.atomic import atomic_path
from ghostrt.errors import GhostError, file_error
from ghostrt.runtime.stages import align
from ghostrt.runtime.nets import detect, landmarks, retinaface_model

# ONNX input names per net (the exporters' names) and what each array holds.
NET_INPUTS = {
    "arcface": ("face",),                          # N×3×112×112 RGB in [-1, 1]
    "generator": ("target", "source_embedding"),   # N×3×256×256 RGB in [-1, 1]; N×512 raw ArcFace embedding
    "detector": ("input.1",),                      # N×3×640×640 SCRFD letterbox, (x − 127.5) / 128
    "retinaface": ("input",),                      # N×3×640×640 RetinaFace letterbox, BGR − mean
    "landmarks": ("face",),                        # N×3×192×192 RGB 0–255
}
CALIBRATION_GAINS = (0.7, 1.3)       # lighting jitter for calibration; validation uses the untouched photos
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
VIDEO_FRAMES = 24

DEFAULT_OUT = Path("calibration/sets/default.npz")


@dataclass
class Photo:
    name: str
    origin: str
    sha256: str
    image: np.ndarray          # RGB uint8 H×W×3


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------- sources

def packaged_photos() -> list[Photo]:
    """The offline default: public-domain face photos shipped with matplotlib and scikit-image."""
    import matplotlib.cbook
    import skimage.data

    files = [("grace_hopper", Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))),
             ("astronaut", Path(skimage.data.__file__).parent / "astronaut.png"),
             ("camera", Path(skimage.data.__file__).parent / "camera.png")]
    photos = []
    for name, path in files:
        data = path.read_bytes()
        photos.append(Photo(name, f"{path.parent.parent.name}/{path.parent.name}/{path.name}", _sha256(data),
                            _decode(data, path)))
    return photos


def _decode(data: bytes, path) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise file_error(path, "not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def photos_from(path) -> list[Photo]:
    """A folder of images (sorted by name) or a video (VIDEO_FRAMES frames spread over its length)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise file_error(path, f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        return [Photo(p.stem, str(p), _sha256(p.read_bytes()), _decode(p.read_bytes(), p)) for p in files]
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return _video_frames(path)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return [Photo(path.stem, str(path), _sha256(path.read_bytes()), _decode(path.read_bytes(), path))]
    raise file_error(path, "not a folder of images, an image or a video")


def _video_frames(path: Path) -> list[Photo]:
    cap = cv2.VideoCapture(str(path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if not cap.isOpened() or total <= 0:
        raise file_error(path, "OpenCV cannot read frames from this video")
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    photos = []
    for index in np.linspace(0, total - 1, min(VIDEO_FRAMES, total)).astype(int):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = cap.read()
        if ok:
            photos.append(Photo(f"{path.stem}#{index}", str(path), digest.hexdigest(),
                                cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
    cap.release()
    return photos


# ------------------------------------------------------------------------------------------- detect → align

@lru_cache(maxsize=1)
def _retinaface():
    """The runtime's RetinaFace detector on ONNX Runtime, with the ONNX written once per process."""
    import tempfile

    from ghostrt.runtime.backends.executors import OrtExecutor

    folder = Path(tempfile.mkdtemp(prefix="ghostrt-calib-"))
    path = retinaface_model.write_retinaface_onnx(folder / "retinaface.onnx")
    return detect.make_detector("retinaface", OrtExecutor(path))


def find_faces(image: np.ndarray) -> list:
    """Faces (ghostrt.runtime.types.Face, frame pixels) — the one place that chooses the detector."""
    return _retinaface().detect([image])[0]


def align_crop(image: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """224 aligned crop exactly as the runtime makes it (GHOST's best-of-five templates)."""
    return align.align_crop(image, kps)[0]


def face_crops(image: np.ndarray) -> list[np.ndarray]:
    return [align_crop(image, face.kps) for face in find_faces(image)]


# ------------------------------------------------------------------------------------- per-net preprocessing

def arcface_face(crop: np.ndarray) -> np.ndarray:
    return align.crops_to_arcface(crop[None])[0]


def generator_target(crop: np.ndarray) -> np.ndarray:
    return align.crops_to_generator(crop[None])[0]


def landmarks_face(crop: np.ndarray) -> np.ndarray:
    return landmarks.crops_to_landmark_input(crop[None])[0]


def detector_canvas(frame: np.ndarray) -> np.ndarray:
    return detect.letterbox_image(frame)[0]


def scrfd_input(canvas: np.ndarray) -> np.ndarray:
    return ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)


def retinaface_input(canvas: np.ndarray) -> np.ndarray:
    return retinaface_model.normalise(canvas[None])[0]


def face_grid(photos: list[Photo], rows: int, seed: int, size: int = detect.SIZE) -> np.ndarray:
    """A rows×rows mosaic of face-centred squares cut from the photos (random photo, flip, zoom): many faces of
    several sizes in one detector canvas."""
    rng = np.random.default_rng(seed)
    cell = size // rows
    canvas = np.zeros((size, size, 3), np.uint8)
    boxes = [(p, f.box) for p in photos for f in find_faces(p.image)]
    if not boxes:
        raise GhostError("no face found in any calibration photo: cannot build a face grid")
    for r in range(rows):
        for c in range(rows):
            photo, box = boxes[rng.integers(len(boxes))]
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            half = max(box[2] - box[0], box[3] - box[1]) * rng.uniform(0.8, 1.4)
            m = np.array([[cell / (2 * half), 0, 0], [0, cell / (2 * half), 0]], np.float32)
            m[:, 2] = [cell / 2 - cx * m[0, 0], cell / 2 - cy * m[1, 1]]
            tile = cv2.warpAffine(photo.image, m, (cell, cell), flags=cv2.INTER_AREA, borderValue=0)
            if rng.random() < 0.5:
                tile = tile[:, ::-1]
            canvas[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = tile
    return canvas


# ------------------------------------------------------------------------------------------- sample sets

def _gain(image: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def calibration_frames(photos: list[Photo]) -> list[tuple[str, np.ndarray]]:
    """(tag, frame) pairs: each photo and its mirror under each lighting gain, plus 3×3 and 4×4 face grids."""
    frames = []
    for p in photos:
        for flip in (False, True):
            for gain in CALIBRATION_GAINS:
                img = p.image[:, ::-1] if flip else p.image
                frames.append((f"{p.name}{' flip' if flip else ''} gain {gain}", _gain(img, gain)))
    frames.append(("grid 3x3 seed 0", face_grid(photos, 3, seed=0)))
    frames.append(("grid 4x4 seed 0 gain 0.8", _gain(face_grid(photos, 4, seed=0), 0.8)))
    return frames


def validation_frames(photos: list[Photo]) -> list[tuple[str, np.ndarray]]:
    """Distinct from the calibration frames (no gain, other grid seeds), same people: only 3 photos ship."""
    frames = [(p.name, p.image) for p in photos]
    frames.append(("grid 3x3 seed 1", face_grid(photos, 3, seed=1)))
    frames.append(("grid 4x4 seed 2", face_grid(photos, 4, seed=2)))
    return frames


def net_arrays(frames: list[tuple[str, np.ndarray]], embed=None) -> tuple[dict[str, np.ndarray], dict]:
    """Every net's inputs for these frames, keyed "<net>/<input>"; `embed(faces112) -> N×512` gives the
    generator's source embeddings (each target gets another face's identity); without it they are random
    vectors of typical raw-embedding norm, and the notes say so."""
    crops = [crop for _, frame in frames for crop in face_crops(frame)]
    if not crops:
        raise GhostError("no face found in any input image: nothing to calibrate on")
    canvases = [detector_canvas(frame) for _, frame in frames]
    faces112 = np.stack([arcface_face(c) for c in crops])
    if embed is not None:
        embeddings = np.asarray(embed(faces112), np.float32)
        embedding_note = "ArcFace FP32 ONNX of another crop (rolled by one)"
    else:
        rng = np.random.default_rng(0)
        embeddings = rng.standard_normal((len(crops), 512)).astype(np.float32)
        embeddings *= 20.0 / np.linalg.norm(embeddings, axis=1, keepdims=True)
        embedding_note = "synthetic: random directions of norm 20 (no ArcFace ONNX given)"
    arrays = {
        "arcface/face": faces112,
        "generator/target": np.stack([generator_target(c) for c in crops]),
        "generator/source_embedding": np.roll(embeddings, 1, axis=0),
        "detector/input.1": np.stack([scrfd_input(c) for c in canvases]),
        "retinaface/input": np.stack([retinaface_input(c) for c in canvases]),
        "landmarks/face": np.stack([landmarks_face(c) for c in crops]),
    }
    return arrays, {"face_crops": len(crops), "detector_frames": len(canvases),
                    "source_embedding": embedding_note}


@lru_cache(maxsize=2)
def validation_inputs(net: str) -> dict[str, np.ndarray]:
    """The fixed real-photo inputs the fidelity check runs (packaged photos, validation transforms)."""
    arrays, _ = net_arrays(validation_frames(packaged_photos()))
    return inputs_for(arrays, net)


@lru_cache(maxsize=1)
def validation_photos() -> tuple[tuple[str, np.ndarray], ...]:
    return tuple(validation_frames(packaged_photos()))


def inputs_for(arrays, net: str) -> dict[str, np.ndarray]:
    """The net's arrays keyed by ONNX input name (a net not in NET_INPUTS: every "<net>/..." key)."""
    if net not in NET_INPUTS:
        names = [k.split("/", 1)[1] for k in arrays if k.startswith(f"{net}/")]
        if not names:
            raise GhostError(f"no arrays for net {net!r} (known nets: {', '.join(NET_INPUTS)})")
        return {name: np.asarray(arrays[f"{net}/{name}"], np.float32) for name in names}
    missing = [f"{net}/{name}" for name in NET_INPUTS[net] if f"{net}/{name}" not in arrays]
    if missing:
        raise GhostError(f"calibration set has no {', '.join(missing)}")
    return {name: np.asarray(arrays[f"{net}/{name}"], np.float32) for name in NET_INPUTS[net]}


# ------------------------------------------------------------------------------------------- the set on disk

def provenance_path(npz_path) -> Path:
    return Path(npz_path).with_suffix(".json")


def build_calibration_set(out, source=None, embed=None) -> dict:
    """Write the .npz (+ provenance .json) at `out` from `source` (folder / video / image, default: packaged
    photos); return the provenance."""
    out = Path(out)
    photos = photos_from(source) if source is not None else packaged_photos()
    frames = calibration_frames(photos)
    arrays, counts = net_arrays(frames, embed)
    stored = {k: (v.astype(np.float16) if k in ("detector/input.1", "retinaface/input") else v)
              for k, v in arrays.items()}
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **stored)
    provenance = {
        "file": out.name,
        "sha256": _sha256(out.read_bytes()),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "sources": [{"name": p.name, "origin": p.origin, "sha256": p.sha256,
                     "shape": list(p.image.shape)} for p in photos],
        "frames": [tag for tag, _ in frames],
        "transforms": ["horizontal flip", f"lighting gain {CALIBRATION_GAINS}",
                       "3x3 and 4x4 grids of face-centred squares (zoom 0.8-1.4, random flip)"],
        "pipeline": "RetinaFace (ghostrt.runtime.nets.detect, threshold 0.6) -> ghostrt.runtime.stages.align (GHOST's "
                    "best-of-five templates, 224) -> the runtime's per-net preprocessing",
        "count": counts,
        "arrays": {k: {"shape": list(v.shape), "stored_dtype": str(stored[k].dtype)} for k, v in arrays.items()},
    }
    with atomic_path(provenance_path(out)) as tmp:
        tmp.write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def load_calibration(npz_path, net: str) -> dict[str, np.ndarray]:
    """float32 arrays keyed by the net's ONNX input names, ready for ModelOpt's `calibration_data`."""
    npz_path = Path(npz_path)
    if not npz_path.is_file():
        raise file_error(npz_path, "calibration set does not exist (run `ghostrt calibrate`)")
    with np.load(npz_path) as data:
        try:
            return inputs_for(data, net)
        except GhostError as err:
            raise file_error(npz_path, str(err)) from None


def arcface_embedder(weights_dir=None, onnx_dir=None):
    """embed(faces N×3×112×112) -> raw N×512 embeddings from the FP32 ArcFace ONNX (exported if needed)."""
    from ghostrt.export.fidelity import run_onnx
    from ghostrt.export.models import DEFAULT_ONNX_DIR, ensure_onnx

    path = ensure_onnx("arcface", weights_dir=weights_dir, onnx_dir=onnx_dir or DEFAULT_ONNX_DIR)

    def embed(faces):
        return next(iter(run_onnx(path, {"face": faces}).values()))

    return embed


def build(out, images=None, weights_dir=None, embed: bool = True) -> dict:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return build_calibration_set(out, images, arcface_embedder(weights_dir) if embed else None)
