"""torch → ONNX with named I/O, a dynamic batch axis and opset 17 (GridSample/Resize behave under TRT's parser).

The TorchScript exporter (dynamo=False) is used on purpose: it emits native InstanceNormalization and
keeps the graph close to the module, which the FP16/INT8 tooling and TensorRT parse best.
"""

import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ghostrt.atomic import atomic_path

OPSET = 17


def export_module(module, example: Mapping[str, np.ndarray], output_names: Sequence[str], out_path,
                  batch_axis: bool = True) -> Path:
    """Export `module(*example.values())` to `out_path` atomically; axis 0 of every I/O is named N."""
    import torch

    module = module.eval()
    args = tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in example.values())
    axes = {name: {0: "N"} for name in [*example.keys(), *output_names]} if batch_axis else None
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp, warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(tmp), input_names=list(example.keys()),
                          output_names=list(output_names), dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False, do_constant_folding=True)
    return out_path
