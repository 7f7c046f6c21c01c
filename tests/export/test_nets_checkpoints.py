"""Loading official-format checkpoints: stand-in files round-trip exactly, are byte-reproducible, are numerically
sane, and every broken file gives one GhostError line that names it."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata

from ghostrt.errors import GhostError
from ghostrt.export.aei_net import generator_inputs, load_generator, standin_generator, write_standin_generators
from ghostrt.export.checkpoints import load_state_dict_file, load_strict, save_state_dict
from ghostrt.export.iresnet import IResNet100, load_arcface, standin_arcface, write_standin_arcface


@pytest.fixture(scope="module")
def arcface_standin():
    return standin_arcface(seed=0)


@pytest.fixture(scope="module")
def arcface_file(tmp_path_factory) -> Path:
    return write_standin_arcface(tmp_path_factory.mktemp("arcface"), seed=0)


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory) -> Path:
    [path] = write_standin_generators(tmp_path_factory.mktemp("generator"), seed=0, blocks=(1,))
    return path


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def face_crop(image: np.ndarray, box) -> torch.Tensor:
    """A real photo's face region as a 1×3×112×112 tensor in [-1,1] (grey images are replicated to RGB)."""
    y0, y1, x0, x1 = box
    crop = torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1])).float()
    crop = crop[..., None].expand(-1, -1, 3) if crop.dim() == 2 else crop
    crop = crop.permute(2, 0, 1)[None] / 127.5 - 1.0
    return torch.nn.functional.interpolate(crop, size=(112, 112), mode="bilinear", align_corners=True)


def assert_one_line_naming(err: pytest.ExceptionInfo, path: Path):
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message


# ---- round trips --------------------------------------------------------------------------------------------

def test_arcface_file_loads_to_the_module_that_wrote_it(arcface_file, arcface_standin):
    face = torch.from_numpy(generator_inputs(1, seed=3)["target"][:, :, :112, :112].copy())
    with torch.inference_mode():
        want = arcface_standin(face)
        got = load_arcface(arcface_file)(face)
    assert torch.equal(got, want)


def test_generator_file_loads_to_the_module_that_wrote_it(generator_file):
    inputs = {k: torch.from_numpy(v) for k, v in generator_inputs(1, seed=4).items()}
    net = load_generator(generator_file)  # depth inferred from the keys
    assert net.num_blocks == 1 and not net.training
    with torch.inference_mode():
        got = net(inputs["target"], inputs["source_embedding"])[0]
        want = standin_generator(1, seed=0)(inputs["target"], inputs["source_embedding"])[0]
    assert torch.equal(got, want)


def test_arcface_standin_file_is_byte_reproducible(tmp_path, arcface_file):
    again = write_standin_arcface(tmp_path, seed=0)
    assert again.name == "backbone.pth"
    assert sha256(again) == sha256(arcface_file)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    assert sha256(write_standin_arcface(other_dir, seed=1)) != sha256(arcface_file)


@pytest.mark.slow
def test_generator_standin_file_is_byte_reproducible(tmp_path, generator_file):
    [again] = write_standin_generators(tmp_path, seed=0, blocks=(1,))
    assert again.name == "G_unet_1block.pth"
    assert sha256(again) == sha256(generator_file)


def test_standin_files_are_plain_state_dicts(arcface_file):
    state = torch.load(arcface_file, map_location="cpu", weights_only=True)
    assert type(state) is dict and all(isinstance(v, torch.Tensor) for v in state.values())
    assert state["layer1.0.bn1.num_batches_tracked"].dtype == torch.int64


# ---- numerical sanity of the stand-ins ----------------------------------------------------------------------

def test_standin_arcface_is_sane_on_real_faces(arcface_standin):
    net = arcface_standin
    stage_std = []
    hooks = [getattr(net, f"layer{i}").register_forward_hook(lambda m, i, o: stage_std.append(float(o.std())))
             for i in range(1, 5)]
    astronaut = face_crop(skdata.astronaut(), (20, 220, 120, 300))  # Eileen Collins
    cameraman = face_crop(skdata.camera(), (50, 200, 140, 290))
    with torch.inference_mode():
        emb = net(torch.cat([astronaut, cameraman]))
    for h in hooks:
        h.remove()
    assert torch.isfinite(emb).all()
    assert all(0.05 < s < 20 for s in stage_std), stage_std  # neither vanishing nor exploding over 100 layers
    norms = emb.norm(dim=1)
    assert ((norms > 5) & (norms < 60)).all(), norms  # raw ArcFace range is ~20-30
    cosine = torch.nn.functional.cosine_similarity(emb[0], emb[1], dim=0)
    assert cosine < 0.95


