"""The KServe V2 gRPC messages (package ``inference``), declared here as data and built at import.

The Open Inference Protocol's ``GRPCInferenceService`` needs a dozen small messages. They are
declared in the table below, field for field as the protocol defines them, and compiled into a
descriptor pool of their own, so nothing is generated at build time and the server coexists in one
process with clients (tritonclient) that register Triton's larger ``inference`` package in the default
pool. tests/test_serve_grpc.py checks every field against tritonclient's compiled protocol.
"""

from __future__ import annotations

import functools
from typing import Any

PACKAGE = "inference"
SERVICE = f"{PACKAGE}.GRPCInferenceService"
MAP = "map"  # a map<string, InferParameter> field

# message -> [(field, number, label, type)]; label: "" (singular) or "repeated"; type: a scalar name, a
# message name (nested ones as Outer.Inner), or MAP. Oneof members are listed in ONEOFS.
MESSAGES: dict[str, list[tuple[str, int, str, str]]] = {
    "ServerLiveRequest": [],
    "ServerLiveResponse": [("live", 1, "", "bool")],
    "ServerReadyRequest": [],
    "ServerReadyResponse": [("ready", 1, "", "bool")],
    "ModelReadyRequest": [("name", 1, "", "string"), ("version", 2, "", "string")],
    "ModelReadyResponse": [("ready", 1, "", "bool")],
    "ServerMetadataRequest": [],
    "ServerMetadataResponse": [("name", 1, "", "string"), ("version", 2, "", "string"),
                               ("extensions", 3, "repeated", "string")],
    "ModelMetadataRequest": [("name", 1, "", "string"), ("version", 2, "", "string")],
    "ModelMetadataResponse": [("name", 1, "", "string"), ("versions", 2, "repeated", "string"),
                              ("platform", 3, "", "string"),
                              ("inputs", 4, "repeated", "ModelMetadataResponse.TensorMetadata"),
                              ("outputs", 5, "repeated", "ModelMetadataResponse.TensorMetadata")],
    "ModelMetadataResponse.TensorMetadata": [("name", 1, "", "string"), ("datatype", 2, "", "string"),
                                             ("shape", 3, "repeated", "int64")],
    "ModelInferRequest": [("model_name", 1, "", "string"), ("model_version", 2, "", "string"),
                          ("id", 3, "", "string"), ("parameters", 4, "", MAP),
                          ("inputs", 5, "repeated", "ModelInferRequest.InferInputTensor"),
                          ("outputs", 6, "repeated", "ModelInferRequest.InferRequestedOutputTensor"),
                          ("raw_input_contents", 7, "repeated", "bytes")],
    "ModelInferRequest.InferInputTensor": [("name", 1, "", "string"), ("datatype", 2, "", "string"),
                                           ("shape", 3, "repeated", "int64"), ("parameters", 4, "", MAP),
                                           ("contents", 5, "", "InferTensorContents")],
    "ModelInferRequest.InferRequestedOutputTensor": [("name", 1, "", "string"), ("parameters", 2, "", MAP)],
    "ModelInferResponse": [("model_name", 1, "", "string"), ("model_version", 2, "", "string"),
                           ("id", 3, "", "string"), ("parameters", 4, "", MAP),
                           ("outputs", 5, "repeated", "ModelInferResponse.InferOutputTensor"),
                           ("raw_output_contents", 6, "repeated", "bytes")],
    "ModelInferResponse.InferOutputTensor": [("name", 1, "", "string"), ("datatype", 2, "", "string"),
                                             ("shape", 3, "repeated", "int64"), ("parameters", 4, "", MAP),
                                             ("contents", 5, "", "InferTensorContents")],
    "InferParameter": [("bool_param", 1, "", "bool"), ("int64_param", 2, "", "int64"),
                       ("string_param", 3, "", "string")],
    "InferTensorContents": [("bool_contents", 1, "repeated", "bool"), ("int_contents", 2, "repeated", "int32"),
                            ("int64_contents", 3, "repeated", "int64"), ("uint_contents", 4, "repeated", "uint32"),
                            ("uint64_contents", 5, "repeated", "uint64"), ("fp32_contents", 6, "repeated", "float"),
                            ("fp64_contents", 7, "repeated", "double"), ("bytes_contents", 8, "repeated", "bytes")],
}
ONEOFS = {"InferParameter": "parameter_choice"}  # every field of the message is in the oneof
# rpc -> (request, response)
METHODS = {name: (f"{name}Request", f"{name}Response") for name in
           ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")}


def _file_descriptor() -> Any:
    from google.protobuf import descriptor_pb2

    field_type = descriptor_pb2.FieldDescriptorProto
    scalars = {"bool": field_type.TYPE_BOOL, "string": field_type.TYPE_STRING, "bytes": field_type.TYPE_BYTES,
               "int32": field_type.TYPE_INT32, "int64": field_type.TYPE_INT64, "uint32": field_type.TYPE_UINT32,
               "uint64": field_type.TYPE_UINT64, "float": field_type.TYPE_FLOAT, "double": field_type.TYPE_DOUBLE}
    file = descriptor_pb2.FileDescriptorProto(name="bninception/kserve_v2.proto", package=PACKAGE, syntax="proto3")
    built: dict[str, Any] = {}
    for full in MESSAGES:  # outer messages come before their nested ones in the table
        outer, _, inner = full.rpartition(".")
        message = (built[outer].nested_type if outer else file.message_type).add(name=inner)
        built[full] = message
        oneof = ONEOFS.get(full)
        if oneof:
            message.oneof_decl.add(name=oneof)
        for name, number, label, kind in MESSAGES[full]:
            field = message.field.add(name=name, number=number, json_name=name,
                                      label=field_type.LABEL_REPEATED if label else field_type.LABEL_OPTIONAL)
            if oneof:
                field.oneof_index = 0
            if kind == MAP:
                entry = message.nested_type.add(name="ParametersEntry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, json_name="key", type=field_type.TYPE_STRING,
                                label=field_type.LABEL_OPTIONAL)
                entry.field.add(name="value", number=2, json_name="value", type=field_type.TYPE_MESSAGE,
                                type_name=f".{PACKAGE}.InferParameter", label=field_type.LABEL_OPTIONAL)
                field.label = field_type.LABEL_REPEATED
                field.type = field_type.TYPE_MESSAGE
                field.type_name = f".{PACKAGE}.{full}.ParametersEntry"
            elif kind in scalars:
                field.type = scalars[kind]
            else:
                field.type = field_type.TYPE_MESSAGE
                field.type_name = f".{PACKAGE}.{kind}"
    return file


@functools.cache
def message_classes() -> dict[str, type]:
    """Every message of the table by its name (``ModelInferRequest``, ``ModelInferRequest.InferInputTensor``)."""
    from google.protobuf import descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in MESSAGES}
