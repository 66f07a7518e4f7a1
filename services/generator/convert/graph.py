"""A small ONNX graph builder: nodes, initializers and unique names, nothing more."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MS_DOMAIN = "com.microsoft"
OPSET = 17


class Graph:
    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._counts: dict[str, int] = {}
        self._consts: dict[tuple, str] = {}

    def _unique(self, base: str) -> str:
        n = self._counts.get(base, 0)
        self._counts[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def op(
        self,
        op_type: str,
        *inputs: str,
        name: str | None = None,
        outputs: int = 1,
        out: str | list[str] | None = None,
        domain: str = "",
        **attrs: Any,
    ) -> Any:
        """Add a node; returns its output name (or a list of them when ``outputs > 1``).

        ``out`` names the output(s), for values that are graph outputs.
        """
        node_name = self._unique(name or op_type)
        outs = [
            f"{node_name}/out{i}" if outputs > 1 else f"{node_name}/out" for i in range(outputs)
        ]
        if out is not None:
            outs = [out] if isinstance(out, str) else list(out)
        self.nodes.append(
            helper.make_node(op_type, list(inputs), outs, name=node_name, domain=domain, **attrs)
        )
        return outs if len(outs) > 1 else outs[0]

    def weight(self, name: str, array: np.ndarray) -> str:
        """A named initializer (weights: stored once, in external data when large)."""
        unique = self._unique(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), unique))
        return unique

    def const(self, value: Any, dtype: Any = np.int64) -> str:
        """A small constant, shared by every node that asks for the same value."""
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            self._consts[key] = self.weight("const", array)
        return self._consts[key]

    def input(self, name: str, elem_type: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, name: str, elem_type: int, shape: list) -> str:
        """Declare a graph output; the node that makes it passes ``out=name``."""
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def model(self, metadata: dict[str, str]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, self.name, self.inputs, self.outputs, initializer=self.initializers
        )
        domains = sorted({n.domain for n in self.nodes} - {"", MS_DOMAIN})
        model = helper.make_model(
            graph,
            opset_imports=[
                helper.make_opsetid("", OPSET),
                helper.make_opsetid(MS_DOMAIN, 1),
                *(helper.make_opsetid(d, 1) for d in domains),
            ],
            producer_name="marquee",
        )
        # IR 8 is what onnxruntime releases since 1.14 accept; opset 17 needs no more.
        model.ir_version = 8
        for key, value in metadata.items():
            model.metadata_props.add(key=key, value=value)
        return model


FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64
