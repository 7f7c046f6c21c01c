"""The PyTorch nets must load the released GHOST checkpoints strictly: same keys, order, shapes and dtypes as
the key manifests in ../shared/ghost/. Parameter and MAC counts from MODELS.md are an independent check.
Everything here runs on the meta device: shapes only, no memory, no compute."""

from pathlib import Path

import pytest
import torch
from torch import nn

from ghostrt.errors import GhostError
from ghostrt.export.aei_net import AEINet, infer_num_blocks
from ghostrt.export.checkpoints import read_keys_manifest, state_dict_rows
from ghostrt.export.iresnet import IResNet100

REPO = Path(__file__).resolve().parents[2]
GHOST = REPO.parent / "shared" / "ghost"
needs_shared = pytest.mark.skipif(not GHOST.is_dir(), reason="../shared/ghost (key manifests) is absent")

GENERATOR_MANIFESTS = {1: "G_unet_1block.keys.tsv", 2: "G_unet_2blocks.keys.tsv", 3: "G_unet_3blocks.keys.tsv"}
# MODELS.md: parameters (millions) and GMAC per face.
GENERATOR_SIZE = {1: (128.5, 16.3), 2: (184.3, 31.0), 3: (240.2, 45.7)}
ARCFACE_SIZE = (65.2, 12.1)


def on_meta(build):
    with torch.device("meta"):
        return build()


def count_macs(module: nn.Module, *inputs) -> tuple[float, object]:
    """Multiply-accumulates of convs, transposed convs and linears, in GMAC per sample (hooks see sample 0)."""
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.ConvTranspose2d):
            per_input = mod.out_channels * mod.kernel_size[0] * mod.kernel_size[1]
            total[0] += inp[0][0].numel() * per_input
        elif isinstance(mod, nn.Conv2d):
            total[0] += out[0].numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, nn.Linear):
            total[0] += mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    with torch.no_grad():
        out = module(*inputs)
    for h in handles:
        h.remove()
    return total[0] / 1e9, out


def rows_differ(mine, theirs) -> str:
    for i, (a, b) in enumerate(zip(mine, theirs)):
        if a != b:
            return f"row {i}: model {a} vs manifest {b}"
    return f"lengths: model {len(mine)} vs manifest {len(theirs)}"


@needs_shared
@pytest.mark.parametrize("num_blocks", [1, 2, 3])
def test_generator_state_dict_equals_manifest(num_blocks):
    manifest = read_keys_manifest(GHOST / GENERATOR_MANIFESTS[num_blocks])
    mine = state_dict_rows(on_meta(lambda: AEINet(num_blocks)))
    assert mine == manifest, rows_differ(mine, manifest)


@needs_shared
def test_arcface_state_dict_equals_manifest():
    manifest = read_keys_manifest(GHOST / "iresnet100.keys.tsv")
    mine = state_dict_rows(on_meta(IResNet100))
    assert mine == manifest, rows_differ(mine, manifest)


@needs_shared
@pytest.mark.parametrize("num_blocks", [1, 2, 3])
def test_num_blocks_inferred_from_manifest_keys(num_blocks):
    state = {k: torch.empty(shape, device="meta")
             for k, shape, _ in read_keys_manifest(GHOST / GENERATOR_MANIFESTS[num_blocks])}
    assert infer_num_blocks(state, "G.pth") == num_blocks


def test_num_blocks_of_a_foreign_state_dict_is_an_error():
    with pytest.raises(GhostError, match="backbone.pth: not a GHOST generator"):
        infer_num_blocks({"conv1.weight": torch.empty(64, 3, 3, 3)}, "backbone.pth")


def test_manifest_reader_rejects_a_malformed_row(tmp_path):
    tsv = tmp_path / "bad.keys.tsv"
    tsv.write_text("a.weight\t(3, 4)\tfloat32\nb.weight\t3 4\tfloat32\n")
    with pytest.raises(GhostError, match="bad.keys.tsv: line 2"):
        read_keys_manifest(tsv)


