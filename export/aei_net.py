"""AEI-Net generator (GHOST, backbone "unet", c_id 512) in PyTorch, written from the facts in MODELS.md.

Module names and registration order are chosen so `state_dict()` matches the released checkpoints key for key
(`G_unet_{1block,2blocks,3blocks}.pth`); a test compares it with the key manifests in ../shared/ghost/.
"""

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ghostrt.errors import file_error
from ghostrt.export.checkpoints import (empty_module, fill_normal_, load_state_dict_file, load_strict,
                                        save_state_dict, standin_rng)
from ghostrt.export.onnx_io import export_module
from ghostrt.export.parity import ParityRow, check_parity, seeded, torch_reference

ID_CHANNELS = 512
LEAKY_SLOPE = 0.1
NORM_EPS = 1e-5

# (in, out) channels of the encoder's down path conv1..conv7 and up path deconv1..deconv6.
ENCODER_DOWN = [(3, 32), (32, 64), (64, 128), (128, 256), (256, 512), (512, 1024), (1024, 1024)]
ENCODER_UP = [(1024, 1024), (2048, 512), (1024, 256), (512, 128), (256, 64), (128, 32)]
# (cin, cout, c_attr) of AADBlk1..AADBlk8.
GENERATOR_BLOCKS = [(1024, 1024, 1024), (1024, 1024, 2048), (1024, 1024, 1024), (1024, 512, 512),
                    (512, 256, 256), (256, 128, 128), (128, 64, 64), (64, 3, 64)]


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """GHOST doubles feature maps with bilinear align_corners=True (not the default False)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)


def down_conv(cin: int, cout: int) -> nn.Sequential:
    """Keys `.0` (conv) and `.1` (BN), as in the checkpoint."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout, eps=NORM_EPS),
        nn.LeakyReLU(LEAKY_SLOPE),
    )


