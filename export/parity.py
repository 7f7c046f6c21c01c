"""Every export proves itself: ONNX Runtime (CPU) against a reference on seeded inputs, batch 1 and batch > 1.

Relative error is measured against the reference output's scale (max |onnx - ref| / max |ref|), because
element-wise relative error is meaningless where an output crosses zero.
"""

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from ghostrt.errors import GhostError

Inputs = Mapping[str, np.ndarray]
Reference = Callable[[Inputs], Sequence[np.ndarray]]

RTOL = 1e-4


@dataclass
class ParityRow:
    model: str
    batches: tuple[int, ...]
    max_abs: float
    max_rel: float
    stacked_max_abs: float  # batch-N run against batch-1 runs stacked

    @property
    def ok(self) -> bool:
        return self.max_rel <= RTOL

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAIL"
        b = ",".join(map(str, self.batches))
        return f"{self.model:<12} batch {b:<6} max abs {self.max_abs:.3e}  max rel {self.max_rel:.3e}  " \
               f"batch-N vs stacked {self.stacked_max_abs:.3e}  {verdict}"


def ort_session(onnx_path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


def torch_reference(module) -> Reference:
    """Wrap an nn.Module (inputs in ONNX input order) as a numpy reference."""
    import torch

    def run(inputs: Inputs):
        with torch.inference_mode():
            out = module(*[torch.from_numpy(np.ascontiguousarray(v)) for v in inputs.values()])
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().numpy() for o in outs]

    return run


def check_parity(model: str, onnx_path, reference: Reference, make_inputs: Callable[[int], Inputs],
                 batches: Sequence[int] = (1, 3)) -> ParityRow:
    """Compare the ONNX file with `reference`; raise GhostError above RTOL, return the numbers either way."""
    sess = ort_session(onnx_path)
    names = [o.name for o in sess.get_outputs()]
    max_abs = max_rel = stacked = 0.0
    for batch in batches:
        inputs = make_inputs(batch)
        got = sess.run(names, dict(inputs))
        want = reference(inputs)
        if len(got) != len(want):
            raise GhostError(f"{onnx_path}: {len(got)} outputs, reference has {len(want)}")
        for g, w in zip(got, want):
            if g.shape != w.shape:
                raise GhostError(f"{onnx_path}: output shape {g.shape} != reference {w.shape}")
            err = float(np.max(np.abs(g.astype(np.float64) - w)))
            max_abs = max(max_abs, err)
            max_rel = max(max_rel, err / max(float(np.max(np.abs(w))), 1e-12))
        if batch > 1:
            singles = [sess.run(names, {k: v[i:i + 1] for k, v in inputs.items()}) for i in range(batch)]
            for j, g in enumerate(got):
                s = np.concatenate([one[j] for one in singles], axis=0)
                stacked = max(stacked, float(np.max(np.abs(g - s))))
    row = ParityRow(model, tuple(batches), max_abs, max_rel, stacked)
    if not row.ok:
        raise GhostError(f"{onnx_path}: parity failed, {row.line()}")
    return row


def seeded(shape, seed: int, low=-1.0, high=1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, size=shape).astype(np.float32)
