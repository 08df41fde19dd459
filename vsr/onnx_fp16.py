"""An fp16 copy of an ESPCN ONNX file, for TensorRT's strongly typed networks.

TensorRT 11 removed the FP16 builder flag: a network runs in the types its ONNX file
states. We convert the weights and constants to float16 and keep the model's inputs and
outputs float32, with a Cast at each end (as ModelOpt AutoCast's ``keep_io_types`` does):
the host side then handles the same float32 buffers whatever the precision, and the two
casts cost nothing next to the convolutions. Needs only the ``onnx`` package.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import BackendUnavailable


def convert_to_fp16(src: os.PathLike | str, dst: os.PathLike | str) -> Path:
    """Write ``dst``: ``src`` with float32 weights, constants and casts made float16, I/O float32."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise BackendUnavailable("making the fp16 ONNX for TensorRT needs the onnx package (pip install onnx)") from None
    import numpy as np

    model = onnx.load(str(src))
    graph = model.graph

    def to_half(tensor):
        if tensor.data_type != TensorProto.FLOAT:
            return tensor
        half = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name)
        return half

    for i, init in enumerate(graph.initializer):
        graph.initializer[i].CopyFrom(to_half(init))
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                attr.t.CopyFrom(to_half(attr.t))
            elif node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16

    # Float32 at the edges: rename the graph's own input/output and bridge them with casts.
    for value in list(graph.input):
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = value.name + "_fp16"
        for node in graph.node:
            node.input[:] = [inner if name == value.name else name for name in node.input]
        graph.node.insert(0, helper.make_node("Cast", [value.name], [inner], to=TensorProto.FLOAT16,
                                              name=value.name + "_to_fp16"))
    for value in graph.output:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = value.name + "_fp16"
        for node in graph.node:
            node.output[:] = [inner if name == value.name else name for name in node.output]
        graph.node.append(helper.make_node("Cast", [inner], [value.name], to=TensorProto.FLOAT,
                                           name=value.name + "_to_fp32"))
    # Shapes inferred for float32 are stale; TensorRT and ORT infer them again.
    del graph.value_info[:]
    onnx.checker.check_model(model)
    from .cache import write_atomic

    dst = Path(dst)
    write_atomic(dst, model.SerializeToString())
    return dst


def cached_fp16_onnx(src: os.PathLike | str, src_sha256: str, cache_dir: os.PathLike | str) -> Path:
    """The fp16 copy of ``src``, converted once per source checksum into ``cache_dir``."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    from .cache import cached_file

    return cached_file(cache_dir / f"espcn_{src_sha256[:16]}_fp16.onnx", lambda target: convert_to_fp16(src, target))
