"""A GHOST-style reference pipeline: the anchor `ghostrt bench` measures ghostrt against.

Written from the facts in ../shared/ghost/MODELS.md (no GHOST code), it does per face what the GHOST reference
does, the way GHOST does it, on the same weight files and the same frames as ghostrt:

- SCRFD on ONNX Runtime, one frame at a time (GHOST reaches the official batch-1 file through insightface);
  with stand-in weights both pipelines use the RetinaFace ONNX instead, likewise one frame at a time here.
- alignment per face: a least-squares similarity per pose template (skimage), cv2.warpAffine to 224;
- PyTorch eager nets: ArcFace in fp32, G fully in fp16 on a GPU (as GHOST runs it) and fp32 on a CPU, G batched
  over the frames' faces in chunks of GHOST's video batch size (40);
- the landmark net one crop at a time (GHOST's handler takes one image per call), swapped crop and target crop;
- the mask with cv2 per face, and paste-back that warps the swap and the mask to full-frame images and blends
  the whole frame in float64 (numpy's default, which GHOST gets from `mask / 255`), truncating to uint8.

Nothing is made slow on purpose: nets are loaded once, torch uses every core, inference runs under
torch.inference_mode, and GPU work is only synchronised where its results are read back.
"""

import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from ghostrt.runtime.stages.align import TEMPLATES_112
from ghostrt.runtime.types import Face

CROP = 224
GENERATOR_SIZE = 256
ARCFACE_SIZE = 112
VIDEO_BATCH = 40                 # GHOST's default --batch_size: G sees up to 40 face crops per call
MATCH_THRESHOLD = 0.15
# 224 crop -> 192 landmark input, written as GHOST writes it, and its decode back to crop pixels.
LANDMARK_INPUT = 192
LANDMARK_WARP = np.array([[0.5714286, 0.0, 32.0], [0.0, 0.5714286, 32.0]], np.float64)
LANDMARK_UNWARP = np.array([[1.75, 0.0, -56.0], [0.0, 1.75, -56.0]], np.float64)
BROWS = (((43, 48, 49, 51, 50), (35, 41, 40, 42, 39)), ((102, 103, 104, 105, 101), (89, 95, 94, 96, 93)))


class OrtSession:
    """The executor shape ghostrt's detectors expect, on a plain ONNX Runtime session (CUDA when GHOST would
    have it, i.e. when torch sees a GPU and onnxruntime-gpu offers the provider)."""

    def __init__(self, onnx_path, use_gpu: bool = False):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if use_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds):
        outputs = self.session.run(self.output_names, {n: np.asarray(feeds[n], np.float32) for n in self.input_names})
        return dict(zip(self.output_names, outputs))


@dataclass
class ReferenceNets:
    detector: object                 # .detect([frame]) -> [[Face]], called with one frame at a time
    arcface: torch.nn.Module         # [N,3,112,112] in [-1,1] -> [N,512] raw
    generator: torch.nn.Module       # G(target [N,3,256,256], z_id [N,512]) -> Y or (Y, attributes)
    landmarks: object                # torch module or OrtSession: [1,3,192,192] raw 0-255 -> [1,212]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    g_half: bool = False             # G (and its inputs) in fp16: GHOST's setting on a GPU


@dataclass
class ReferenceFace:
    face_index: int
    M: np.ndarray                    # 2×3 frame -> crop
    crop: np.ndarray                 # 224×224×3 uint8 target crop
    swapped: np.ndarray              # 224×224×3 uint8 generator output
    swapped_raw: np.ndarray          # 3×256×256 float32 tanh output
    mask: np.ndarray | None = None   # 224×224 float64 in [0, 1]


@dataclass
class ReferenceFrame:
    frame: np.ndarray                # output, RGB uint8
    faces: list[Face]
    swapped: list[ReferenceFace] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------- alignment

