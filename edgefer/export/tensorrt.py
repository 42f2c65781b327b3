"""TensorRT engines from the TensorRT-ready ONNX graphs (FP32, FP16 with FP32 I/O, INT8 Q/DQ).

TensorRT 10.x (JetPack 6 ships 10.3) builds weakly typed networks: precision comes from builder flags
(FP16; INT8 + FP16 for a Q/DQ graph, the Q/DQ nodes carry the scales, no calibrator). TensorRT 11.x only
builds strongly typed networks: the types in the graph decide and there are no precision flags. Both get an
optimisation profile for the dynamic batch, a workspace limit, a reusable timing cache and optional DLA.
Implicit INT8 (TensorRT 10.x only, the INT8 path of DLA there): the FP32 graph plus a calibration cache
(``trt_cache``), read by a calibrator that never asks for data (``cache_calibrator``).
Without ``tensorrt`` the same build is described as an ``edgefer build-engine`` and a ``trtexec`` command.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ExportError, require
from ..fileio import atomic_path, sha256_file, write_bytes, write_json
from ..spec import METADATA_KEY, ModelSpec, sidecar_path

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class EngineOptions:
    """How to build an engine; ``validate`` raises one ExportError naming the bad option."""

    precision: str = "fp16"
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    workspace_mb: int = 1024
    timing_cache: str | None = None
    dla_core: int | None = None
    strongly_typed: bool | None = None  # None: TensorRT 11+ yes, 10.x no
    calib_cache: str | None = None  # TensorRT calibration cache: implicit INT8 of an FP32 graph (TensorRT 10.x)
    allow_gpu_fallback: bool = True  # DLA: layers DLA cannot run go to the GPU (False: the build fails instead)

    def validate(self) -> EngineOptions:
        if self.precision not in PRECISIONS:
            raise ExportError(f"engine precision {self.precision!r} is not supported; use one of {', '.join(PRECISIONS)}")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ExportError(f"--batch must satisfy 1 <= min <= opt <= max, got "
                              f"{self.min_batch},{self.opt_batch},{self.max_batch}")
        if self.workspace_mb < 1:
            raise ExportError(f"--workspace must be >= 1 MiB, got {self.workspace_mb}")
        if self.dla_core is not None and self.dla_core < 0:
            raise ExportError(f"--dla-core must be >= 0, got {self.dla_core}")
        if self.dla_core is not None and self.precision == "fp32":
            raise ExportError("--dla-core needs --fp16 or --int8: DLA has no FP32 kernels")
        if self.dla_core is not None and not self.min_batch == self.opt_batch == self.max_batch:
            raise ExportError(f"--dla-core needs a fixed batch (e.g. --batch {self.opt_batch}): DLA has no dynamic "
                              f"shapes, got {self.min_batch},{self.opt_batch},{self.max_batch}")
        if self.calib_cache is not None and self.precision != "int8":
            raise ExportError(f"--calib-cache needs --int8 (got {self.precision}): the cache holds INT8 scales")
        if self.calib_cache is not None and self.strongly_typed:
            raise ExportError("--calib-cache needs a weakly typed network (implicit INT8); drop --strongly-typed")
        return self


def parse_batch(text: str) -> tuple[int, int, int]:
    """``"1,8,32"`` -> (min, opt, max); a single number means a fixed batch."""
    try:
        values = [int(v) for v in str(text).split(",")]
    except ValueError:
        raise ExportError(f"--batch {text!r}: expected MIN,OPT,MAX integers, e.g. 1,8,32") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise ExportError(f"--batch {text!r}: expected MIN,OPT,MAX integers, e.g. 1,8,32")
    return values[0], values[1], values[2]


def detect_precision(onnx_path: str | Path) -> str:
    """int8 for a Q/DQ graph, fp16 for FP16 weights, else fp32 (the spec's precision when it has one)."""
    onnx = require("onnx", "onnx", "reading ONNX models")
    proto = onnx.load(str(onnx_path), load_external_data=False)
    embedded = {p.key: p.value for p in proto.metadata_props}.get(METADATA_KEY)
    if embedded:
        precision = json.loads(embedded).get("precision")
        if precision in PRECISIONS:
            return precision
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node):
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer):
        return "fp16"
    return "fp32"


def fit_to_graph(options: EngineOptions, onnx_path: str | Path) -> EngineOptions:
    """Pin the optimisation profile to the graph's batch size when its input batch dimension is static."""
    onnx = require("onnx", "onnx", "reading ONNX models")
    proto = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {t.name for t in proto.graph.initializer}
    first = next(i for i in proto.graph.input if i.name not in initializers).type.tensor_type.shape.dim[0]
    if not first.HasField("dim_value") or first.dim_value < 1:
        return options
    batch = first.dim_value
    return dataclasses.replace(options, min_batch=batch, opt_batch=batch, max_batch=batch).validate()