@pytest.mark.parametrize("num_blocks", [1, 2, 3])
def test_generator_size_and_shapes_match_models_md(num_blocks):
    net = on_meta(lambda: AEINet(num_blocks))
    params_m, gmac = GENERATOR_SIZE[num_blocks]
    assert sum(p.numel() for p in net.parameters()) / 1e6 == pytest.approx(params_m, abs=0.05)
    with torch.device("meta"):
        macs, (y, attrs) = count_macs(net, torch.empty(2, 3, 256, 256), torch.empty(2, 512))
    assert macs == pytest.approx(gmac, abs=0.05)
    assert tuple(y.shape) == (2, 3, 256, 256)
    expected = [(1024, 2), (2048, 4), (1024, 8), (512, 16), (256, 32), (128, 64), (64, 128), (64, 256)]
    assert [(a.shape[1], a.shape[2]) for a in attrs] == expected


def test_arcface_size_and_shapes_match_models_md():
    net = on_meta(IResNet100)
    params_m, gmac = ARCFACE_SIZE
    assert sum(p.numel() for p in net.parameters()) / 1e6 == pytest.approx(params_m, abs=0.05)
    with torch.device("meta"):
        macs, emb = count_macs(net, torch.empty(2, 3, 112, 112))
    assert macs == pytest.approx(gmac, abs=0.05)
    assert tuple(emb.shape) == (2, 512)


def test_generator_rejects_unknown_depth():
    with pytest.raises(ValueError):
        AEINet(4)


# ---- forward semantics from MODELS.md, on tiny layers, against formulas written out here ------------------

def test_aad_layer_follows_the_formula():
    from ghostrt.export.aei_net import AADLayer

    torch.manual_seed(0)
    layer = AADLayer(c_x=4, c_attr=3, c_id=5).eval()
    for p in layer.parameters():
        torch.nn.init.normal_(p)
    x, attr, z = torch.randn(2, 4, 6, 6) * 3 + 1, torch.randn(2, 3, 6, 6), torch.randn(2, 5)
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    h = (x - mean) / torch.sqrt(var + 1e-5)

    def conv1x1(conv, t):
        return torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], t) + conv.bias[None, :, None, None]

    gamma_a, beta_a = conv1x1(layer.conv1, attr), conv1x1(layer.conv2, attr)
    gamma_i = (z @ layer.fc1.weight.T + layer.fc1.bias)[:, :, None, None]
    beta_i = (z @ layer.fc2.weight.T + layer.fc2.bias)[:, :, None, None]
    mask = torch.sigmoid(conv1x1(layer.conv_h, h))
    want = (1 - mask) * (gamma_a * h + beta_a) + mask * (gamma_i * h + beta_i)
    with torch.no_grad():
        got = layer(x, attr, z)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_ibasic_block_order():
    from torch.nn import functional as F

    from ghostrt.export.iresnet import IBasicBlock

    torch.manual_seed(0)
    block = IBasicBlock(3, 4, stride=2).eval()
    for name, t in block.state_dict().items():
        if t.is_floating_point():
            t.copy_(torch.rand_like(t) + 0.5 if "var" in name else torch.randn_like(t))
    x = torch.randn(1, 3, 8, 8)

    def bn(m, t):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, 1e-5)

    out = bn(block.bn1, x)
    out = F.conv2d(out, block.conv1.weight, padding=1)
    out = F.prelu(bn(block.bn2, out), block.prelu.weight)
    out = bn(block.bn3, F.conv2d(out, block.conv2.weight, stride=2, padding=1))
    short = bn(block.downsample[1], F.conv2d(x, block.downsample[0].weight, stride=2))
    with torch.no_grad():
        torch.testing.assert_close(block(x), out + short)


def test_upsampling_aligns_corners():
    """GHOST's ×2 is bilinear with align_corners=True: output column j samples input column j·(w−1)/(2w−1)."""
    import numpy as np

    from ghostrt.export.aei_net import upsample2x

    x = torch.randn(1, 2, 5, 7)
    y = upsample2x(x)
    assert tuple(y.shape) == (1, 2, 10, 14)
    w = x.shape[-1]
    src = np.arange(2 * w) * (w - 1) / (2 * w - 1)
    for c in range(2):
        want = np.interp(src, np.arange(w), x[0, c, 0].numpy())  # row 0 maps onto row 0
        np.testing.assert_allclose(y[0, c, 0].numpy(), want, rtol=1e-5, atol=1e-6)
