"""A YOLOv8 ONNX export, rewritten for other input shapes (rectangular or smaller inputs).

An Ultralytics export takes a fixed (1, 3, S, S) input only because of five constants in its
head: the anchor centres (1, 2, N) twice, the anchor strides (1, N), and two DFL Reshape shapes
that spell out N, the number of anchors (the cells of the stride 8, 16 and 32 grids). The rest
is convolutions, upsampling and concatenations, which take any input whose sides are multiples
of 32. So the same weights run at (H, W) once those constants are recomputed for it: what the
Ultralytics predictor does with a PyTorch model when it letterboxes to the smallest rectangle
(``LetterBox(auto=True)``) instead of the full square.

The rewrite checks that it understands the graph: the constants it replaces must equal the ones
recomputed for the export's own size, and nothing else may mention N. Otherwise it raises
:class:`UnsupportedGraph` and the detector keeps the model's own shape.
"""

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

STRIDES = (8, 16, 32)
ALIGN = STRIDES[-1]  # input sides must be multiples of the coarsest stride

FloatArray = npt.NDArray[np.float32]


class UnsupportedGraph(ValueError):
    """The model is not an Ultralytics YOLOv8-style export this module knows how to reshape."""


def anchors(height: int, width: int) -> tuple[FloatArray, FloatArray]:
    """(1, 2, N) anchor centres (x, y) in grid cells and (1, N) their strides, in the head's order:
    stride 8's grid row by row, then stride 16's, then stride 32's."""
    centres, strides = [], []
    for stride in STRIDES:
        rows, cols = height // stride, width // stride
        y, x = np.meshgrid(np.arange(rows) + 0.5, np.arange(cols) + 0.5, indexing="ij")  # (rows, cols)
        centres.append(np.stack([x.ravel(), y.ravel()]))  # (2, rows * cols)
        strides.append(np.full(rows * cols, stride))
    return (
        np.concatenate(centres, axis=1)[np.newaxis].astype(np.float32),  # (1, 2, N)
        np.concatenate(strides)[np.newaxis].astype(np.float32),  # (1, N)
    )


def input_shape(model: onnx.ModelProto) -> tuple[int, int]:
    """(H, W) of the model's static (1, 3, H, W) input."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not all(d.HasField("dim_value") for d in dims[2:]):
        raise UnsupportedGraph("the model input is not a static (1, 3, H, W) tensor")
    return dims[2].dim_value, dims[3].dim_value


def at_shape(model: onnx.ModelProto, height: int, width: int) -> onnx.ModelProto:
    """A copy of ``model`` that takes a (1, 3, height, width) input (multiples of 32)."""
    if height % ALIGN or width % ALIGN or height < ALIGN or width < ALIGN:
        raise ValueError(f"input sides must be positive multiples of {ALIGN}, got {height}x{width}")
    old_centres, old_strides = anchors(*input_shape(model))
    new_centres, new_strides = anchors(height, width)
    old_n, new_n = old_strides.shape[1], new_strides.shape[1]
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    replaced = {"centres": 0, "strides": 0, "shapes": 0}
    for index, tensor in enumerate(graph.initializer):
        value = numpy_helper.to_array(tensor)
        if old_n not in value.shape and not _spells(value, old_n):
            continue
        if value.shape == old_centres.shape and np.allclose(value, old_centres):
            new, kind = new_centres, "centres"
        elif value.shape == old_strides.shape and np.allclose(value, old_strides):
            new, kind = new_strides, "strides"
        elif _spells(value, old_n):
            new, kind = np.where(value == old_n, new_n, value).astype(value.dtype), "shapes"
        else:
            raise UnsupportedGraph(f"initializer {tensor.name} {value.shape} depends on the input size")
        graph.initializer[index].CopyFrom(numpy_helper.from_array(new, tensor.name))
        replaced[kind] += 1
    if replaced != {"centres": 2, "strides": 1, "shapes": 2}:
        raise UnsupportedGraph(f"not a YOLOv8 detection head: replaced {replaced}")
    if any(node.op_type == "Constant" for node in graph.node if _mentions(node, old_n)):
        raise UnsupportedGraph("a Constant node depends on the input size")
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = height, width
    graph.output[0].type.tensor_type.shape.dim[2].dim_value = new_n
    del graph.value_info[:]  # shapes inferred for the old size; onnxruntime infers them again
    return out


def _spells(value: npt.NDArray[np.generic], n: int) -> bool:
    """A small int64 shape vector naming ``n`` (a Reshape target)."""
    return value.dtype == np.int64 and value.ndim == 1 and value.size <= 4 and n in value.tolist()


def _mentions(node: onnx.NodeProto, n: int) -> bool:
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.TENSOR:
            value = numpy_helper.to_array(attribute.t)
            if n in value.shape or _spells(value, n):
                return True
    return False