def engine_path_for(onnx_path: str | Path) -> Path:
    """``model.int8.qdq.onnx`` -> ``model.int8.engine``; ``model.fp16.onnx`` -> ``model.fp16.engine``."""
    name = Path(onnx_path).name.removesuffix(".onnx").removesuffix(".qdq")
    return Path(onnx_path).with_name(name + ".engine")


def _shape(batch: int, spec: ModelSpec, input_name: str) -> str:
    return f"{input_name}:{batch}x{spec.channels}x{spec.input_size}x{spec.input_size}"


def trtexec_command(onnx_path, engine_path, spec: ModelSpec, options: EngineOptions, input_name: str = "input",
                    tensorrt_major: int = 10) -> str:
    """The ``trtexec`` line that builds the same engine as ``build_engine`` (for TensorRT 10.x or 11.x)."""
    args = [
        "trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
        f"--minShapes={_shape(options.min_batch, spec, input_name)}",
        f"--optShapes={_shape(options.opt_batch, spec, input_name)}",
        f"--maxShapes={_shape(options.max_batch, spec, input_name)}",
        f"--memPoolSize=workspace:{options.workspace_mb}M",
    ]
    if _strongly_typed(options, tensorrt_major):
        args.append("--stronglyTyped")
    else:
        args += {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}[options.precision]
        if options.calib_cache:
            args.append(f"--calib={options.calib_cache}")
    if options.timing_cache:
        args.append(f"--timingCacheFile={options.timing_cache}")
    if options.dla_core is not None:
        args.append(f"--useDLACore={options.dla_core}")
        if options.allow_gpu_fallback:
            args.append("--allowGPUFallback")
    return shlex.join(str(a) for a in args)


def implicit_int8_commands(fp32_onnx, calib_cache, engine_path, spec: ModelSpec, options: EngineOptions,
                           input_name: str = "input") -> dict:
    """The TensorRT 10.x implicit-INT8 build (FP32 graph + calibration cache; what DLA needs on JetPack 6):
    the ``edgefer build-engine`` and ``trtexec`` lines. TensorRT 11 has no implicit INT8: it builds the Q/DQ graph."""
    options = dataclasses.replace(options, precision="int8", calib_cache=str(calib_cache), strongly_typed=False).validate()
    return {"build_engine_command": build_engine_command(fp32_onnx, engine_path, options),
            "trtexec_command": trtexec_command(fp32_onnx, engine_path, spec, options, input_name, 10)}


def build_engine_command(onnx_path, engine_path, options: EngineOptions) -> str:
    """The ``edgefer build-engine`` line to run on the target device."""
    args = ["edgefer", "build-engine", str(onnx_path), "--out", str(engine_path), f"--{options.precision}",
            "--batch", f"{options.min_batch},{options.opt_batch},{options.max_batch}",
            "--workspace", str(options.workspace_mb)]
    if options.calib_cache:
        args += ["--calib-cache", options.calib_cache]
    if options.timing_cache:
        args += ["--timing-cache", options.timing_cache]
    if options.dla_core is not None:
        args += ["--dla-core", str(options.dla_core)]
        if not options.allow_gpu_fallback:
            args.append("--no-gpu-fallback")
    return shlex.join(args)


def _strongly_typed(options: EngineOptions, tensorrt_major: int) -> bool:
    return tensorrt_major >= 11 if options.strongly_typed is None else options.strongly_typed


class EngineWarning(UserWarning):
    """A build that runs but probably not as meant (an INT8 engine with nothing to take INT8 scales from)."""


def has_qdq(onnx_path: str | Path) -> bool:
    onnx = require("onnx", "onnx", "reading ONNX models")
    proto = onnx.load(str(onnx_path), load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node)


def check_int8_source(onnx_path: str | Path, options: EngineOptions, tensorrt_major: int) -> None:
    """INT8 needs scales from somewhere: Q/DQ nodes (explicit) or a calibration cache (implicit, TensorRT 10.x).
    Raises for combinations TensorRT refuses; warns (``EngineWarning``) when INT8 has no scales at all."""
    if options.precision != "int8":
        return
    qdq = has_qdq(onnx_path)
    if options.calib_cache and tensorrt_major >= 11:
        raise ExportError(f"--calib-cache: TensorRT {tensorrt_major}.x has no implicit INT8 (calibration caches); "
                          f"build the Q/DQ graph (model.int8.qdq.onnx) without --calib-cache")
    if options.calib_cache and qdq:
        raise ExportError(f"{onnx_path}: --calib-cache is for the FP32 graph (model.onnx); this graph has Q/DQ "
                          f"nodes, whose scales TensorRT uses instead; drop --calib-cache or pass model.onnx")
    if not options.calib_cache and not qdq:
        warnings.warn(f"{onnx_path}: --int8 on a graph without Q/DQ nodes and without --calib-cache: TensorRT has no "
                      f"INT8 scales and keeps every layer in FP16/FP32; build model.int8.qdq.onnx, or pass "
                      f"--calib-cache model.int8.calib (TensorRT 10.x)", EngineWarning, stacklevel=2)


