"""``ServeConfig``: every option of ``edgefer serve``; the command generates its options from the field metadata
(``option``, ``help``, ``click``: ``type``, ``choices``, ``min``, ``max``). Standard library only."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..bounds import check_fields
from ..errors import UsageError

DEFAULT_MAX_BATCH = 32
DEFAULT_MAX_DELAY_US = 1000  # what `edgefer export --target triton` writes into dynamic_batching
BACKEND_CHOICES = ("onnxruntime", "openvino", "tensorrt", "onnx", "ort", "ov", "trt")
PRECISION_CHOICES = ("f32", "bf16", "f16")


def _option(declaration: str, help: str, **click_kwargs) -> dict:
    return {"option": declaration, "help": help, "click": click_kwargs}


@dataclass(frozen=True)
class ServeConfig:
    """How ``edgefer serve`` listens, opens the model(s) and batches requests. ``None`` for ``max_batch``,
    ``max_delay_us`` and ``instances``: the model's ``config.pbtxt`` when it comes from a Triton model repository,
    else the defaults (32, 1000 us, 1)."""

    host: str = field(default="127.0.0.1", metadata=_option(
        "--host", "Address to listen on (0.0.0.0: every interface).", type=str))
    port: int = field(default=8000, metadata=_option(
        "--port", "HTTP port (Triton's is 8000; 0: any free port, printed when ready).", type=int, min=0,
        max=65535))
    grpc_port: int | None = field(default=None, metadata=_option(
        "--grpc-port", "Also serve gRPC (Triton's GRPCInferenceService; Triton's port is 8001) on this port; 0: any "
        "free port. Needs grpcio and tritonclient[grpc] (edgefer[serve]).", type=int, min=0, max=65535))
    name: str | None = field(default=None, metadata=_option(
        "--name", "Model name for a model file (default: edgefer); a repository model keeps its folder's name.",
        type=str))
    backend: str | None = field(default=None, metadata=_option(
        "--backend", "Override the backend chosen from the model's suffix.", choices=BACKEND_CHOICES))
    device: str | None = field(default=None, metadata=_option(
        "--device", "cpu/cuda (ONNX Runtime), CPU/GPU (OpenVINO), cuda:N (TensorRT).", type=str))
    threads: int | None = field(default=None, metadata=_option(
        "--threads", "CPU inference threads per model (default: the runtime's).", type=int, min=1, max=1024))
    precision: str | None = field(default=None, metadata=_option(
        "--precision", "OpenVINO inference precision.", choices=PRECISION_CHOICES))
    sidecar: str | None = field(default=None, metadata=_option(
        "--sidecar", "JSON spec for a model file without embedded metadata (default: <model>.json).", exists=True))
    max_batch: int | None = field(default=None, metadata=_option(
        "--max-batch", f"Dynamic batching: most faces per inference call, and per request (default: the model's "
        f"config.pbtxt max_batch_size, else {DEFAULT_MAX_BATCH}).", type=int, min=1, max=65536))
    max_delay_us: int | None = field(default=None, metadata=_option(
        "--max-delay-us", "Dynamic batching: longest a request waits for others to join its batch, in "
        f"microseconds (default: config.pbtxt max_queue_delay_microseconds, else {DEFAULT_MAX_DELAY_US}; 0: "
        "batch only what is already waiting).", type=int, min=0, max=10_000_000))
    instances: int | None = field(default=None, metadata=_option(
        "--instances", "Batches run at once per model (Triton's instance_group count; default: config.pbtxt's, "
        "else 1).", type=int, min=1, max=64))
    max_queue: int = field(default=1024, metadata=_option(
        "--max-queue", "Requests waiting per model beyond which new ones get HTTP 503.", type=int, min=1,
        max=1_000_000))

    def __post_init__(self):
        check_fields(self, UsageError)
        for name, choices in (("backend", BACKEND_CHOICES), ("precision", PRECISION_CHOICES)):
            value = getattr(self, name)
            if value is not None and value not in choices:
                raise UsageError(f"--{name} {value!r}: use one of {', '.join(choices)}")
