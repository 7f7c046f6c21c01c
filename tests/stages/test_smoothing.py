"""Video keypoint smoothing: runs split at gaps and jumps, centred moving average with shrinking window."""

import numpy as np

from ghostrt.runtime.stages import smoothing


def kps_at(x: float, y: float) -> np.ndarray:
    base = np.array([[0, 0], [30, 0], [15, 20], [3, 35], [27, 35]], np.float64)
    return base + [x, y]


def test_constant_track_is_unchanged():
    track = [kps_at(100, 50)] * 7
    out = smoothing.smooth_tracks(track)
    assert len(out) == 7
    for k in out:
        np.testing.assert_allclose(k, kps_at(100, 50), atol=1e-5)


def test_window_shrinks_at_the_ends():
    rng = np.random.default_rng(0)
    track = [kps_at(100, 50) + rng.uniform(-1, 1, (5, 2)) for _ in range(6)]
    out = smoothing.smooth_tracks(track)
    np.testing.assert_allclose(out[0], track[0], atol=1e-5)                        # q = 0
    np.testing.assert_allclose(out[1], np.mean(track[0:3], axis=0), atol=1e-5)     # q = 1
    np.testing.assert_allclose(out[2], np.mean(track[0:5], axis=0), atol=1e-5)     # q = 2
    np.testing.assert_allclose(out[3], np.mean(track[1:6], axis=0), atol=1e-5)     # q = min(3, 2, 2)
    np.testing.assert_allclose(out[4], np.mean(track[3:6], axis=0), atol=1e-5)     # q = 1
    np.testing.assert_allclose(out[5], track[5], atol=1e-5)
    assert out[2].dtype == np.float32 and out[2].shape == (5, 2)


def test_missing_face_splits_the_run_and_stays_missing():
    track = [kps_at(0, 0), kps_at(1, 0), kps_at(2, 0), None, kps_at(2.5, 0), kps_at(3, 0), kps_at(4, 0)]
    assert smoothing.split_runs(track) == [[0, 1, 2], [3], [4, 5, 6]]
    out = smoothing.smooth_tracks(track)
    assert out[3] is None
    np.testing.assert_allclose(out[1], np.mean(track[0:3], axis=0), atol=1e-5)
    np.testing.assert_allclose(out[2], track[2], atol=1e-5)                        # run end: not mixed across
    np.testing.assert_allclose(out[4], track[4], atol=1e-5)
    np.testing.assert_allclose(out[5], np.mean(track[4:7], axis=0), atol=1e-5)


def test_jumps_of_eye_or_nose_split_but_other_points_do_not():
    a = kps_at(10, 10)
    eye_jump = a.copy()
    eye_jump[0] += [6, 0]
    nose_jump = eye_jump.copy()
    nose_jump[2] += [0, -6]
    mouth_jump = nose_jump.copy()
    mouth_jump[3] += [40, 0]                                 # points 1, 3, 4 are not watched
    exactly_five = mouth_jump.copy()
    exactly_five[:] += [3, 4]                                # distance 5: not > 5
    track = [a, eye_jump, nose_jump, mouth_jump, exactly_five]
    assert smoothing.split_runs(track) == [[0], [1], [2, 3, 4]]
    out = smoothing.smooth_tracks(track)
    np.testing.assert_allclose(out[0], a, atol=1e-5)
    np.testing.assert_allclose(out[1], eye_jump, atol=1e-5)
    np.testing.assert_allclose(out[3], np.mean(track[2:5], axis=0), atol=1e-5)


def test_empty_and_all_missing():
    assert smoothing.smooth_tracks([]) == []
    assert smoothing.smooth_tracks([None, None]) == [None, None]