def estimate_norm(kps: np.ndarray, size: int = CROP) -> np.ndarray:
    """GHOST's pose choice, one template at a time: fit, map the keypoints, sum the point distances."""
    from skimage.transform import SimilarityTransform

    kps = np.asarray(kps, np.float64).reshape(5, 2)
    best, best_error = None, np.inf
    for template in TEMPLATES_112 * (size / 112.0):
        M = SimilarityTransform.from_estimate(kps, template).params[0:2, :]
        mapped = np.hstack([kps, np.ones((5, 1))]) @ M.T
        error = np.sum(np.sqrt(np.sum((mapped - template) ** 2, axis=1)))
        if error < best_error:
            best, best_error = M, error
    return best


def crop_face(frame: np.ndarray, kps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    M = estimate_norm(kps)
    return cv2.warpAffine(frame, M, (CROP, CROP), borderValue=0.0), M


# ------------------------------------------------------------------------------------------------------ mask

def mask_from_landmarks(swap_lms: np.ndarray, target_lms: np.ndarray) -> np.ndarray:
    """The GHOST mask of MODELS.md: jaw offset → (erode, σx, σy), eyebrows pushed up, hull, erode, border band,
    blur, /255."""
    left = np.sum(swap_lms[[1, 2, 13], 0] - target_lms[[1, 2, 13], 0])
    right = np.sum(target_lms[[17, 18, 29], 0] - swap_lms[[17, 18, 29], 0])
    offset = max(left, right)
    if offset > 6:
        erode, sigma_x, sigma_y, factor = 15, 15, 10, 2.7
    elif offset > 3:
        erode, sigma_x, sigma_y, factor = 10, 10, 8, 2.0
    elif offset < -3:
        erode, sigma_x, sigma_y, factor = -5, 5, 10, 0.5
    else:
        erode, sigma_x, sigma_y, factor = 5, 5, 5, 2.0
    points = swap_lms.astype(np.int32)
    for brow, eye in BROWS:
        top, bottom = points[list(brow)], points[list(eye)]
        points[list(brow)] = (top + factor * 0.5 * (top - bottom)).astype(np.int32)
    mask = np.zeros((CROP, CROP), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points), 255)
    if erode > 0:
        mask = cv2.erode(mask, np.ones((erode, erode), np.uint8), iterations=1)
    else:
        mask = cv2.dilate(mask, np.ones((5, 5), np.uint8), iterations=1)
    band = 2 * sigma_y
    mask[:band, :] = 0
    mask[-band:, :] = 0
    mask[:, :band] = 0
    mask[:, -band:] = 0
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma_x, sigmaY=sigma_y)
    return mask / 255


