"""The 2d106det landmark net: its wrapper and the pre- and post-processing around it (106 points per face).

The net sees the 224 aligned crop shrunk by 4/7 to 128 px and centred on a black 192×192 canvas (32 px
margin), so points just outside the crop — the jaw of a turned head — still land inside its input. Its raw
output is in [-1, 1] of that canvas; decoding undoes both steps, giving points in 224-crop pixels, which is
where the mask is drawn. Pixel values go in raw (0–255 float): the graph normalises them itself.
"""

import cv2
import numpy as np

from ghostrt.runtime.backends.batching import BatchedNet

INPUT_SIZE = 192
NUM_POINTS = 106
# crop (224) -> net input (192). GHOST writes 0.57142857 (= 4/7 to eight digits); 4/7 makes DECODE_TO_CROP
# below its exact inverse.
CROP_TO_INPUT = np.array([[4.0 / 7.0, 0.0, 32.0], [0.0, 4.0 / 7.0, 32.0]], np.float64)
DECODE_TO_CROP = np.array([[1.75, 0.0, -56.0], [0.0, 1.75, -56.0]], np.float64)


def crops_to_landmark_input(crops224: np.ndarray) -> np.ndarray:
    """[N, 224, 224, 3] uint8 RGB -> [N, 3, 192, 192] float32 raw 0–255 (bilinear warp, border 0)."""
    crops224 = np.asarray(crops224)
    out = np.zeros((len(crops224), 3, INPUT_SIZE, INPUT_SIZE), np.float32)
    for i, crop in enumerate(crops224):
        warped = cv2.warpAffine(crop, CROP_TO_INPUT, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out[i] = warped.transpose(2, 0, 1)
    return out


def decode_landmarks(raw: np.ndarray) -> np.ndarray:
    """[N, 212] net output -> [N, 106, 2] float32 points in 224-crop pixels.

    (p + 1)·96 puts them in 192-input pixels; DECODE_TO_CROP (the inverse of CROP_TO_INPUT) maps them back."""
    raw = np.asarray(raw, np.float64)
    pts = (raw.reshape(len(raw), NUM_POINTS, 2) + 1.0) * (INPUT_SIZE // 2)
    crop = pts @ DECODE_TO_CROP[:, :2].T + DECODE_TO_CROP[:, 2]
    return crop.astype(np.float32)


INPUT, OUTPUT = "face", "landmarks"


class LandmarkNet(BatchedNet):
    """2d106det on one executor, any batch: split into chunks the engine accepts."""

    def points(self, crops224: np.ndarray) -> np.ndarray:
        """(N, 224, 224, 3) uint8 crops -> (N, 106, 2) float32 points in 224-crop pixels."""
        if len(crops224) == 0:
            return np.zeros((0, NUM_POINTS, 2), np.float32)
        raw = self.run({INPUT: crops_to_landmark_input(crops224)})[OUTPUT]
        return decode_landmarks(raw)
