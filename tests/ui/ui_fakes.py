"""A stand-in for ghostrt.Swapper with its API and no nets, for the UI tests that check the page's mechanics
(uploads, messages, live sessions) fast; the real Swapper is used where results must match the CLI."""

import time
from types import SimpleNamespace

import numpy as np

from ghostrt.errors import GhostError
from ghostrt.runtime.io.provenance_label import make_label
from ghostrt.runtime.types import Face


class FakeResult:
    def __init__(self, image, faces, swapped):
        self.image, self.faces, self.swapped, self.warnings, self.timings = image, faces, swapped, [], {"swap": 0.0}
        self.frame = image


class FakeSwapper:
    """Any image brighter than 20 on average has one 'face' in its centre; swapping inverts it."""

    standin_models = ["generator", "arcface", "landmarks"]

    def __init__(self, cost=0.01):
        self.cost = cost

    def describe(self):
        return {m: {"backend": "fake", "precision": "fp32", "reason": "test double", "max_batch": None}
                for m in ("detector", "arcface", "generator", "landmarks")}

    def detect(self, frame):
        h, w = frame.shape[:2]
        if frame.mean() < 20:
            return []
        box = np.array([w * 0.3, h * 0.3, w * 0.7, h * 0.7], np.float32)
        kps = np.array([[w * .4, h * .4], [w * .6, h * .4], [w * .5, h * .5], [w * .42, h * .6], [w * .58, h * .6]],
                       np.float32)
        return [Face(box=box, score=0.99, kps=kps)]

    def identity(self, photos):
        for p in photos:
            if not self.detect(np.asarray(p)):
                raise GhostError("source photo: no face found")
        return ("identity", len(photos))

    def swap(self, frame, who, faces="largest", targets=None, similarity=0.15):
        time.sleep(self.cost)
        found = self.detect(frame)
        out = frame.copy()
        swapped = []
        for f in found:
            x0, y0, x1, y1 = (int(v) for v in f.box)
            out[y0:y1, x0:x1] = 255 - out[y0:y1, x0:x1]
            tile = np.zeros((32, 32, 3), np.uint8)
            swapped.append(SimpleNamespace(face=f, target_index=None, similarity=None, crop=tile, swapped=tile,
                                           mask=tile[..., 0]))
        return FakeResult(out, found, swapped)

    def swap_batch(self, frames, who, **kw):
        return [self.swap(f, who) for f in frames]

    def stream(self, who, **kw):
        return FakeStream(self, who)

    def provenance(self, output=None, target=None, **kw):
        return None                                   # no signing or watermark: the fake's output is checked raw

    def swap_image(self, target, output, who, targets=None, faces="largest", debug_sheet=None, **kw):
        """The real one's file contract (read, swap, labelled write, sheet beside it), without provenance."""
        from ghostrt.runtime.io import image_io

        rgb, alpha, info = image_io.read_image(target)
        res = self.swap(rgb, who, faces=faces, targets=targets)
        label = self.label(len(res.swapped))
        image_io.write_image(output, res.image, alpha, label, info.icc_profile)
        if debug_sheet is not None:
            from ghostrt.runtime.io.debug_sheet import write_debug_sheet

            write_debug_sheet(debug_sheet, rgb, res, {}, standin_models=self.standin_models, title="fake",
                              label=label)
        return SimpleNamespace(result=res, info=info, notes=[], label=label)

    def label(self, swapped, operation="image face swap"):
        return make_label(swapped, True, operation=operation)

    def close(self):
        pass


class FakeStream:
    def __init__(self, sw, who):
        self.sw, self.who = sw, who

    def process_batch(self, frames):
        return [self.sw.swap(f, self.who).image for f in frames]

    def flush(self):
        return []

    def close(self):
        pass
