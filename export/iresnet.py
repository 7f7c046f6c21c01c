"""ArcFace iresnet100 (the identity encoder GHOST uses, `backbone.pth`) in PyTorch, from the facts in MODELS.md.

Names and registration order follow the released checkpoint so it loads with a strict key match; a test
compares `state_dict()` with ../shared/ghost/iresnet100.keys.tsv.
"""

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ghostrt.export.checkpoints import (empty_module, fill_normal_, load_state_dict_file, load_strict,
                                        save_state_dict, standin_rng)
from ghostrt.export.onnx_io import export_module
from ghostrt.export.parity import ParityRow, check_parity, seeded, torch_reference

LAYERS = (3, 13, 30, 3)
WIDTHS = (64, 128, 256, 512)
EMBEDDING = 512
FINAL_SIZE = 7  # 112 px after four stride-2 stages
BN_EPS = 1e-5


class IBasicBlock(nn.Module):
    """Pre-activation-style block: BN → conv → BN → PReLU → conv(stride) → BN, plus the (downsampled) input."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=BN_EPS)
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(cout, eps=BN_EPS),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


def make_stage(cin: int, cout: int, blocks: int) -> nn.Sequential:
    """The first block of each stage halves the resolution (so it always carries a downsample)."""
    return nn.Sequential(IBasicBlock(cin, cout, stride=2), *[IBasicBlock(cout, cout, stride=1)
                                                            for _ in range(blocks - 1)])


class IResNet100(nn.Module):
    """face B×3×112×112 RGB in [-1,1] -> raw (un-normalised) B×512 embedding."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, WIDTHS[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(WIDTHS[0], eps=BN_EPS)
        self.prelu = nn.PReLU(WIDTHS[0])
        cin = WIDTHS[0]
        for i, (blocks, width) in enumerate(zip(LAYERS, WIDTHS), start=1):
            self.add_module(f"layer{i}", make_stage(cin, width, blocks))
            cin = width
        self.bn2 = nn.BatchNorm2d(WIDTHS[-1], eps=BN_EPS)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(WIDTHS[-1] * FINAL_SIZE * FINAL_SIZE, EMBEDDING)
        self.features = nn.BatchNorm1d(EMBEDDING, eps=BN_EPS)

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(face)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)
        return self.features(self.fc(self.dropout(x)))


# ---------------------------------------------------------------------------------------------------------------
# Official checkpoint, stand-in and the ONNX export.

ARCFACE_FILE = "backbone.pth"
PRELU_SLOPE = 0.25  # PyTorch's PReLU default, also what the stand-in uses
PRELU_GAIN = math.sqrt(2.0 / (1.0 + PRELU_SLOPE ** 2))
STANDIN_RESIDUAL_GAIN = 0.2  # bn3 weight: 49 residual additions then grow the variance only mildly


def load_arcface(path) -> IResNet100:
    """A released (or stand-in) backbone.pth, strictly matched, in eval mode."""
    state = load_state_dict_file(path)
    return load_strict(empty_module(IResNet100), state, path).eval()  # no random init: every tensor loads


def standin_arcface(seed: int = 0) -> IResNet100:
    """Untrained but numerically sane iresnet100: variance-preserving normal init from a seeded numpy stream,
    BN at identity except the residual-branch scale, so 100 layers neither explode nor vanish. With unit-scale
    features, a face-like input in [-1,1] lands near the raw ArcFace norm range (~20)."""
    net = empty_module(IResNet100)
    rng = standin_rng(seed, "iresnet100")
    for name, module in net.named_modules():
        if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
            module.weight.data.fill_(STANDIN_RESIDUAL_GAIN if name.endswith(".bn3") else 1.0)
            module.running_var.fill_(1.0)
        elif isinstance(module, nn.PReLU):
            module.weight.data.fill_(PRELU_SLOPE)
        elif isinstance(module, nn.Conv2d):
            gain = PRELU_GAIN if name.endswith(".conv2") else 1.0  # conv2 is the only conv after a PReLU
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            fill_normal_(module.weight, rng, gain / math.sqrt(fan_in))
        elif isinstance(module, nn.Linear):
            fill_normal_(module.weight, rng, 1.0 / math.sqrt(module.in_features))
    return net.eval()


def write_standin_arcface(out_dir, seed: int = 0) -> Path:
    """backbone.pth stand-in, a plain state_dict like the released file."""
    return save_state_dict(standin_arcface(seed).state_dict(), Path(out_dir) / ARCFACE_FILE)


def arcface_inputs(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    return {"face": seeded((batch, 3, 112, 112), seed)}


def export_arcface(weights, out) -> ParityRow:
    """backbone.pth → ONNX face → embedding (raw), proven against PyTorch at batch 1 and 3."""
    net = load_arcface(weights)
    export_module(net, arcface_inputs(1), ["embedding"], out)
    return check_parity("arcface", out, torch_reference(net), arcface_inputs)
