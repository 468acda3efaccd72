"""A small editable view of an ONNX graph for passes: producers, consumers, constants, fresh names.

``commit()`` writes the nodes back; a shared initializer is copied before it is changed.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

FLOAT_TYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
}
DEFAULT_DOMAINS = ("", "ai.onnx")


def default_opset(model: onnx.ModelProto) -> int:
    """The version of the default (ai.onnx) opset ``model`` imports; 0 when it imports none."""
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return int(entry.version)
    return 0


def type_view(model: onnx.ModelProto, max_bytes: int = 4096) -> onnx.ModelProto:
    """A copy for shape inference with large initializers replaced by typed inputs (shape tensors kept)."""
    view = onnx.ModelProto()
    view.ir_version = model.ir_version
    view.opset_import.extend(model.opset_import)
    graph = view.graph
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    graph.value_info.extend(model.graph.value_info)
    declared = {v.name for v in model.graph.input}
    for tensor in model.graph.initializer:
        if tensor.ByteSize() <= max_bytes:
            graph.initializer.append(tensor)
        elif tensor.name not in declared:
            graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type,
                                                                  list(tensor.dims)))
    for function in model.functions:
        view.functions.append(function)
    return view


def infer_types(model: onnx.ModelProto, strict: bool = False) -> onnx.ModelProto:
    """Shape/type inference on :func:`type_view`: the ranks and element types every pass needs."""
    from bninception.core.errors import BninceptionError

    try:
        return onnx.shape_inference.infer_shapes(type_view(model))
    except Exception as exc:  # onnx raises InferenceError, ValidationError, or RuntimeError from C++
        if strict:
            raise BninceptionError(f"ONNX shape inference failed: {exc}") from exc
        return model


def tensor_types(model: onnx.ModelProto, strict: bool = False) -> dict[str, int]:
    """Tensor name -> element type, for graph inputs, outputs, inferred intermediates and initializers."""
    graph = infer_types(model, strict).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    return types


def get_attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    """The value of ``node``'s attribute ``name``, or ``default`` when it has none."""
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def set_attr(node: onnx.NodeProto, name: str, value: object) -> None:
    for index, attr in enumerate(node.attribute):
        if attr.name == name:
            del node.attribute[index]
            break
    node.attribute.append(onnx.helper.make_attribute(name, value))