def test_standin_generator_output_is_not_saturated():
    net = standin_generator(1, seed=0)
    inputs = generator_inputs(2, seed=5)
    target = torch.from_numpy(inputs["target"][:1]).expand(2, -1, -1, -1)  # one face, two identities
    z = torch.from_numpy(inputs["source_embedding"])
    with torch.inference_mode():
        y, attrs = net(target, z)
    attr8 = torch.nn.functional.interpolate(attrs[6], scale_factor=2.0, mode="bilinear", align_corners=True)
    torch.testing.assert_close(attrs[7], attr8)  # MODELS.md: attribute 8 = bilinear ×2 (align_corners) of 7
    assert torch.isfinite(y).all()
    assert 0.05 < float(y.std()) < 0.8
    assert float((y.abs() > 0.99).float().mean()) < 0.01
    assert float((y[0] - y[1]).abs().mean()) > 1e-3  # the identity matters


# ---- broken files ---------------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "backbone.pth"
    with pytest.raises(GhostError, match="not found") as err:
        load_arcface(path)
    assert_one_line_naming(err, path)


def test_empty_file(tmp_path):
    path = tmp_path / "backbone.pth"
    path.write_bytes(b"")
    with pytest.raises(GhostError, match="empty") as err:
        load_arcface(path)
    assert_one_line_naming(err, path)


def test_truncated_file(tmp_path, arcface_file):
    path = tmp_path / "backbone.pth"
    path.write_bytes(arcface_file.read_bytes()[: arcface_file.stat().st_size // 2])
    with pytest.raises(GhostError, match="truncated or corrupt") as err:
        load_arcface(path)
    assert_one_line_naming(err, path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "G_unet_2blocks.pth"
    path.write_text("<html><body>404 Not Found</body></html>\n")
    with pytest.raises(GhostError, match="not a readable PyTorch checkpoint") as err:
        load_generator(path)
    assert_one_line_naming(err, path)


class Payload:
    """An arbitrary object: weights_only loading must refuse to unpickle it."""


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "backbone.pth"
    torch.save({"conv1.weight": torch.zeros(1), "extra": Payload()}, path)
    with pytest.raises(GhostError) as err:
        load_state_dict_file(path)
    assert_one_line_naming(err, path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "backbone.pth"
    torch.save([torch.zeros(3)], path)
    with pytest.raises(GhostError, match="not a state_dict") as err:
        load_arcface(path)
    assert_one_line_naming(err, path)


def test_wrong_keys_name_the_first_differences(tmp_path, arcface_standin):
    path = tmp_path / "backbone.pth"
    state = dict(arcface_standin.state_dict())
    state["fc.weight"] = state["fc.weight"][:, :100].clone()
    state["head.weight"] = state.pop("features.weight")
    save_state_dict(state, path)
    with pytest.raises(GhostError) as err:
        load_arcface(path)
    assert_one_line_naming(err, path)
    message = str(err.value)
    assert "missing: features.weight" in message
    assert "unexpected: head.weight" in message
    assert "fc.weight (512, 100) vs (512, 25088)" in message


def test_generator_file_given_as_arcface(tmp_path):
    path = tmp_path / "backbone.pth"
    save_state_dict({"encoder.conv1.0.weight": torch.zeros(32, 3, 4, 4)}, path)
    with pytest.raises(GhostError, match="does not match IResNet100") as err:
        load_strict(IResNet100(), load_state_dict_file(path), path)
    assert_one_line_naming(err, path)
    with pytest.raises(GhostError, match="not a GHOST generator") as err:
        load_generator(path)
    assert_one_line_naming(err, path)


def test_generator_depth_contradicting_the_file(generator_file):
    with pytest.raises(GhostError, match="holds a 1-block generator, but 2 blocks") as err:
        load_generator(generator_file, num_blocks=2)
    assert_one_line_naming(err, generator_file)
