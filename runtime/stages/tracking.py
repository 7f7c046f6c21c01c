"""Track ids for faces across detections, so a video decides each face's target once per track and smooths
its keypoints along the track (a light tracker: box IoU, else keypoint distance)."""

import numpy as np

from ghostrt.runtime.types import Face

MIN_IOU = 0.3            # boxes overlapping this much in consecutive detections are the same face ...
MAX_KPS_DISTANCE = 0.5   # ... or keypoints within this many face sizes (mean over the five points)

def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(float(w), 0.0) * max(float(h), 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / float(union) if union > 0 else 0.0


def keypoint_distance(a: Face, b: Face) -> float:
    """Mean distance of the five keypoints, in units of a's face size (sqrt of its box area)."""
    size = max(np.sqrt(a.area), 1.0)
    return float(np.linalg.norm(np.asarray(a.kps) - np.asarray(b.kps), axis=1).mean()) / size


class FaceTracker:
    """Track ids for faces across detections: greedy pairing of the previous detection's faces with the new
    ones, closest keypoints first. A face not found again ends its track (a new id if it comes back)."""

    def __init__(self):
        self.faces: dict[int, Face] = {}    # live tracks: id -> face at its last detection, detection order
        self.next_id = 0

    def update(self, detected: list[Face]) -> tuple[dict[int, Face], list[int]]:
        """New detections -> ({track id: face} in detection order, ids of the tracks born here)."""
        old = list(self.faces.items())
        pairs = []
        for i, (_, prev) in enumerate(old):
            for j, face in enumerate(detected):
                dist = keypoint_distance(prev, face)
                if box_iou(prev.box, face.box) >= MIN_IOU or dist <= MAX_KPS_DISTANCE:
                    pairs.append((dist, i, j))
        taken_old, assigned = set(), {}
        for _, i, j in sorted(pairs):
            if i not in taken_old and j not in assigned:
                taken_old.add(i)
                assigned[j] = old[i][0]
        born = []
        for j in range(len(detected)):
            if j not in assigned:
                assigned[j] = self.next_id
                born.append(self.next_id)
                self.next_id += 1
        self.faces = {assigned[j]: face for j, face in enumerate(detected)}
        return dict(self.faces), born

    def carry(self) -> dict[int, Face]:
        """The faces of a frame that is not detected: every live track where it was last seen."""
        return dict(self.faces)
