"""The 2d106det landmark net: load it (MXNet pair or InsightFace ONNX), export it, write a stand-in.

Both official forms hold the same MobileNet: GHOST commits `2d106det-symbol.json` + `2d106det-0000.params`,
InsightFace's buffalo_l pack carries `2d106det.onnx`. Either way the exported ONNX has one contract:
input `face` [N,3,192,192] float32 raw RGB 0–255 (the net normalises itself), output `landmarks` [N,212],
the raw regression output (the caller reshapes to (106, 2) and maps (p + 1) · 96 to pixels).
"""

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ghostrt.atomic import atomic_path
from ghostrt.errors import GhostError, file_error
from ghostrt.export.parity import ParityRow, check_parity, ort_session, seeded, torch_reference

SYMBOL_ASSET = Path(__file__).resolve().parent / "assets" / "2d106det-symbol.json"
SYMBOL_NAME = "2d106det-symbol.json"
PARAMS_NAME = "2d106det-0000.params"
DATA_NAME = "data"  # the MXNet graph's input node
INPUT_NAME, OUTPUT_NAME = "face", "landmarks"
FACE_SHAPE = (3, 192, 192)
NUM_OUTPUTS = 212  # 106 points × (x, y)


@dataclass
class LandmarkNet:
    """What was loaded: a torch module built from the MXNet pair, or the ONNX file as it is."""

    source: Path
    module: object | None = None  # ghostrt.export.mxnet_net.SymbolNet
    onnx_path: Path | None = None


def params_beside(symbol_path: Path) -> Path:
    """`X-symbol.json` → `X-0000.params` in the same folder (MXNet's checkpoint naming, epoch 0)."""
    stem = symbol_path.name.removesuffix(".json").removesuffix("-symbol")
    return symbol_path.with_name(f"{stem}-0000.params")


def load_landmarks(path) -> LandmarkNet:
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "landmark weights not found (expected 2d106det-symbol.json or 2d106det.onnx)")
    if path.suffix == ".onnx":
        _check_onnx_contract(path)
        return LandmarkNet(path, onnx_path=path)
    if path.suffix == ".json":
        return LandmarkNet(path, module=_load_mxnet_pair(path))
    raise file_error(path, "landmark weights must be an MXNet symbol .json (with its .params) or an .onnx file")


def _load_mxnet_pair(symbol_path: Path):
    from ghostrt.export.mxnet_params import read_params
    from ghostrt.export.mxnet_net import SymbolNet
    from ghostrt.export.mxnet_symbol import check_params, infer_shapes, read_symbol

    graph = read_symbol(symbol_path)
    if not any(node.op == "null" and node.name == DATA_NAME for node in graph.nodes):
        raise file_error(symbol_path, f"no input node named {DATA_NAME}; not the 2d106det graph")
    input_shapes = {DATA_NAME: (1, *FACE_SHAPE)}
    shapes = infer_shapes(graph, input_shapes)
    heads = [shapes.outputs[index] for index, _ in graph.heads]
    if heads != [(1, NUM_OUTPUTS)]:
        raise file_error(symbol_path, f"outputs {heads} for a 192×192 face, expected [(1, {NUM_OUTPUTS})]; "
                                      "not the 2d106det graph")
    params_path = params_beside(symbol_path)
    if not params_path.is_file():
        raise file_error(params_path, f"missing: the weights of {symbol_path.name} belong beside it")
    params = read_params(params_path)
    check_params(graph, shapes, params, params_path)
    return SymbolNet(graph, params, input_shapes).eval()


def _onnx_io(model):
    """The real graph input/output (old exporters also list initializers as inputs)."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    return inputs, list(model.graph.output)


def _dims(value) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in value.type.tensor_type.shape.dim]


def _check_onnx_contract(path: Path):
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as err:  # onnx raises DecodeError and friends; all mean "not a readable model"
        raise file_error(path, f"not a readable ONNX model ({type(err).__name__})") from None
    inputs, outputs = _onnx_io(model)
    if len(inputs) != 1 or len(outputs) != 1:
        raise file_error(path, f"{len(inputs)} inputs / {len(outputs)} outputs, the 2d106det net has 1 / 1")
    in_dims, out_dims = _dims(inputs[0]), _dims(outputs[0])
    if len(in_dims) != 4 or tuple(in_dims[1:]) != FACE_SHAPE:
        raise file_error(path, f"input shape {in_dims}, expected [N, 3, 192, 192]")
    if len(out_dims) != 2 or out_dims[1] != NUM_OUTPUTS:
        raise file_error(path, f"output shape {out_dims}, expected [N, {NUM_OUTPUTS}]")
    return model


def sample_faces(batch: int) -> dict[str, np.ndarray]:
    """Seeded raw-RGB inputs in the net's own range, 0–255."""
    return {INPUT_NAME: seeded((batch, *FACE_SHAPE), seed=100 + batch, low=0.0, high=255.0)}