class Graph:
    """Editable view of ``model.graph`` (the model is modified in place by ``commit``)."""

    def __init__(self, model: onnx.ModelProto, inferred: onnx.ModelProto | None = None) -> None:
        self.model = model
        self.graph = model.graph
        self._nodes: list[onnx.NodeProto] = [onnx.NodeProto.FromString(n.SerializeToString())
                                             for n in self.graph.node]
        self._gone: set[int] = set()  # id() of removed or replaced nodes
        self._instead: dict[int, list[onnx.NodeProto]] = {}  # id() of a replaced node -> its replacement
        self._added: list[onnx.NodeProto] = []  # replacements not yet in the producer / consumer maps
        self.inits: dict[str, onnx.TensorProto] = {t.name: t for t in self.graph.initializer}
        self.graph_inputs = {v.name for v in self.graph.input}
        self.graph_outputs = {v.name for v in self.graph.output}
        self.rank: dict[str, int] = {}
        self.elem_type: dict[str, int] = {}
        self._read_types(inferred or model)
        self.touched_inits: set[str] = set()
        self.refresh()
        self._taken: set[str] = {n.name for n in self.nodes} | set(self.inits) | self.graph_inputs
        self._taken |= self.graph_outputs | set(self.producer) | set(self.consumers)
        self._taken |= {v.name for v in self.graph.value_info}

    def _read_types(self, model: onnx.ModelProto) -> None:
        g = model.graph
        for value in [*g.input, *g.value_info, *g.output]:
            ttype = value.type.tensor_type
            if value.type.HasField("tensor_type"):
                if ttype.elem_type:
                    self.elem_type[value.name] = ttype.elem_type
                if ttype.HasField("shape"):
                    self.rank[value.name] = len(ttype.shape.dim)
        for tensor in g.initializer:
            self.elem_type.setdefault(tensor.name, tensor.data_type)
            self.rank.setdefault(tensor.name, len(tensor.dims))

    # -- structure ------------------------------------------------------------------------
    @property
    def nodes(self) -> list[onnx.NodeProto]:
        """The nodes in order, removals and replacements applied."""
        return [n for node in self._nodes
                for n in (self._instead.get(id(node), []) if id(node) in self._gone else (node,))]

    def refresh(self) -> None:
        """Rebuild the producer / consumer maps from scratch."""
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
        for node in self.nodes:
            self._attach(node)
        self._added.clear()

    def _attach(self, node: onnx.NodeProto) -> None:
        for out in node.output:
            if out:
                self.producer[out] = node
        for index, name in enumerate(node.input):
            if name:
                self.consumers[name].append((node, index))

    def snapshot(self, nodes: list[onnx.NodeProto]) -> list[tuple[onnx.NodeProto, list[str], list[str]]]:
        """The inputs and outputs of ``nodes`` before an edit, for :meth:`update`."""
        return [(node, list(node.input), list(node.output)) for node in nodes]

    def update(self, before: list[tuple[onnx.NodeProto, list[str], list[str]]]) -> None:
        """Bring the maps up to date after an edit that changed only the snapshot's nodes (and added
        replacements): the cost is that of the nodes touched, not of the graph."""
        for node, inputs, outputs in before:
            for out in outputs:
                if out and self.producer.get(out) is node:
                    del self.producer[out]
            for name in set(inputs):
                users = [(n, i) for n, i in self.consumers.get(name, ()) if n is not node]
                if users:
                    self.consumers[name] = users
                else:
                    self.consumers.pop(name, None)
        for node, _, _ in before:
            if id(node) not in self._gone:
                self._attach(node)
        for node in self._added:
            self._attach(node)
        self._added.clear()

    def uses(self, name: str) -> int:
        return len(self.consumers.get(name, ())) + (name in self.graph_outputs)

    def unique(self, base: str) -> str:
        name, counter = base, 1
        while name in self._taken:
            name = f"{base}_{counter}"
            counter += 1
        self._taken.add(name)
        return name

    def remove(self, node: onnx.NodeProto) -> None:
        self._gone.add(id(node))

    def replace(self, node: onnx.NodeProto, new_nodes: list[onnx.NodeProto]) -> None:
        """``new_nodes`` take ``node``'s place (a node of the original graph)."""
        self._gone.add(id(node))
        self._instead[id(node)] = new_nodes
        self._added.extend(new_nodes)

    # -- constants ------------------------------------------------------------------------
    def is_const(self, name: str) -> bool:
        """A constant initializer (one also listed as a graph input can be overridden: not constant)."""
        return bool(name) and name in self.inits and name not in self.graph_inputs

    def const(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self.inits[name])

    def const_dtype(self, name: str) -> int:
        return self.inits[name].data_type

    def add_const(self, base: str, array: np.ndarray) -> str:
        name = self.unique(base)
        tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
        self.graph.initializer.append(tensor)
        self.inits[name] = self.graph.initializer[-1]
        self.elem_type[name] = tensor.data_type
        self.rank[name] = array.ndim
        return name

    def set_input_const(self, node: onnx.NodeProto, index: int, array: np.ndarray, base: str) -> None:
        """Give ``node.input[index]`` the value ``array``, in place or, for a shared initializer, under a fresh name."""
        name = node.input[index] if index < len(node.input) else ""
        if name and self.is_const(name) and self.uses(name) == 1:
            tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
            self.inits[name].CopyFrom(tensor)
            self.rank[name] = array.ndim
            self.touched_inits.add(name)
            return
        new_name = self.add_const(base, array)
        if name:
            self.touched_inits.add(name)
        while len(node.input) <= index:
            node.input.append("")
        node.input[index] = new_name

    # -- finishing ------------------------------------------------------------------------
    def commit(self, maybe_unused: set[str]) -> None:
        """Write the nodes back, drop initializers in ``maybe_unused`` that lost all users, and
        value_info entries for tensors that no longer exist."""
        self.refresh()
        del self.graph.node[:]
        self.graph.node.extend(self.nodes)
        dead = {n for n in maybe_unused if n in self.inits and self.uses(n) == 0
                and n not in self.graph_inputs}
        if dead:
            kept = [t for t in self.graph.initializer if t.name not in dead]
            del self.graph.initializer[:]
            self.graph.initializer.extend(kept)
        live = set(self.producer) | set(self.consumers) | self.graph_inputs | self.graph_outputs
        stale = [v for v in self.graph.value_info if v.name not in live]
        for value in stale:
            self.graph.value_info.remove(value)
