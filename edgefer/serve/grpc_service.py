"""The gRPC endpoint of ``edgefer serve``: KServe v2 / Triton's ``inference.GRPCInferenceService`` (the service
``tritonclient.grpc`` and Triton's gRPC clients call), on grpcio with the service stubs that ship with
``tritonclient[grpc]``; both imported only when a gRPC port is asked for (``edgefer[serve]``).

Implemented: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelConfig and ModelInfer
(``raw_input_contents`` or typed ``fp32_contents``; outputs as ``raw_output_contents``; the ``classification``
parameter). Requests go through the same checks and dynamic batcher as HTTP ones; a bad request is
INVALID_ARGUMENT (NOT_FOUND for an unknown model) with the same message. Other RPCs answer UNIMPLEMENTED.
"""

from __future__ import annotations

import struct
import time
from concurrent.futures import ThreadPoolExecutor

from ..errors import UsageError, require
from .protocol import RequestError, classification

MAX_MESSAGE = 256 * 2**20
WORKERS = 64  # calls answered at once (each waits for its batch)


def start_grpc(app, host: str, port: int):
    """Start the gRPC server for ``app`` (a ModelServer) on ``host:port`` (0: a free port) -> (server, port)."""
    grpc = require("grpc", "serve", "the gRPC endpoint (--grpc-port)")
    require("tritonclient.grpc", "serve", "the gRPC endpoint (--grpc-port)")
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2, service_pb2_grpc
    from tritonclient.grpc import service_pb2 as pb

    codes = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
             405: grpc.StatusCode.UNIMPLEMENTED, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
             503: grpc.StatusCode.UNAVAILABLE}

    def answer(method):
        """Run ``method``; a RequestError becomes the gRPC status for its HTTP status, with its message."""
        def wrapped(self, request, context):
            try:
                return method(self, request, context)
            except RequestError as exc:
                context.abort(codes.get(exc.status, grpc.StatusCode.INTERNAL), str(exc))
        return wrapped

    def param(value):
        kind = value.WhichOneof("parameter_choice")
        return getattr(value, kind) if kind else None

    class Service(service_pb2_grpc.GRPCInferenceServiceServicer):
        @answer
        def ServerLive(self, request, context):
            return pb.ServerLiveResponse(live=True)

        @answer
        def ServerReady(self, request, context):
            return pb.ServerReadyResponse(ready=app.ready)

        @answer
        def ModelReady(self, request, context):
            app.model(request.name, request.version)
            return pb.ModelReadyResponse(ready=app.ready)

        @answer
        def ServerMetadata(self, request, context):
            meta = app.server_metadata()
            return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"], extensions=meta["extensions"])

        @answer
        def ModelMetadata(self, request, context):
            meta = app.model(request.name, request.version).metadata()

            def tensors(entries):
                return [pb.ModelMetadataResponse.TensorMetadata(**t) for t in entries]

            return pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                                            inputs=tensors(meta["inputs"]), outputs=tensors(meta["outputs"]))

        @answer
        def ModelConfig(self, request, context):
            config = app.model(request.name, request.version).config()
            return pb.ModelConfigResponse(config=json_format.ParseDict(config, model_config_pb2.ModelConfig()))

        @answer
        def ModelInfer(self, request, context):
            started = time.perf_counter()
            model = app.model(request.model_name, request.model_version)
            try:
                tensor = {"name": request.inputs[0].name if request.inputs else None}
                binary = memoryview(b"")
                if request.inputs:
                    entry = request.inputs[0]
                    tensor.update(datatype=entry.datatype, shape=list(entry.shape))
                    if request.raw_input_contents:
                        binary = memoryview(request.raw_input_contents[0])
                        tensor["parameters"] = {"binary_data_size": len(binary)}
                    else:
                        tensor["data"] = list(entry.contents.fp32_contents)
                outputs = [{"name": o.name, "parameters": {k: param(v) for k, v in o.parameters.items()}}
                           for o in request.outputs]
                as_dict = {"inputs": [tensor] * len(request.inputs) or [], **({"outputs": outputs} if outputs else {})}
                values, _, k = app.run_request(model, as_dict, binary)
            except RequestError:
                model.stats.request(False, time.perf_counter() - started)
                raise
            response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
            out = response.outputs.add()
            out.name = model.output_name
            if k is None:
                out.datatype, raw = "FP32", values.astype("<f4").tobytes()
                out.shape.extend(values.shape)
            else:
                strings = [s.encode() for row in classification(values, k, model.spec.labels) for s in row]
                out.datatype, raw = "BYTES", b"".join(struct.pack("<I", len(s)) + s for s in strings)
                out.shape.extend([len(values), k])
            response.raw_output_contents.append(raw)
            model.stats.request(True, time.perf_counter() - started)
            return response

    options = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]
    server = grpc.server(ThreadPoolExecutor(WORKERS, thread_name_prefix="edgefer-serve-grpc"), options=options)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Service(), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # newer grpcio raises where older ones returned 0
        raise UsageError(f"cannot listen for gRPC on {address}: {exc}") from None
    if not bound:
        raise UsageError(f"cannot listen for gRPC on {address} (in use, or no such address)")
    server.start()
    return server, bound