def export_landmarks(weights, out) -> ParityRow:
    """Write the landmark ONNX to `out` and prove it (batch 1 and 3) against the source it came from."""
    net = weights if isinstance(weights, LandmarkNet) else load_landmarks(weights)
    out = Path(out)
    if net.module is not None:
        from ghostrt.export.onnx_io import export_module

        export_module(net.module, sample_faces(1), [OUTPUT_NAME], out)
        reference = torch_reference(net.module)
    else:
        _rewrite_onnx(net.onnx_path, out)
        reference = _onnx_image_by_image(net.onnx_path)
    return check_parity("landmarks", out, reference, sample_faces, batches=(1, 3))


def _rewrite_onnx(source: Path, out: Path) -> Path:
    """Rename the I/O to the shared contract and make axis 0 a dynamic batch `N` (InsightFace may fix it to 1)."""
    import onnx

    model = copy.deepcopy(_check_onnx_contract(source))
    inputs, outputs = _onnx_io(model)
    renames = {inputs[0].name: INPUT_NAME, outputs[0].name: OUTPUT_NAME}
    for node in model.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    for value in (inputs[0], outputs[0]):
        value.name = renames[value.name]
        value.type.tensor_type.shape.dim[0].dim_param = "N"  # setting dim_param clears a fixed dim_value
    del model.graph.value_info[:]  # intermediate shapes recorded for batch 1 would contradict batch N
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        raise file_error(source, f"cannot re-export with a batch axis: {str(err).splitlines()[0]}") from None
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return out


def _onnx_image_by_image(source: Path):
    """The original ONNX as the reference, fed one face at a time so a fixed batch of 1 still works."""
    session = ort_session(source)
    in_name, out_name = session.get_inputs()[0].name, session.get_outputs()[0].name

    def run(inputs):
        faces = inputs[INPUT_NAME]
        rows = [session.run([out_name], {in_name: faces[i:i + 1]})[0] for i in range(len(faces))]
        return [np.concatenate(rows, axis=0)]

    return run


# ---------------------------------------------------------------- stand-in (no official weights in CI)

def standin_params(seed: int = 0) -> dict[str, np.ndarray]:
    """Untrained weights of exactly the official names and shapes, seeded, in graph order (args, then aux).

    Scales keep activations near unit size through all the layers: He-normal convolutions, PReLU slopes
    near MXNet's 0.25 init, BatchNorm statistics near identity, a small final layer. The graph's BatchNorms
    use fix_gamma, so their gammas are written (the file must hold them) but have no effect.
    """
    from ghostrt.export.mxnet_symbol import infer_shapes, param_prefix, read_symbol

    graph = read_symbol(SYMBOL_ASSET)
    shapes = infer_shapes(graph, {DATA_NAME: (1, *FACE_SHAPE)})
    prefix = param_prefix(graph)
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        for slot, (src, _) in enumerate(node.inputs[1:], start=1):
            name = prefix[src] + graph.nodes[src].name
            arrays[name] = _standin_array(node.op, slot, shapes.params[name], rng).astype(np.float32)
    args = {name: value for name, value in arrays.items() if name.startswith("arg:")}
    aux = {name: value for name, value in arrays.items() if name.startswith("aux:")}
    return {**args, **aux}


def _standin_array(op: str, slot: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if op == "Convolution":
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape) if slot == 1 else rng.normal(0.0, 0.01, shape)
    if op == "FullyConnected":
        return rng.normal(0.0, 0.5 / np.sqrt(fan_in), shape) if slot == 1 else rng.normal(0.0, 0.05, shape)
    if op == "LeakyReLU":
        return rng.uniform(0.15, 0.35, shape)
    if op == "BatchNorm":  # slots: gamma, beta, moving mean, moving var
        low_high = {1: (0.8, 1.2), 3: (-0.1, 0.1), 4: (0.8, 1.5)}
        return rng.uniform(*low_high[slot], shape) if slot in low_high else rng.normal(0.0, 0.05, shape)
    raise GhostError(f"stand-in: no initialiser for {op} input {slot}")


def write_standin_landmarks(out_dir, seed: int = 0) -> list[Path]:
    """Write the official symbol and a seeded `.params` under the official names; identical bytes per seed."""
    from ghostrt.export.mxnet_params import write_params

    out_dir = Path(out_dir)
    symbol_path, params_path = out_dir / SYMBOL_NAME, out_dir / PARAMS_NAME
    with atomic_path(symbol_path) as tmp:
        tmp.write_bytes(SYMBOL_ASSET.read_bytes())
    write_params(params_path, standin_params(seed))
    return [symbol_path, params_path]
