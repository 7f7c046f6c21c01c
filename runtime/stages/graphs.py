"""The crop warp and the paste-back blend as small ONNX graphs (opset 17), so that on a GPU they can become
engines and the frame never leaves device memory. On CPU they run on ONNX Runtime and must agree with the
OpenCV path in `align` and `blend` (tests check it).

Both use GridSample with align_corners=1: normalised −1/+1 are then the centres of the first/last pixel, so a
pixel coordinate p maps to 2p/(size−1) − 1, the same integer-centred pixel convention as cv2.warpAffine.
Bilinear with padding "zeros" is warpAffine's BORDER_CONSTANT 0; padding "border" is BORDER_REPLICATE.
The matrices are fed in the direction the sampler needs (output pixel -> source pixel), computed on the host
from M: they are 6 numbers, the images are what must stay on the device.

Crop graph: one frame, N faces. All N crops are sampled in a single GridSample call over the one frame by
stacking their grids vertically (grid [1, N·S, S, 2]) instead of repeating the frame N times.
Note that the frame is cast to float inside the graph (a frame-sized float buffer on the device).
"""

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ghostrt.atomic import atomic_path
from ghostrt.runtime.stages import blend

OPSET = 17
CROP_SIZE = 224


def _const(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def _model(nodes, inputs, outputs, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="ghostrt")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _to_uint8(nodes: list, src: str, dst: str) -> None:
    """round half to even (as np.rint), clip to 0..255, cast."""
    nodes += [
        helper.make_node("Round", [src], [dst + "_round"]),
        helper.make_node("Clip", [dst + "_round", "zero_f", "u8_max_f"], [dst + "_clip"]),
        helper.make_node("Cast", [dst + "_clip"], [dst], to=TensorProto.UINT8),
    ]


def crop_pixel_grid(size: int) -> np.ndarray:
    """(size·size, 3) float32 rows (u, v, 1) of every crop pixel, row-major."""
    v, u = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.stack([u.ravel(), v.ravel(), np.ones(size * size, np.float32)], axis=1)


def build_crop_model(size: int = CROP_SIZE) -> onnx.ModelProto:
    """frame uint8 [H, W, 3] + frame_from_crop float32 [N, 2, 3] (inverse of each M) -> crops uint8
    [N, size, size, 3]."""
    nodes = [
        _const("crop_pixels", crop_pixel_grid(size)),
        _const("zero_f", np.float32(0.0)),
        _const("one_f", np.float32(1.0)),
        _const("two_f", np.float32(2.0)),
        _const("u8_max_f", np.float32(255.0)),
        _const("wh_index", np.array([1, 0], np.int64)),
        _const("zero_axis", np.array([0], np.int64)),
        _const("grid_shape", np.array([1, -1, size, 2], np.int64)),
        _const("out_shape", np.array([3, -1, size, size], np.int64)),
        # frame pixel (x, y) of every crop pixel: [N, S², 2]
        helper.make_node("Transpose", ["frame_from_crop"], ["theta_t"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["crop_pixels", "theta_t"], ["src_px"]),
        # normalise by the frame size: 2p/(size−1) − 1
        helper.make_node("Shape", ["frame"], ["frame_shape"]),
        helper.make_node("Gather", ["frame_shape", "wh_index"], ["wh_int"], axis=0),
        helper.make_node("Cast", ["wh_int"], ["wh"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["wh", "one_f"], ["wh_m1"]),
        helper.make_node("Div", ["two_f", "wh_m1"], ["px_to_norm"]),
        helper.make_node("Mul", ["src_px", "px_to_norm"], ["src_scaled"]),
        helper.make_node("Sub", ["src_scaled", "one_f"], ["src_norm"]),
        helper.make_node("Reshape", ["src_norm", "grid_shape"], ["grid"]),
        # frame as [1, 3, H, W] float
        helper.make_node("Cast", ["frame"], ["frame_f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["frame_f"], ["frame_chw"], perm=[2, 0, 1]),
        helper.make_node("Unsqueeze", ["frame_chw", "zero_axis"], ["frame_nchw"]),
        helper.make_node("GridSample", ["frame_nchw", "grid"], ["sampled"], mode="bilinear",
                         padding_mode="zeros", align_corners=1),
        helper.make_node("Reshape", ["sampled", "out_shape"], ["crops_cnhw"]),
        helper.make_node("Transpose", ["crops_cnhw"], ["crops_f"], perm=[1, 2, 3, 0]),
    ]
    _to_uint8(nodes, "crops_f", "crops")
    inputs = [helper.make_tensor_value_info("frame", TensorProto.UINT8, ["H", "W", 3]),
              helper.make_tensor_value_info("frame_from_crop", TensorProto.FLOAT, ["N", 2, 3])]
    outputs = [helper.make_tensor_value_info("crops", TensorProto.UINT8, ["N", size, size, 3])]
    return _model(nodes, inputs, outputs, "ghostrt_crop")


def build_paste_model(size: int = CROP_SIZE) -> onnx.ModelProto:
    """region uint8 [h, w, 3] (the face's rectangle of the frame) + swap uint8 [size, size, 3] + mask float32
    [size, size] + crop_from_region float32 [2, 3] -> blended region uint8 [h, w, 3],
    round(region + m·(swap − region)) with swap sampled border-replicate and mask sampled zero-padded."""
    nodes = [
        _const("zero_f", np.float32(0.0)),
        _const("one_f", np.float32(1.0)),
        _const("u8_max_f", np.float32(255.0)),
        _const("px_to_norm", np.float32(2.0 / (size - 1))),
        _const("axis0", np.array([0], np.int64)),
        _const("axis1", np.array([1], np.int64)),
        _const("axis_last", np.array([-1], np.int64)),
        _const("idx_h", np.array(0, np.int64)),
        _const("idx_w", np.array(1, np.int64)),
        # region pixel coordinates: xs [1, w], ys [h, 1]
        helper.make_node("Shape", ["region"], ["region_shape"]),
        helper.make_node("Gather", ["region_shape", "idx_h"], ["h_int"], axis=0),
        helper.make_node("Gather", ["region_shape", "idx_w"], ["w_int"], axis=0),
        helper.make_node("Cast", ["h_int"], ["h_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["w_int"], ["w_f"], to=TensorProto.FLOAT),
        helper.make_node("Range", ["zero_f", "w_f", "one_f"], ["xs"]),
        helper.make_node("Range", ["zero_f", "h_f", "one_f"], ["ys"]),
        helper.make_node("Unsqueeze", ["xs", "axis0"], ["xs_row"]),
        helper.make_node("Unsqueeze", ["ys", "axis1"], ["ys_col"]),
        # theta entries as scalars
        helper.make_node("Reshape", ["crop_from_region", "axis_last"], ["theta_flat"]),
    ]
    for k in range(6):
        nodes += [_const(f"t{k}_idx", np.array(k, np.int64)),
                  helper.make_node("Gather", ["theta_flat", f"t{k}_idx"], [f"t{k}"], axis=0)]
    for axis, (a, b, c) in (("x", (0, 1, 2)), ("y", (3, 4, 5))):
        # crop coordinate = a·x + b·y + c, broadcast to [h, w], then normalised
        nodes += [
            helper.make_node("Mul", ["xs_row", f"t{a}"], [f"{axis}_ax"]),
            helper.make_node("Mul", ["ys_col", f"t{b}"], [f"{axis}_by"]),
            helper.make_node("Add", [f"{axis}_ax", f"{axis}_by"], [f"{axis}_sum"]),
            helper.make_node("Add", [f"{axis}_sum", f"t{c}"], [f"{axis}_px"]),
            helper.make_node("Mul", [f"{axis}_px", "px_to_norm"], [f"{axis}_scaled"]),
            helper.make_node("Sub", [f"{axis}_scaled", "one_f"], [f"{axis}_norm"]),
            helper.make_node("Unsqueeze", [f"{axis}_norm", "axis_last"], [f"{axis}_last"]),
        ]
    nodes += [
        helper.make_node("Concat", ["x_last", "y_last"], ["grid_hw2"], axis=-1),
        helper.make_node("Unsqueeze", ["grid_hw2", "axis0"], ["grid"]),
        # swap [1, 3, S, S] and mask [1, 1, S, S]
        helper.make_node("Cast", ["swap"], ["swap_f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["swap_f"], ["swap_chw"], perm=[2, 0, 1]),
        helper.make_node("Unsqueeze", ["swap_chw", "axis0"], ["swap_nchw"]),
        helper.make_node("Unsqueeze", ["mask", "axis0"], ["mask_chw"]),
        helper.make_node("Unsqueeze", ["mask_chw", "axis0"], ["mask_nchw"]),
        helper.make_node("GridSample", ["swap_nchw", "grid"], ["swap_warped"], mode="bilinear",
                         padding_mode="border", align_corners=1),
        helper.make_node("GridSample", ["mask_nchw", "grid"], ["mask_warped"], mode="bilinear",
                         padding_mode="zeros", align_corners=1),
        # back to [h, w, C] and blend
        helper.make_node("Squeeze", ["swap_warped", "axis0"], ["swap_chw_out"]),
        helper.make_node("Transpose", ["swap_chw_out"], ["swap_hwc"], perm=[1, 2, 0]),
        helper.make_node("Squeeze", ["mask_warped", "axis0"], ["mask_1hw"]),
        helper.make_node("Transpose", ["mask_1hw"], ["mask_hw1"], perm=[1, 2, 0]),
        helper.make_node("Cast", ["region"], ["region_f"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["swap_hwc", "region_f"], ["delta"]),
        helper.make_node("Mul", ["mask_hw1", "delta"], ["weighted"]),
        helper.make_node("Add", ["region_f", "weighted"], ["blended_f"]),
    ]
    _to_uint8(nodes, "blended_f", "blended")
    inputs = [helper.make_tensor_value_info("region", TensorProto.UINT8, ["h", "w", 3]),
              helper.make_tensor_value_info("swap", TensorProto.UINT8, [size, size, 3]),
              helper.make_tensor_value_info("mask", TensorProto.FLOAT, [size, size]),
              helper.make_tensor_value_info("crop_from_region", TensorProto.FLOAT, [2, 3])]
    outputs = [helper.make_tensor_value_info("blended", TensorProto.UINT8, ["h", "w", 3])]
    return _model(nodes, inputs, outputs, "ghostrt_paste")


def crop_feeds(frame: np.ndarray, Ms: np.ndarray) -> dict[str, np.ndarray]:
    """Inputs of the crop graph from a frame and its alignment matrices (frame -> crop)."""
    inverse = np.stack([cv2.invertAffineTransform(np.asarray(M, np.float64)) for M in Ms])
    return {"frame": np.ascontiguousarray(frame), "frame_from_crop": inverse.astype(np.float32)}


def paste_feeds(region: np.ndarray, swap: np.ndarray, mask: np.ndarray, M: np.ndarray, x0: int, y0: int
                ) -> dict[str, np.ndarray]:
    """Inputs of the paste graph for a region whose top-left is frame pixel (x0, y0)."""
    return {"region": np.ascontiguousarray(region), "swap": np.ascontiguousarray(swap),
            "mask": np.asarray(mask, np.float32),
            "crop_from_region": blend.roi_matrix(M, x0, y0).astype(np.float32)}


def write_model(model: onnx.ModelProto, path) -> None:
    """Save atomically (the file is complete or absent)."""
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