class UpConv(nn.Module):
    """Transposed conv ×2, BN, LeakyReLU, then concatenation with the encoder skip of the same size."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, kernel_size=4, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=NORM_EPS)
        self.lrelu = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.lrelu(self.bn(self.deconv(x))), skip), dim=1)


class AttributeEncoder(nn.Module):
    """U-Net that turns the target face into the 8 multi-level attributes the AAD blocks consume."""

    def __init__(self):
        super().__init__()
        for i, (cin, cout) in enumerate(ENCODER_DOWN, start=1):
            self.add_module(f"conv{i}", down_conv(cin, cout))
        for i, (cin, cout) in enumerate(ENCODER_UP, start=1):
            self.add_module(f"deconv{i}", UpConv(cin, cout))

    def forward(self, target: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        x = target
        for i in range(1, len(ENCODER_DOWN)):
            x = getattr(self, f"conv{i}")(x)
            feats.append(x)  # 32@128, 64@64, 128@32, 256@16, 512@8, 1024@4
        attrs = [self.conv7(x)]  # 1024@2
        for i, skip in enumerate(reversed(feats), start=1):
            attrs.append(getattr(self, f"deconv{i}")(attrs[-1], skip))
        attrs.append(upsample2x(attrs[-1]))  # attribute 8: 64@256
        return attrs


class AADLayer(nn.Module):
    """Adaptive attentional denormalisation: a learned mask blends attribute- and identity-driven modulation."""

    def __init__(self, c_x: int, c_attr: int, c_id: int = ID_CHANNELS):
        super().__init__()
        self.conv1 = nn.Conv2d(c_attr, c_x, kernel_size=1)  # gamma from the attribute
        self.conv2 = nn.Conv2d(c_attr, c_x, kernel_size=1)  # beta from the attribute
        self.fc1 = nn.Linear(c_id, c_x)  # gamma from the identity
        self.fc2 = nn.Linear(c_id, c_x)  # beta from the identity
        self.norm = nn.InstanceNorm2d(c_x, affine=False, eps=NORM_EPS)
        self.conv_h = nn.Conv2d(c_x, 1, kernel_size=1)

    def forward(self, x: torch.Tensor, attr: torch.Tensor, z_id: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        gamma_attr = self.conv1(attr)
        beta_attr = self.conv2(attr)
        gamma_id = self.fc1(z_id)[:, :, None, None]
        beta_id = self.fc2(z_id)[:, :, None, None]
        mask = torch.sigmoid(self.conv_h(h))
        from_attr = gamma_attr * h + beta_attr
        from_id = gamma_id * h + beta_id
        return (1 - mask) * from_attr + mask * from_id


def aad_relu_conv(num_blocks: int, cin: int, cout: int, c_attr: int) -> nn.ModuleList:
    """num_blocks × [AAD, ReLU, Conv3×3]; all convs keep cin except the last, which maps to cout."""
    layers = []
    for i in range(num_blocks):
        out = cout if i == num_blocks - 1 else cin
        layers += [AADLayer(cin, c_attr), nn.ReLU(), nn.Conv2d(cin, out, kernel_size=3, padding=1, bias=False)]
    return nn.ModuleList(layers)


def run_aad_stack(layers: nn.ModuleList, x: torch.Tensor, attr: torch.Tensor, z_id: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = layer(x, attr, z_id) if isinstance(layer, AADLayer) else layer(x)
    return x


class AADResBlock(nn.Module):
    """Residual block; the shortcut gets its own AAD-ReLU-conv only where the channel count changes."""

    def __init__(self, cin: int, cout: int, c_attr: int, num_blocks: int):
        super().__init__()
        self.add_blocks = aad_relu_conv(num_blocks, cin, cout, c_attr)
        self.last_add_block = aad_relu_conv(1, cin, cout, c_attr) if cin != cout else None

    def forward(self, x: torch.Tensor, attr: torch.Tensor, z_id: torch.Tensor) -> torch.Tensor:
        main = run_aad_stack(self.add_blocks, x, attr, z_id)
        shortcut = x if self.last_add_block is None else run_aad_stack(self.last_add_block, x, attr, z_id)
        return main + shortcut


class AADGenerator(nn.Module):
    def __init__(self, num_blocks: int):
        super().__init__()
        self.up1 = nn.ConvTranspose2d(ID_CHANNELS, 1024, kernel_size=2, stride=1, padding=0)
        for i, (cin, cout, c_attr) in enumerate(GENERATOR_BLOCKS, start=1):
            self.add_module(f"AADBlk{i}", AADResBlock(cin, cout, c_attr, num_blocks))

    def forward(self, attrs: list[torch.Tensor], z_id: torch.Tensor) -> torch.Tensor:
        x = self.up1(z_id[:, :, None, None])  # 1024@2
        last = len(GENERATOR_BLOCKS)
        for i in range(1, last):
            x = upsample2x(getattr(self, f"AADBlk{i}")(x, attrs[i - 1], z_id))
        return torch.tanh(getattr(self, f"AADBlk{last}")(x, attrs[last - 1], z_id))


class AEINet(nn.Module):
    """G(target B×3×256×256 in [-1,1], z_id B×512 raw ArcFace) -> (Y B×3×256×256 tanh, attributes)."""

    def __init__(self, num_blocks: int = 2):
        super().__init__()
        if num_blocks not in (1, 2, 3):
            raise ValueError(f"num_blocks must be 1, 2 or 3, got {num_blocks}")
        self.num_blocks = num_blocks
        self.encoder = AttributeEncoder()
        self.generator = AADGenerator(num_blocks)

    def forward(self, target: torch.Tensor, z_id: torch.Tensor):
        attrs = self.encoder(target)
        return self.generator(attrs, z_id), attrs


class SwapOnly(nn.Module):
    """What gets exported: only Y, with the ONNX input names' order (target, source_embedding)."""

    def __init__(self, net: AEINet):
        super().__init__()
        self.net = net

    def forward(self, target: torch.Tensor, source_embedding: torch.Tensor) -> torch.Tensor:
        return self.net(target, source_embedding)[0]


# ---------------------------------------------------------------------------------------------------------------
# Official checkpoints, stand-ins and the ONNX export.

GENERATOR_FILES = {1: "G_unet_1block.pth", 2: "G_unet_2blocks.pth", 3: "G_unet_3blocks.pth"}
LRELU_GAIN = math.sqrt(2.0 / (1.0 + LEAKY_SLOPE ** 2))
RELU_GAIN = math.sqrt(2.0)
STANDIN_OUT_SCALE = 0.25  # keeps the stand-in's pre-tanh output around ±0.5, so Y is not saturated


