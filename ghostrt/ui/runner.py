"""What the stream scheduler runs: live frames through one shared ghostrt.Swapper, each stream with its own
`sw.stream(...)` (its tracking state), and every frame sent back carrying a visible "AI-altered" mark.

Cross-stream batching: frames of streams that put in the same identity with the same rule go through one
`sw.swap_batch` call (one detector, generator and landmark call for all of them). Live streams run as the
webcam does (detect every frame, no smoothing lookahead), so for them that call gives what each stream's own
`process_batch([frame])` gives; a stream alone in its group goes through its own `sw.stream`.
"""

from dataclasses import dataclass, field

import cv2
import numpy as np

MARK_TEXT = "AI-altered - ghostrt"


def draw_mark(frame: np.ndarray, text: str = MARK_TEXT) -> np.ndarray:
    """The visible provenance mark, bottom left, white on a dark band (a copy; the input is not changed)."""
    out = np.ascontiguousarray(frame).copy()
    h, w = out.shape[:2]
    scale = max(0.35, min(w, h) / 600.0)
    thick = max(1, int(round(scale * 1.6)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(3, th // 3)
    y1 = h - 2
    y0 = max(0, y1 - th - base - 2 * pad)
    out[y0:y1, 0:min(w, tw + 2 * pad)] = (out[y0:y1, 0:min(w, tw + 2 * pad)] * 0.3).astype(np.uint8)
    cv2.putText(out, text, (pad, y1 - base - pad // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                cv2.LINE_AA)
    return out


@dataclass
class LiveConfig:
    """What one live session swaps: identities (one per target, or one for the --faces rule) and the rule."""

    who: object                       # ghostrt.Identity, or a list of them with targets
    targets: list | None = None
    faces: str = "largest"
    similarity: float = 0.15
    key: str = ""                     # sessions with equal keys put in the same identity the same way

    def group_key(self):
        return self.key or id(self.who)


@dataclass
class LiveState:
    config: LiveConfig
    stream: object
    stats: dict = field(default_factory=dict)


class SwapperRunner:
    """The scheduler's runner over a loaded Swapper (or anything offering stream() and swap_batch())."""

    def __init__(self, swapper, mark: bool = True):
        self.sw, self.mark = swapper, mark

    def open(self, config: LiveConfig) -> LiveState:
        stream = self.sw.stream(config.who, targets=config.targets, faces=config.faces,
                                similarity=config.similarity, batch=1, detect_every=1, smoothing=False)
        return LiveState(config, stream)

    def close(self, state: LiveState) -> None:
        if state is not None and state.stream is not None:
            state.stream.close()
            state.stream = None

    def run(self, items: list) -> list:
        outs: list = [None] * len(items)
        groups: dict = {}
        for i, (state, _) in enumerate(items):
            groups.setdefault(state.config.group_key(), []).append(i)
        for idxs in groups.values():
            if len(idxs) == 1:
                state, frame = items[idxs[0]]
                before = getattr(state.stream, "faces_swapped", None)
                got = state.stream.process_batch([frame])
                image = got[0] if got else frame
                after = getattr(state.stream, "faces_swapped", None)
                meta = {} if before is None or after is None else {"swapped": after - before}
                outs[idxs[0]] = (self._finish(image), meta)
                continue
            cfg = items[idxs[0]][0].config
            results = self.sw.swap_batch([items[i][1] for i in idxs], cfg.who, targets=cfg.targets,
                                         faces=cfg.faces, similarity=cfg.similarity)
            for i, res in zip(idxs, results):
                outs[i] = (self._finish(res.image), {"swapped": len(res.swapped)})
        return outs

    def _finish(self, image: np.ndarray) -> np.ndarray:
        return draw_mark(image) if self.mark else image