def cache_calibrator(trt, cache: bytes, batch_size: int = 1):
    """An ``IInt8EntropyCalibrator2`` that serves ``cache`` (header already for this TensorRT) and no data:
    TensorRT reads the scales from the cache and never runs a calibration pass."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cache, self.batch_size, self.batches_requested = cache, batch_size, 0

        def get_batch_size(self):
            return self.batch_size

        def get_batch(self, names):
            self.batches_requested += 1
            return None  # no calibration data: everything comes from the cache

        def read_calibration_cache(self):
            return self.cache

        def write_calibration_cache(self, cache):
            return None

    return CacheCalibrator()


def _read_cache_for(trt, path: str) -> tuple[bytes, int]:
    """The cache's bytes with the header of the running TensorRT (and EntropyCalibration2); its tensor count."""
    from .trt_cache import read_cache, retarget

    cache = retarget(read_cache(path), trt.__version__)
    return cache.to_text().encode("ascii"), len(cache.scales)


def gpu_name() -> str | None:
    """The GPU the engine is built on: nvidia-smi on a desktop GPU, the device-tree model on a Jetson."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        if out:
            return out.splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    model = Path("/proc/device-tree/model")
    return model.read_text(errors="replace").strip("\x00\n ") if model.is_file() else None


def build_engine(onnx_path: str | Path, engine_path: str | Path | None = None,
                 options: EngineOptions | None = None, spec: ModelSpec | None = None,
                 sidecar: str | Path | None = None) -> dict:
    """Build a serialized engine from ``onnx_path`` with the TensorRT Python API (10.x or 11.x).

    Writes the engine and its JSON sidecar (spec, TensorRT version, GPU, profile) atomically and returns
    the sidecar content. The timing cache in ``options.timing_cache`` is loaded if present and saved after.
    """
    options = (options or EngineOptions(precision=detect_precision(onnx_path))).validate()
    trt = require("tensorrt", "tensorrt", "building TensorRT engines")
    onnx_path = Path(onnx_path)
    engine_path = Path(engine_path) if engine_path else engine_path_for(onnx_path)
    if spec is None:
        from .source import open_source

        spec = open_source(onnx_path, sidecar).spec
    major = int(trt.__version__.split(".")[0])
    strongly_typed = _strongly_typed(options, major)
    check_int8_source(onnx_path, options, major)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if strongly_typed and major < 11:  # 11.x is always strongly typed
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{onnx_path}: TensorRT {trt.__version__} cannot parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    if not strongly_typed:
        if options.precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if options.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # Q/DQ graph: scales in the nodes; FP32 graph: the cache's
    if options.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        if options.allow_gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    input_tensor = network.get_input(0)
    profile = builder.create_optimization_profile()
    shapes = [(b, spec.channels, spec.input_size, spec.input_size)
              for b in (options.min_batch, options.opt_batch, options.max_batch)]
    profile.set_shape(input_tensor.name, *shapes)
    config.add_optimization_profile(profile)
    calibration = None
    if options.calib_cache:
        cache, tensors = _read_cache_for(trt, options.calib_cache)
        calibrator = cache_calibrator(trt, cache, options.opt_batch)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
        calibration = {"calib_cache": Path(options.calib_cache).name, "calib_cache_tensors": tensors,
                       "calibrator": "IInt8EntropyCalibrator2 (cache only)"}
    cache_path = Path(options.timing_cache) if options.timing_cache else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"{onnx_path}: TensorRT {trt.__version__} failed to build the engine (see the log above)")
    seconds = round(time.perf_counter() - start, 3)
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    if cache_path:
        write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    info = {
        "spec": spec.replace(precision=options.precision).to_dict(),
        "engine": engine_path.name,
        "engine_sha256": sha256_file(engine_path),
        "source_onnx": onnx_path.name,
        "source_onnx_sha256": sha256_file(onnx_path),
        "tensorrt": trt.__version__,
        "gpu": gpu_name(),
        "strongly_typed": strongly_typed,
        "input": input_tensor.name,
        "profile": {"min": list(shapes[0]), "opt": list(shapes[1]), "max": list(shapes[2])},
        "options": asdict(options),
        "build_seconds": seconds,
        **({"calibration": calibration} if calibration else {}),
    }
    write_json(sidecar_path(engine_path), info)
    return info
