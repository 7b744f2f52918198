"""Graph surgery for the ablation: expose a backbone's last feature map, read its classifier head.

A pooled-embedding ONNX model ends with ``GlobalAveragePool`` (usually followed by ``Flatten``)
feeding the graph output. :func:`feature_map_model` cuts that tail off so one run yields the
(N, C, h, w) map that average, GeM, max and regional pooling are all computed from, and makes
the input height and width dynamic so the same graph takes aspect-preserving inputs.
:func:`linear_head` reads the weights of a classifier whose logits are a 1x1 Conv (or Gemm) of
the pooled features, so logits can be derived from the same run instead of a second model.
Nothing here knows tensor names: the pooling node is found from the graph output backwards.
"""

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

# Ops between the pooling and the output that only change the shape, never the values.
RESHAPING_OPS = frozenset({"Flatten", "Reshape", "Squeeze"})
POOL_OP = "GlobalAveragePool"


def _producers(graph: Any) -> dict[str, Any]:
    """Tensor name -> the node that writes it."""
    return {name: node for node in graph.node for name in node.output}


def _tail_to_pool(graph: Any, output: str) -> list[Any]:
    """Nodes from ``output`` back to the GlobalAveragePool that feeds it (pool last); ValueError if none."""
    producers = _producers(graph)
    tail: list[Any] = []
    node = producers.get(output)
    while node is not None and node.op_type in RESHAPING_OPS:
        tail.append(node)
        node = producers.get(node.input[0])
    if node is None or node.op_type != POOL_OP:
        found = "a graph input" if node is None else f"a {node.op_type} node"
        raise ValueError(
            f"graph output {output!r} is not produced by {POOL_OP} (optionally followed by "
            f"{'/'.join(sorted(RESHAPING_OPS))}); it traces back to {found}"
        )
    return [*tail, node]


def feature_map_model(src: Path) -> bytes:
    """Serialized copy of ``src`` whose only output is the (N, C, h, w) map its final pooling averaged.

    The input's height and width become dynamic ("height", "width"). Raises ValueError if the
    graph does not have exactly one output computed as GlobalAveragePool (+ reshapes) of a map.
    """
    model = onnx.load(str(src))
    graph = model.graph
    if len(graph.output) != 1:
        names = [o.name for o in graph.output]
        raise ValueError(f"{src}: expected one graph output (a pooled embedding), found {names}")
    tail = _tail_to_pool(graph, graph.output[0].name)
    removed = {name for node in tail for name in node.output}
    used_elsewhere = [
        node.name or node.op_type
        for node in graph.node
        if node not in tail and removed.intersection(node.input)
    ]
    if used_elsewhere:
        raise ValueError(f"{src}: the pooled features also feed {used_elsewhere}; cannot cut the pooling off")
    feature_map = tail[-1].input[0]
    channels = _channels(model, feature_map)
    for node in tail:
        graph.node.remove(node)
    _drop_unused_initializers(graph)
    dims = graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ValueError(f"{src}: expected an NCHW image input, got rank {len(dims)}")
    batch = dims[0].dim_param or (dims[0].dim_value if dims[0].HasField("dim_value") else None)
    del graph.output[:]
    graph.output.append(
        onnx.helper.make_tensor_value_info(
            feature_map, onnx.TensorProto.FLOAT, [batch, channels, "map_height", "map_width"]
        )
    )
    for dim, name in ((dims[2], "height"), (dims[3], "width")):
        dim.Clear()
        dim.dim_param = name
    del graph.value_info[:]  # shapes inferred for the fixed input size are stale now
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _channels(model: Any, tensor: str) -> int | None:
    """Channel count of ``tensor`` from shape inference; None when the graph leaves it unknown."""
    inferred = onnx.shape_inference.infer_shapes(model)
    for info in inferred.graph.value_info:
        if info.name == tensor:
            dims = info.type.tensor_type.shape.dim
            if len(dims) == 4 and dims[1].HasField("dim_value"):
                return int(dims[1].dim_value)
    return None


def _drop_unused_initializers(graph: Any) -> None:
    """Remove weights no remaining node reads (e.g. a Reshape's shape constant)."""
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def linear_head(src: Path, output: str) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(weight (K, C), bias (K,)) with ``output`` = pooled @ weight.T + bias, for a 1x1 Conv or Gemm head.

    The head's input must be the GlobalAveragePool output (possibly reshaped). Raises ValueError
    for any other graph shape, or a Gemm with transposes/scales other than the usual transB=1.
    """
    graph = onnx.load(str(src)).graph
    producers = _producers(graph)
    node = producers.get(output)
    while node is not None and node.op_type in RESHAPING_OPS:
        node = producers.get(node.input[0])
    if node is None or node.op_type not in ("Conv", "Gemm"):
        raise ValueError(f"{src}: output {output!r} is not a Conv/Gemm (+ reshapes) of pooled features")
    _tail_to_pool(graph, node.input[0])  # raises unless the head reads the pooled features
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    if node.input[1] not in weights:
        raise ValueError(f"{src}: the head's weight {node.input[1]!r} is not a constant initializer")
    weight = np.asarray(weights[node.input[1]], dtype=np.float32)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Conv":
        if weight.ndim != 4 or weight.shape[2:] != (1, 1) or attrs.get("group", 1) != 1:
            raise ValueError(f"{src}: head Conv is not a plain 1x1 convolution: weight {weight.shape}")
        weight = weight.reshape(weight.shape[0], weight.shape[1])
    elif attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        raise ValueError(f"{src}: head Gemm uses transA/alpha/beta, which is not supported")
    elif not attrs.get("transB", 0):
        weight = weight.T
    bias = np.zeros(weight.shape[0], np.float32)
    if len(node.input) > 2 and node.input[2]:
        bias = np.asarray(weights[node.input[2]], dtype=np.float32).reshape(-1)
    return weight, bias