def paste_back_full_frame(frame: np.ndarray, swapped: np.ndarray, mask: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Inverse-warp the swap and the mask to the whole frame, blend the whole frame in float."""
    h, w = frame.shape[:2]
    inverse = cv2.invertAffineTransform(M)
    swap_full = cv2.warpAffine(swapped, inverse, (w, h), borderMode=cv2.BORDER_REPLICATE)
    mask_full = cv2.warpAffine(mask, inverse, (w, h), borderValue=0.0)[:, :, None]
    return mask_full * swap_full + (1 - mask_full) * frame


# -------------------------------------------------------------------------------------------------- pipeline

def _stage(timer, name):
    return timer.stage(name) if timer is not None else nullcontext()


class ReferencePipeline:
    """GHOST's per-face flow over a list of frames (one frame is GHOST's image mode)."""

    def __init__(self, nets: ReferenceNets, video_batch: int = VIDEO_BATCH):
        self.nets = nets
        self.video_batch = int(video_batch)

    # -------------------------------------------------------------------------------------------- nets

    def _unit_tensor(self, crops: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.nets.device)
        x = x.permute(0, 3, 1, 2).float() / 255.0
        return (x - 0.5) / 0.5

    @torch.inference_mode()
    def embed(self, crops: np.ndarray) -> np.ndarray:
        """[N,224,224,3] uint8 -> [N,512] raw ArcFace embeddings (crop halved on the device, align_corners)."""
        x = F.interpolate(self._unit_tensor(crops), size=(ARCFACE_SIZE, ARCFACE_SIZE), mode="bilinear",
                          align_corners=True)
        return self.nets.arcface(x).float().cpu().numpy()

    @torch.inference_mode()
    def generate(self, crops: np.ndarray, identities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Crops and their identities -> (uint8 224 swaps, float32 256 tanh outputs), in chunks of 40."""
        swaps, raws = [], []
        dtype = torch.float16 if self.nets.g_half else torch.float32
        for start in range(0, len(crops), self.video_batch):
            chunk = crops[start:start + self.video_batch]
            resized = np.stack([cv2.resize(c, (GENERATOR_SIZE, GENERATOR_SIZE)) for c in chunk])
            target = self._unit_tensor(resized).to(dtype)
            z_id = torch.from_numpy(identities[start:start + self.video_batch]).to(self.nets.device, dtype)
            y = self.nets.generator(target, z_id)
            y = (y[0] if isinstance(y, (tuple, list)) else y).float().cpu().numpy()
            for raw in y:
                u8 = ((raw.transpose(1, 2, 0) * 0.5 + 0.5) * 255).astype(np.uint8)   # GHOST truncates
                swaps.append(cv2.resize(u8, (CROP, CROP)))
                raws.append(raw)
        return np.stack(swaps), np.stack(raws)

    @torch.inference_mode()
    def landmarks(self, crop: np.ndarray) -> np.ndarray:
        """One 224 crop -> (106, 2) points in crop pixels."""
        warped = cv2.warpAffine(crop, LANDMARK_WARP, (LANDMARK_INPUT, LANDMARK_INPUT), borderValue=0.0)
        blob = warped.transpose(2, 0, 1)[None].astype(np.float32)
        net = self.nets.landmarks
        if isinstance(net, torch.nn.Module):
            raw = net(torch.from_numpy(blob).to(self.nets.device)).float().cpu().numpy()
        else:
            raw = net.run({net.input_names[0]: blob})[net.output_names[0]]
        points = (raw.reshape(106, 2).astype(np.float64) + 1) * (LANDMARK_INPUT // 2)
        return points @ LANDMARK_UNWARP[:, :2].T + LANDMARK_UNWARP[:, 2]

    # ------------------------------------------------------------------------------------------ frames

    def embed_photo(self, rgb: np.ndarray) -> np.ndarray:
        """Raw embedding of the largest face of a photo (GHOST's source and target-face photos)."""
        faces = self.nets.detector.detect([rgb])[0]
        if not faces:
            raise ValueError("no face in the photo")
        largest = max(faces, key=lambda f: f.area)
        crop, _ = crop_face(rgb, largest.kps)
        return self.embed(crop[None])[0]

    def _match(self, embeddings: np.ndarray, targets: np.ndarray) -> list[tuple[int, int]]:
        """[(target index, face index)]: per target its most similar face, if the cosine is over 0.15."""
        e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
        t = targets / np.linalg.norm(targets, axis=1, keepdims=True)
        sims = e @ t.T
        return [(k, int(np.argmax(sims[:, k]))) for k in range(len(targets))
                if sims[:, k].max() > MATCH_THRESHOLD]

    def swap_frames(self, frames: Sequence[np.ndarray], sources: np.ndarray, targets: np.ndarray,
                    timer=None) -> list[ReferenceFrame]:
        """Swap source k onto the face matching target k (one source: onto every target) in every frame."""
        sources = np.asarray(sources, np.float32).reshape(-1, 512)
        targets = np.asarray(targets, np.float32).reshape(-1, 512)
        results, picked = [], []                      # picked: (frame index, ReferenceFace stub, identity)
        for i, frame in enumerate(frames):
            with _stage(timer, "detect"):
                faces = self.nets.detector.detect([frame])[0]
            results.append(ReferenceFrame(frame=frame, faces=faces))
            if not faces:
                continue
            with _stage(timer, "align"):
                aligned = [crop_face(frame, f.kps) for f in faces]
            with _stage(timer, "embed"):
                embeddings = self.embed(np.stack([crop for crop, _ in aligned]))
            with _stage(timer, "match"):
                matches = self._match(embeddings, targets)
            for k, face_index in matches:
                crop, M = aligned[face_index]
                picked.append((i, face_index, crop, M, sources[k if len(sources) == len(targets) else 0]))
        if not picked:
            return results
        with _stage(timer, "swap"):
            swaps, raws = self.generate(np.stack([p[2] for p in picked]), np.stack([p[4] for p in picked]))
        faces_out = [ReferenceFace(p[1], p[3], p[2], swaps[j], raws[j]) for j, p in enumerate(picked)]
        with _stage(timer, "landmarks"):
            points = [(self.landmarks(f.swapped), self.landmarks(f.crop)) for f in faces_out]
        with _stage(timer, "mask"):
            for f, (swap_lms, target_lms) in zip(faces_out, points):
                f.mask = mask_from_landmarks(swap_lms, target_lms)
        with _stage(timer, "blend"):
            blended = {}
            for (i, *_), f in zip(picked, faces_out):
                base = blended.get(i, results[i].frame)
                blended[i] = paste_back_full_frame(base, f.swapped, f.mask, f.M)
                results[i].swapped.append(f)
            for i, image in blended.items():
                results[i].frame = image.astype(np.uint8)
        return results


    def swap_video_file(self, clip, output, sources: np.ndarray, targets: np.ndarray, timer=None) -> tuple[int, int]:
        """GHOST's video flow: read the whole clip into memory with cv2, swap, write it with cv2 (mp4v).
        (GHOST then re-encodes with ffmpeg to H.264 and re-muxes the audio; that pass is not timed here.)
        Returns (frames, faces swapped)."""
        with _stage(timer, "decode"):
            capture = cv2.VideoCapture(str(clip))
            fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
            frames = []
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            capture.release()
        results = self.swap_frames(frames, sources, targets, timer)
        with _stage(timer, "encode"):
            height, width = frames[0].shape[:2]
            writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            for result in results:
                writer.write(cv2.cvtColor(result.frame, cv2.COLOR_RGB2BGR))
            writer.release()
        return len(frames), sum(len(r.swapped) for r in results)


# ------------------------------------------------------------------------------------------------- loading

def reference_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_reference(weights, detector_kind: str, retinaface_onnx=None, device=None,
                   video_batch: int = VIDEO_BATCH) -> ReferencePipeline:
    """The reference on a ghostrt WeightSet (the same files ghostrt exported its ONNX from).

    SCRFD runs from the official batch-1 file itself; RetinaFace (stand-in detector weights) from the ONNX
    ghostrt uses. The landmark net runs as a torch module when it comes as the MXNet pair, else on ONNX Runtime."""
    from ghostrt.export.aei_net import load_generator
    from ghostrt.export.iresnet import load_arcface
    from ghostrt.export.landmark106 import load_landmarks
    from ghostrt.runtime.nets.detect import make_detector

    device = torch.device(device) if device is not None else reference_device()
    on_gpu = device.type == "cuda"
    torch.set_num_threads(os.cpu_count() or 1)
    generator = load_generator(weights.path("generator"), weights.num_blocks).to(device)
    if on_gpu:
        generator = generator.half()
    arcface = load_arcface(weights.path("arcface")).to(device)
    loaded = load_landmarks(weights.path("landmarks"))
    landmarks = loaded.module.to(device) if loaded.module is not None else OrtSession(loaded.onnx_path, on_gpu)
    if detector_kind == "scrfd":
        detector_file = weights.path("detector")
    elif retinaface_onnx is not None:
        detector_file = retinaface_onnx
    else:
        raise ValueError("the RetinaFace reference detector needs the RetinaFace ONNX path")
    detector = make_detector(detector_kind, OrtSession(detector_file, on_gpu), max_batch=1)
    nets = ReferenceNets(detector=detector, arcface=arcface, generator=generator, landmarks=landmarks,
                         device=device, g_half=on_gpu)
    return ReferencePipeline(nets, video_batch)