def infer_num_blocks(state: dict, path) -> int:
    """The residual depth is visible in the keys: `add_blocks.{3k+2}` is the k-th conv of AADBlk1."""
    convs = [k for k in state if k.startswith("generator.AADBlk1.add_blocks.") and k.endswith(".weight")
             and state[k].dim() == 4 and state[k].shape[-1] == 3]
    if len(convs) not in (1, 2, 3):
        raise file_error(path, f"not a GHOST generator checkpoint ({len(convs)} AADBlk1 residual convs found; "
                               f"expected 1, 2 or 3)")
    return len(convs)


def load_generator(path, num_blocks: int | None = None) -> AEINet:
    """A released (or stand-in) G_unet_*.pth, strictly matched, in eval mode; the depth comes from the keys
    unless given, and a given depth that the file contradicts is named as such."""
    state = load_state_dict_file(path)
    found = infer_num_blocks(state, path)
    if num_blocks is not None and num_blocks != found:
        raise file_error(path, f"holds a {found}-block generator, but {num_blocks} blocks were asked for")
    net = load_strict(empty_module(lambda: AEINet(found)), state, path)  # no random init: every tensor loads
    return net.eval()


def standin_generator(num_blocks: int, seed: int = 0) -> AEINet:
    """Untrained but numerically sane G: variance-preserving normal init from a seeded numpy stream, BN
    statistics at identity, the last convs scaled down. Every tensor is written, so the file is reproducible."""
    net = empty_module(lambda: AEINet(num_blocks))
    rng = standin_rng(seed, f"G_unet_{num_blocks}")
    for name, module in net.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data.fill_(1.0)
            module.running_var.fill_(1.0)
        elif name == "generator.up1":
            fill_normal_(module.weight, rng, 1.0 / math.sqrt(ID_CHANNELS))  # applied to a 1×1 map
        elif isinstance(module, nn.ConvTranspose2d):  # k4 s2: each output pixel sees 2×2 taps per channel
            fill_normal_(module.weight, rng, LRELU_GAIN / math.sqrt(module.in_channels * 4))
        elif name.startswith("encoder.") and isinstance(module, nn.Conv2d):
            fill_normal_(module.weight, rng, LRELU_GAIN / math.sqrt(module.in_channels * 16))
        elif isinstance(module, AADLayer):
            fill_normal_(module.conv1.weight, rng, 1.0 / math.sqrt(module.conv1.in_channels))
            fill_normal_(module.conv2.weight, rng, 1.0 / math.sqrt(module.conv2.in_channels))
            fill_normal_(module.fc1.weight, rng, 1.0 / math.sqrt(ID_CHANNELS))
            fill_normal_(module.fc2.weight, rng, 1.0 / math.sqrt(ID_CHANNELS))
            fill_normal_(module.conv_h.weight, rng, 1.0 / math.sqrt(module.conv_h.in_channels))
        elif isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
            scale = STANDIN_OUT_SCALE if module.out_channels == 3 else 1.0
            fill_normal_(module.weight, rng, scale * RELU_GAIN / math.sqrt(module.in_channels * 9))
    return net.eval()


def write_standin_generators(out_dir, seed: int = 0, blocks=(1, 2, 3)) -> list[Path]:
    """G_unet_{1block,2blocks,3blocks}.pth stand-ins, plain state_dicts like the released files."""
    written = []
    for num_blocks in blocks:
        net = standin_generator(num_blocks, seed)
        written.append(save_state_dict(net.state_dict(), Path(out_dir) / GENERATOR_FILES[num_blocks]))
        del net
    return written


def seeded_embeddings(batch: int, seed: int) -> np.ndarray:
    """Raw-ArcFace-like identities: random directions with norms 20–30, the range real faces give."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((batch, ID_CHANNELS))
    z *= rng.uniform(20.0, 30.0, size=(batch, 1)) / np.linalg.norm(z, axis=1, keepdims=True)
    return z.astype(np.float32)


def generator_inputs(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    return {"target": seeded((batch, 3, 256, 256), seed),
            "source_embedding": seeded_embeddings(batch, seed + 1)}


def export_generator(weights, num_blocks: int | None, out) -> ParityRow:
    """G_unet_*.pth → ONNX (target, source_embedding) → swapped, proven against PyTorch at batch 1 and 3."""
    net = load_generator(weights, num_blocks)
    swap = SwapOnly(net).eval()
    export_module(swap, generator_inputs(1), ["swapped"], out)
    return check_parity(f"G_{net.num_blocks}block", out, torch_reference(swap), generator_inputs)
