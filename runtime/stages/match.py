"""Which faces to swap, and with which identity.

With --target-face photos, each target picks its most similar face in the frame (cosine of L2-normalised
ArcFace embeddings) and keeps it only above the threshold — GHOST's rule, 0.15. As in GHOST, two targets may
pick the same face. Without targets, --faces decides: the largest face, or all of them.

Several source photos of one person are merged into one identity. The generator was trained on raw
(un-normalised) ArcFace embeddings, whose magnitude it sees, so the merge averages directions (each embedding
normalised, so no photo dominates by norm) and then restores the typical magnitude: the mean raw norm.
"""

from typing import NamedTuple, Sequence

import numpy as np

from ghostrt.errors import GhostError
from ghostrt.runtime.types import Face

DEFAULT_THRESHOLD = 0.15
FACE_RULES = ("largest", "all")
EPS = 1e-12


def check_similarity(similarity: float) -> None:
    """The --similarity check, for the CLI (before any file is read) and the API alike."""
    if not -1.0 <= float(similarity) <= 1.0:
        raise GhostError(f"--similarity {similarity}: a cosine similarity lies in [-1, 1]")


class Match(NamedTuple):
    """One accepted pairing: target `target_index` is face `face_index` of the frame, with this cosine."""

    target_index: int
    face_index: int
    cosine: float


def normalize(emb: np.ndarray) -> np.ndarray:
    """L2-normalise along the last axis (a zero vector stays zero)."""
    emb = np.asarray(emb, np.float32)
    norm = np.linalg.norm(emb, axis=-1, keepdims=True)
    return emb / np.maximum(norm, EPS)


def average_identity(embs: np.ndarray) -> np.ndarray:
    """[K, 512] raw embeddings -> [512] raw-magnitude identity (see module docstring)."""
    embs = np.asarray(embs, np.float64).reshape(-1, np.shape(embs)[-1])
    if len(embs) == 0:
        raise ValueError("average_identity needs at least one embedding")
    norms = np.linalg.norm(embs, axis=1)
    direction = (embs / np.maximum(norms, EPS)[:, None]).mean(axis=0)
    direction /= max(np.linalg.norm(direction), EPS)
    return (direction * norms.mean()).astype(np.float32)


def cosine_matrix(face_embs: np.ndarray, target_embs: np.ndarray) -> np.ndarray:
    """[F, T] cosine similarities."""
    return normalize(face_embs) @ normalize(target_embs).T


def match_faces(face_embs: np.ndarray, target_embs: np.ndarray, threshold: float = DEFAULT_THRESHOLD
                ) -> list[Match]:
    """Per target, its best face if the cosine is > threshold; in target order."""
    face_embs = np.asarray(face_embs).reshape(-1, np.shape(target_embs)[-1])
    target_embs = np.asarray(target_embs).reshape(-1, face_embs.shape[1])
    if len(face_embs) == 0 or len(target_embs) == 0:
        return []
    sims = cosine_matrix(face_embs, target_embs)
    matches = []
    for t in range(sims.shape[1]):
        f = int(np.argmax(sims[:, t]))
        if sims[f, t] > threshold:
            matches.append(Match(t, f, float(sims[f, t])))
    return matches


def select_faces(faces: Sequence[Face], rule: str = "largest") -> list[int]:
    """Indices of the faces to swap when no target face is given: `largest` (box area; the first on a tie)
    or `all` (in detection order). A single face is always taken."""
    if rule not in FACE_RULES:
        raise ValueError(f"unknown face rule {rule!r}; choose from {', '.join(FACE_RULES)}")
    if len(faces) == 0:
        return []
    if rule == "all":
        return list(range(len(faces)))
    areas = [f.area for f in faces]
    return [int(np.argmax(areas))]


def assign_to_targets(face_embs: np.ndarray, sources: np.ndarray, targets: np.ndarray,
                      threshold: float = DEFAULT_THRESHOLD) -> list[tuple[int, np.ndarray, int, float]]:
    """[(face index, identity, target index, cosine)] in target order.

    Two targets may pick the same face: the closer one keeps it. Source i goes to target i when there are as
    many sources as targets; otherwise the sources are averaged into one identity for every target."""
    best: dict[int, Match] = {}
    for m in match_faces(face_embs, targets, threshold):
        if m.face_index not in best or m.cosine > best[m.face_index].cosine:
            best[m.face_index] = m
    paired = len(sources) == len(targets)
    average = None if paired else average_identity(sources)
    return [(m.face_index, sources[m.target_index] if paired else average, m.target_index, m.cosine)
            for m in sorted(best.values(), key=lambda m: m.target_index)]
