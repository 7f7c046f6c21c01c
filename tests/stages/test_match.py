"""Matching target faces, averaging source identities, and the --faces rule."""

import numpy as np
import pytest

from ghostrt.runtime.stages import match
from ghostrt.runtime.types import Face


def unit(i: int, dim: int = 512) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    v[i] = 1.0
    return v


def face(x1, y1, x2, y2) -> Face:
    return Face(np.array([x1, y1, x2, y2], np.float32), 0.9, np.zeros((5, 2), np.float32))


def test_normalize():
    rng = np.random.default_rng(0)
    e = rng.normal(0, 5, (3, 512)).astype(np.float32)
    n = match.normalize(e)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(n * np.linalg.norm(e, axis=1, keepdims=True), e, rtol=1e-5, atol=1e-5)
    assert (match.normalize(np.zeros(512)) == 0).all()


def test_average_of_one_is_itself():
    rng = np.random.default_rng(1)
    e = rng.normal(0, 1, 512).astype(np.float32) * 20
    np.testing.assert_allclose(match.average_identity(e[None]), e, rtol=1e-5)


def test_average_direction_is_norm_independent_and_magnitude_is_the_mean_norm():
    embs = np.stack([2.0 * unit(0), 4.0 * unit(1)])
    avg = match.average_identity(embs)
    expected = 3.0 * (unit(0) + unit(1)) / np.sqrt(2.0)                # equal weight per photo, mean norm 3
    np.testing.assert_allclose(avg, expected, atol=1e-6)
    assert avg.shape == (512,) and avg.dtype == np.float32


def test_average_needs_an_embedding():
    with pytest.raises(ValueError):
        match.average_identity(np.zeros((0, 512)))


def test_each_target_gets_its_best_face():
    rng = np.random.default_rng(2)
    faces = rng.normal(0, 1, (4, 512)).astype(np.float32) * 10
    targets = np.stack([faces[2] + rng.normal(0, 3, 512), 0.5 * faces[0]]).astype(np.float32)
    matches = match.match_faces(faces, targets)
    assert [(m.target_index, m.face_index) for m in matches] == [(0, 2), (1, 0)]
    expected = float(faces[2] @ targets[0] / np.linalg.norm(faces[2]) / np.linalg.norm(targets[0]))
    assert matches[0].cosine == pytest.approx(expected, abs=1e-5)
    assert matches[1].cosine == pytest.approx(1.0, abs=1e-5)
    t, f, c = matches[0]                                               # plain (target, face, cosine) tuples
    assert (t, f) == (0, 2) and c == matches[0].cosine


def test_threshold_is_strict_and_rejects_strangers():
    faces = np.stack([unit(0), unit(1)])
    near = (0.2 * unit(1) + np.sqrt(1 - 0.04) * unit(6)).astype(np.float32)   # cosine 0.2 with face 1
    stranger = unit(7)                                                           # cosine 0 with both
    matches = match.match_faces(faces, np.stack([near, stranger]))
    assert [(m.target_index, m.face_index) for m in matches] == [(0, 1)]
    assert matches[0].cosine == pytest.approx(0.2, abs=1e-6)
    c = float(match.cosine_matrix(faces, near[None])[1, 0])
    assert match.match_faces(faces, near[None], threshold=c) == []             # equal is not above
    assert len(match.match_faces(faces, near[None], threshold=c - 1e-6)) == 1
    assert match.match_faces(faces, near[None], threshold=0.25) == []
    assert match.DEFAULT_THRESHOLD == 0.15


def test_two_targets_may_pick_the_same_face():
    faces = np.stack([unit(0), unit(1)])
    matches = match.match_faces(faces, np.stack([unit(0) + 0.1 * unit(2), unit(0) + 0.2 * unit(3)]))
    assert [(m.target_index, m.face_index) for m in matches] == [(0, 0), (1, 0)]


def test_no_faces_or_no_targets():
    assert match.match_faces(np.zeros((0, 512)), np.stack([unit(0)])) == []
    assert match.match_faces(np.stack([unit(0)]), np.zeros((0, 512))) == []


def test_face_rule_without_targets():
    faces = [face(0, 0, 10, 10), face(0, 0, 30, 20), face(5, 5, 20, 20)]
    assert match.select_faces(faces, "largest") == [1]
    assert match.select_faces(faces, "all") == [0, 1, 2]
    assert match.select_faces(faces[:1], "largest") == [0]              # one face, no target: take it
    assert match.select_faces([], "all") == []
    with pytest.raises(ValueError):
        match.select_faces(faces, "biggest")
