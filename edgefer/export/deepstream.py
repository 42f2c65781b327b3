"""NVIDIA DeepStream bundle: the classifier as a secondary ``Gst-nvinfer`` on the faces a primary detector finds.

``write_bundle`` writes, next to the staged FP32 ONNX:

- ``model.deepstream.onnx``: the graph whose output is probabilities (a Softmax appended when the spec says
  logits), spec embedded with ``output: probabilities``; nvinfer's default classifier parser takes the largest
  output above ``classifier-threshold`` as a probability, so logits there would be wrong silently;
- ``config_infer_secondary_edgefer.txt``: the nvinfer key-file (``[property]``) with the preprocessing derived
  from the spec (``preprocessing``), ``network-type=1`` (classifier), ``process-mode=2`` (secondary),
  ``network-mode`` (0 FP32, 2 FP16, 1 INT8 with ``int8-calib-file``), ``infer-dims``, ``output-blob-names``,
  ``classifier-threshold``, ``operate-on-gie-id`` / ``operate-on-class-ids`` (the face class of the detector);
- ``labels.txt``: nvinfer's classifier label file: ONE line per output layer, the labels of that layer
  separated by ``;`` (``InferPostprocessor::parseLabelsFile``);
- ``model.int8.calib`` (INT8): the TensorRT calibration cache (``edgefer.export.trt_cache``, header for
  TensorRT 10.3 / JetPack 6) for the probability graph, from which TensorRT builds the implicit INT8 engine;
- ``deepstream_app_edgefer.txt``: ``[primary-gie]`` (a stub for the face detector) and ``[secondary-gie0]``
  groups to merge into a ``deepstream-app`` config; ``README.md``: how to wire it.

Every key written is one of NVIDIA's documented properties (``NVINFER_KEYS``, ``APP_GIE_KEYS``), checked against:
the Gst-nvinfer plugin guide (property table and the pre-processing function ``y = net-scale-factor * (x -
mean)``, mean = ``offsets[c]``), https://docs.nvidia.com/metropolis/deepstream/dev-guide/text/DS_plugin_gst-nvinfer.html ;
DeepStream 6.2's ``sources/gst-plugins/gst-nvinfer/gstnvinfer_property_parser.h`` / ``.cpp`` (key names, value
ranges: model-color-format 0 RGB / 1 BGR / 2 GRAY, network-mode 0 FP32 / 1 INT8 / 2 FP16, network-type 1
classifier, process-mode 1 primary / 2 secondary, infer-dims ``c;h;w``, network-input-order 0 NCHW / 1 NHWC,
scaling-filter = ``NvBufSurfTransform_Inter``, 1 bilinear); ``sources/libs/nvdsinfer/`` (label file format, the
classifier's ``probability > classifier-threshold`` test, the ``IInt8EntropyCalibrator2`` that reads
``int8-calib-file``, the engine file name ``<onnx>_b<batch>_gpu<id>_<mode>.engine``) and
``sources/apps/apps-common/src/deepstream_config_file_parser.c`` (``[primary-gie]`` / ``[secondary-gie<n>]`` keys).

net-scale-factor is ONE scalar for every channel (there is no per-channel scale in nvinfer), so a spec whose
std differs between channels is refused (``ExportError``) rather than approximated.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ExportError
from ..spec import ModelSpec

MODEL_FILE = "model.deepstream.onnx"
CONFIG_FILE = "config_infer_secondary_edgefer.txt"
APP_FILE = "deepstream_app_edgefer.txt"
LABELS_FILE = "labels.txt"
CALIB_FILE = "model.int8.calib"
README_FILE = "README.md"
PROBABILITIES = "probabilities"  # the output tensor the Softmax writes

MODEL_COLOR_FORMAT = {"rgb": 0, "bgr": 1, "gray": 2}
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}
NETWORK_MODE_NAME = {"fp32": "fp32", "int8": "int8", "fp16": "fp16"}  # networkMode2Str in nvdsinfer
NETWORK_INPUT_ORDER = {"nchw": 0, "nhwc": 1}
SCALING_FILTER_BILINEAR = 1  # NvBufSurfTransformInter_Bilinear: training resizes bilinearly
DETECTOR_GIE_ID, CLASSIFIER_GIE_ID, FACE_CLASS_ID = 1, 2, 0
DEFAULT_THRESHOLD = 0.0  # nvinfer keeps the top class only when its probability is > this: 0.0 labels every face
STD_RTOL = 1e-6  # std values closer than this (relative) count as one scale

# [property] keys of Gst-nvinfer (gstnvinfer_property_parser.h, DeepStream 6.2); the bundle writes a subset
NVINFER_KEYS = frozenset({
    "gie-unique-id", "process-mode", "interval", "labelfile-path", "gpu-id", "secondary-reinfer-interval",
    "output-tensor-meta", "enable-dla", "use-dla-core", "batch-size", "tensor-meta-pool-size", "network-mode",
    "model-engine-file", "int8-calib-file", "workspace-size", "output-blob-names", "is-classifier", "network-type",
    "force-implicit-batch-dim", "infer-dims", "output-io-formats", "layer-device-precision", "model-color-format",
    "net-scale-factor", "offsets", "mean-file", "maintain-aspect-ratio", "symmetric-padding", "scaling-filter",
    "scaling-compute-hw", "network-input-order", "input-tensor-from-meta", "custom-lib-path", "parse-bbox-func-name",
    "parse-bbox-instance-mask-func-name", "engine-create-func-name", "parse-classifier-func-name",
    "custom-network-config", "model-file", "proto-file", "uff-file", "uff-input-order", "input-dims",
    "uff-input-dims", "uff-input-blob-name", "tlt-encoded-model", "tlt-model-key", "onnx-file",
    "num-detected-classes", "enable-dbscan", "cluster-mode", "classifier-type", "classifier-threshold",
    "classifier-async-mode", "segmentation-threshold", "segmentation-output-order", "output-instance-mask",
    "input-object-min-width", "input-object-min-height", "input-object-max-width", "input-object-max-height",
    "operate-on-gie-id", "operate-on-class-ids", "filter-out-class-ids",
})
# keys of deepstream-app's [primary-gie] / [secondary-gie<n>] groups (deepstream_config_file_parser.c)
APP_GIE_KEYS = frozenset({
    "enable", "gpu-id", "nvbuf-memory-type", "input-tensor-meta", "batch-size", "model-engine-file", "config-file",
    "labelfile-path", "plugin-type", "gie-unique-id", "operate-on-gie-id", "bbox-border-color", "bbox-bg-color",
    "operate-on-class-ids", "interval", "infer-raw-output-dir",
})


@dataclass(frozen=True)
class Preprocessing:
    """nvinfer's pre-processing for a spec: ``y[c] = net_scale_factor * (x[c] - offsets[c])`` on 0..255 pixels
    of the crop scaled to the network size, in ``model-color-format`` channel order."""

    net_scale_factor: float
    offsets: tuple[float, ...]
    model_color_format: int
    network_input_order: int

    def apply(self, planes: np.ndarray) -> np.ndarray:
        """The formula on uint8 planes (N, C, H, W), in float64: what nvinfer feeds the network."""
        offsets = np.asarray(self.offsets, np.float64).reshape(1, -1, 1, 1)
        return self.net_scale_factor * (np.asarray(planes, np.float64) - offsets)


def preprocessing(spec: ModelSpec) -> Preprocessing:
    """nvinfer's pre-processing that equals ``edgefer.preprocess.prepare`` for ``spec``.

    ``prepare`` computes ``(x / 255 - mean[c]) / std[c]`` = ``(x - 255 mean[c]) / (255 std[c])``, so
    ``offsets[c] = 255 mean[c]`` and ``net-scale-factor = 1 / (255 std)``: one scalar, hence one std.
    """
    std = spec.std
    if max(std) - min(std) > STD_RTOL * max(std):
        raise ExportError(
            f"--target deepstream: the spec's std differs per channel ({', '.join(f'{s:g}' for s in std)}), but "
            f"nvinfer has one net-scale-factor for every channel (y = net-scale-factor * (x - offsets[c])); "
            f"export a model trained with one std for all channels, or fold 1/std[c] into its first convolution")
    if spec.color_order == "gray" and spec.channels != 1:
        raise ExportError(
            f"--target deepstream: a gray network with {spec.channels} input channels; nvinfer feeds gray as one "
            f"channel (model-color-format=2) and RGB/BGR as three different planes: export it with channels 1")
    return Preprocessing(net_scale_factor=1.0 / (255.0 * std[0]), offsets=tuple(255.0 * m for m in spec.mean),
                         model_color_format=MODEL_COLOR_FORMAT[spec.color_order],
                         network_input_order=NETWORK_INPUT_ORDER[spec.layout or "nchw"])


def label_lines(labels) -> str:
    """nvinfer's classifier label file for one output layer: the labels on one line, separated by ``;``."""
    bad = [label for label in labels if ";" in label or "\n" in label or "\r" in label]
    if bad:
        raise ExportError(f"--target deepstream: label(s) {bad!r} contain ';' or a line break, which nvinfer's "
                          f"label file uses as separators; rename them in the spec (sidecar)")
    return ";".join(labels) + "\n"


def probability_graph(fp32_onnx: str | Path, out_path: str | Path, spec: ModelSpec) -> tuple[ModelSpec, dict]:
    """Write ``fp32_onnx`` with probabilities as its output (a Softmax over the classes appended when the spec
    says logits; probabilities and sigmoid scores unchanged); return (its spec, report)."""
    import onnx
    from onnx import helper

    from .onnx import save_onnx

    proto = onnx.load(str(fp32_onnx))
    graph = proto.graph
    if len(graph.output) != 1:
        raise ExportError(f"{fp32_onnx}: expected one output, got {len(graph.output)}")
    output = graph.output[0]
    info = {"source_output": output.name, "output_kind": spec.output}
    if spec.output == "logits":
        new = onnx.ValueInfoProto()
        new.CopyFrom(output)
        new.name = PROBABILITIES if output.name != PROBABILITIES else PROBABILITIES + "_softmax"
        graph.node.append(helper.make_node("Softmax", [output.name], [new.name], axis=1, name="edgefer_softmax"))
        graph.output.remove(output)
        graph.output.append(new)
        info["softmax_appended"] = True
    else:
        info["softmax_appended"] = False
    out_spec = spec.replace(output="probabilities" if spec.output == "logits" else spec.output)
    save_onnx(proto, out_path, out_spec)
    info["output"] = graph.output[0].name
    return out_spec, info


def _number(value: float) -> str:
    """A float as nvinfer's g_key_file_get_double reads it back exactly (shortest round-trip form)."""
    text = repr(float(value))
    return text if "e" in text or "." in text else text + ".0"


def nvinfer_config(spec: ModelSpec, *, input_name: str, output_name: str, precision: str, batch_size: int,
                   threshold: float = DEFAULT_THRESHOLD, dla_core: int | None = None) -> str:
    """The nvinfer config file (GKeyFile) of the secondary classifier, paths relative to the file itself."""
    pre = preprocessing(spec)
    if not 0.0 <= threshold < 1.0:
        raise ExportError(f"classifier threshold {threshold:g} is outside [0, 1): it is compared with a probability")
    engine = f"{MODEL_FILE}_b{batch_size}_{'dla' if dla_core is not None else 'gpu'}" \
             f"{dla_core if dla_core is not None else 0}_{NETWORK_MODE_NAME[precision]}.engine"
    lines = [
        "# Gst-nvinfer config: edgefer emotion classifier as a SECONDARY classifier on the faces of the primary",
        "# detector (gie-unique-id 1, class 0 = face). Written by `edgefer export --target deepstream`; README.md.",
        f"# Pre-processing: y = net-scale-factor * (x - offsets[c]) = (x / 255 - mean) / std, mean "
        f"{[round(m, 6) for m in spec.mean]}, std {[round(s, 6) for s in spec.std]} ({spec.color_order}).",
        "[property]",
        "gpu-id=0",
        f"onnx-file={MODEL_FILE}",
        "# built by nvinfer on the first start (TensorRT on the device), reused afterwards",
        f"model-engine-file={engine}",
        f"labelfile-path={LABELS_FILE}",
    ]
    if precision == "int8":
        lines.append(f"int8-calib-file={CALIB_FILE}")
    lines += [
        f"batch-size={batch_size}",
        "# 0=FP32, 1=INT8, 2=FP16",
        f"network-mode={NETWORK_MODE[precision]}",
        "# 1=classifier",
        "network-type=1",
        "# 2=secondary: runs on the objects (faces) of operate-on-gie-id",
        "process-mode=2",
        f"gie-unique-id={CLASSIFIER_GIE_ID}",
        f"operate-on-gie-id={DETECTOR_GIE_ID}",
        f"operate-on-class-ids={FACE_CLASS_ID}",
        "# 0=RGB, 1=BGR, 2=GRAY",
        f"model-color-format={pre.model_color_format}",
        f"net-scale-factor={_number(pre.net_scale_factor)}",
        f"offsets={';'.join(_number(o) for o in pre.offsets)}",
        f"infer-dims={spec.channels};{spec.input_size};{spec.input_size}",
        "# 0=NCHW, 1=NHWC",
        f"network-input-order={pre.network_input_order}",
        "# edgefer stretches the face crop to the network size, bilinearly (NvBufSurfTransformInter_Bilinear)",
        "maintain-aspect-ratio=0",
        f"scaling-filter={SCALING_FILTER_BILINEAR}",
        f"output-blob-names={output_name}",
        "# the top class is attached when its PROBABILITY is > this (0.0: every face gets a label)",
        f"classifier-threshold={_number(threshold)}",
    ]
    if dla_core is not None:
        lines += ["enable-dla=1", f"use-dla-core={dla_core}"]
    return "\n".join(lines) + "\n"


def app_groups(batch_size: int) -> str:
    """``[primary-gie]`` (face detector stub) and ``[secondary-gie0]`` groups for a deepstream-app config."""
    return "\n".join([
        "# Merge these groups into your deepstream-app config (deepstream-app -c <config>); add [tracker] so",
        "# nvinfer classifies each tracked face once instead of every frame. Paths are relative to that config.",
        "",
        "# The face detector: any nvinfer detector whose class 0 is 'face'. STUB: point config-file at its config.",
        "[primary-gie]",
        "enable=1",
        "gpu-id=0",
        f"gie-unique-id={DETECTOR_GIE_ID}",
        "batch-size=1",
        "config-file=config_infer_primary_face_detector.txt",
        "",
        "# edgefer's emotion classifier on every detected face",
        "[secondary-gie0]",
        "enable=1",
        "gpu-id=0",
        f"gie-unique-id={CLASSIFIER_GIE_ID}",
        f"operate-on-gie-id={DETECTOR_GIE_ID}",
        f"operate-on-class-ids={FACE_CLASS_ID}",
        f"batch-size={batch_size}",
        f"config-file={CONFIG_FILE}",
    ]) + "\n"


def check_config(text: str, allowed=NVINFER_KEYS, source: str = CONFIG_FILE) -> configparser.ConfigParser:
    """Parse a key-file as configparser reads it and refuse any key NVIDIA does not document (tests, export)."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str  # keep keys as written
    parser.read_string(text, source=source)
    for section in parser.sections():
        unknown = sorted(set(parser[section]) - allowed)
        if unknown:
            raise ExportError(f"{source} [{section}]: undocumented key(s) {', '.join(unknown)}")
    return parser


def write_bundle(stage: Path, fp32_onnx: Path, spec: ModelSpec, precision: str, *, calib=None, method: str =
                 "moving-average", batch_size: int = 32, calib_batch_size: int = 32,
                 threshold: float = DEFAULT_THRESHOLD, dla_core: int | None = None, out_dir: Path | None = None) -> \
        tuple[Path, dict]:
    """Write the DeepStream bundle into ``stage`` (see the module docstring); return (the probability ONNX,
    report). ``calib``: the ``CalibrationSet`` (INT8: ranges collected with ``method`` for the cache)."""
    from .onnx import io_names

    if precision not in NETWORK_MODE:
        raise ExportError(f"--target deepstream: precision {precision!r} is not supported (fp32, fp16, int8)")
    if spec.batch is not None:
        batch_size = spec.batch  # a fixed-batch graph runs exactly that batch
    pre = preprocessing(spec)  # refuses before any file is written
    labels = label_lines(spec.labels)
    model = stage / MODEL_FILE
    prob_spec, graph_info = probability_graph(fp32_onnx, model, spec)
    input_name, output_name = io_names(model)
    report: dict = {"deepstream": {
        "model": MODEL_FILE, "config": CONFIG_FILE, "labels": LABELS_FILE, "app_groups": APP_FILE,
        "network_mode": NETWORK_MODE[precision], "batch_size": batch_size, "classifier_threshold": threshold,
        "net_scale_factor": pre.net_scale_factor, "offsets": list(pre.offsets),
        "model_color_format": pre.model_color_format, "graph": graph_info}}
    if precision == "int8":
        if calib is None:
            raise ExportError("--target deepstream --int8 needs calibration images: --data PATH or --calib BUNDLE")
        from .act_ranges import collect_ranges
        from .calibration import Batches
        from .trt_cache import DEFAULT_TENSORRT, write_cache

        ranges = collect_ranges(model, Batches(calib.images, prob_spec, calib_batch_size), method=method,
                                desc=f"calibrate DeepStream INT8 ({method})")
        write_cache(stage / CALIB_FILE, ranges.amax)
        report["deepstream"]["int8_calib_file"] = {"file": CALIB_FILE, "tensors": len(ranges.amax),
                                                   "calib_method": method, "calib_images": len(calib.images),
                                                   "tensorrt": DEFAULT_TENSORRT}
    config = nvinfer_config(prob_spec, input_name=input_name, output_name=output_name, precision=precision,
                            batch_size=batch_size, threshold=threshold, dla_core=dla_core)
    check_config(config)
    app = app_groups(batch_size)
    check_config(app, APP_GIE_KEYS, APP_FILE)
    (stage / CONFIG_FILE).write_text(config, encoding="utf-8")
    (stage / LABELS_FILE).write_text(labels, encoding="utf-8")
    (stage / APP_FILE).write_text(app, encoding="utf-8")
    (stage / README_FILE).write_text(_readme(prob_spec, precision, graph_info, pre, batch_size, out_dir),
                                     encoding="utf-8")
    return model, report


def run_step(ctx) -> tuple[Path, dict]:
    """The export step (``edgefer.export.steps``): ``ctx`` is its ``StepContext``; (model file, conversion report)."""
    config = ctx.config
    if config.search.enabled:
        raise ExportError("--max-drop does not apply to --target deepstream: nvinfer builds an implicit INT8 engine "
                          "from the calibration cache; search with --target tensorrt --int8 --max-drop instead")
    if config.quant.keep_fp:
        raise ExportError("--keep-fp does not apply to --target deepstream: in implicit INT8 TensorRT chooses the "
                          "INT8 layers itself from the calibration cache")
    engine = getattr(config, "engine", None)
    batch = engine.max_batch if engine is not None else 32
    dla = engine.dla_core if engine is not None else None
    model, report = write_bundle(ctx.stage, ctx.fp32_onnx, ctx.spec, config.precision, calib=ctx.calib,
                                 method=config.quant.method, batch_size=batch, calib_batch_size=config.quant.batch_size,
                                 dla_core=dla, out_dir=ctx.out_dir)
    report["deepstream"]["probabilities_check"] = probabilities_check(model, ctx.images, ctx.spec, ctx.reference)
    return model, report


def probabilities_check(prob_onnx: Path, images, spec: ModelSpec, reference_logits) -> dict:
    """Run the probability graph on the check images and compare with softmax(reference) (the FP32 graph)."""
    from .check import logits as run

    probs = run(prob_onnx, images, spec, desc=f"check {prob_onnx.name}")
    ref = np.asarray(reference_logits, np.float64)
    if spec.output == "logits":
        ref = np.exp(ref - ref.max(1, keepdims=True))
        ref /= ref.sum(1, keepdims=True)
    diff = np.abs(probs.astype(np.float64) - ref)
    return {"n": int(len(probs)), "max_abs_prob_diff": float(diff.max()) if diff.size else 0.0,
            "rows_sum_to_one": bool(np.allclose(probs.sum(1), 1.0, atol=1e-4)) if spec.output == "logits" else None}


def _readme(spec: ModelSpec, precision: str, graph_info: dict, pre: Preprocessing, batch_size: int,
            out_dir: Path | None) -> str:
    where = str(out_dir) if out_dir is not None else "<this folder>"
    mean = ", ".join(f"{m:g}" for m in spec.mean)
    std = ", ".join(f"{s:g}" for s in spec.std)
    color = {0: "RGB", 1: "BGR", 2: "GRAY"}[pre.model_color_format]
    int8 = ""
    if precision == "int8":
        int8 = f"""
## INT8

`network-mode=1` with `int8-calib-file={CALIB_FILE}`: TensorRT's implicit INT8 (TensorRT 10.x, JetPack 6),
calibrated by edgefer on a stratified set of faces ({CALIB_FILE} holds one scale per tensor of
`{MODEL_FILE}`). Its first line names the TensorRT version it was written for (`TRT-100300-...` = 10.3.0,
JetPack 6.1/6.2); TensorRT refuses a cache for another version. On another TensorRT, change only that number
(`major*10000 + minor*100 + patch`, e.g. 10.7.0 -> 100700), e.g.
`sed -i '1s/^TRT-[0-9]*-/TRT-100700-/' {CALIB_FILE}`. TensorRT 11 has no implicit INT8: use
`edgefer export --target tensorrt --int8` (explicit Q/DQ graph) there.
"""
    return f"""# edgefer emotion classifier for DeepStream (Gst-nvinfer, secondary classifier)

Written by `edgefer export --target deepstream` ({precision}). Nothing here was run in DeepStream by edgefer:
DeepStream and TensorRT run on the Jetson / NVIDIA GPU host.

| file | what |
|---|---|
| `{MODEL_FILE}` | the network, output `{graph_info['output']}` = probabilities{' (Softmax appended to the logits)' if graph_info['softmax_appended'] else ''} |
| `{CONFIG_FILE}` | nvinfer config: secondary classifier (`process-mode=2`, `network-type=1`) on class {FACE_CLASS_ID} of `gie-unique-id` {DETECTOR_GIE_ID} |
| `{LABELS_FILE}` | labels, one line separated by `;` (nvinfer's classifier format) |
| `{APP_FILE}` | `[primary-gie]` (face detector stub) and `[secondary-gie0]` groups for `deepstream-app` |
{'| `' + CALIB_FILE + '` | TensorRT INT8 calibration cache |' if precision == 'int8' else ''}

## Pre-processing (exactly edgefer's)

nvinfer computes `y = net-scale-factor * (x - offsets[c])` on the face crop scaled to
{spec.input_size}x{spec.input_size} ({color}, `model-color-format={pre.model_color_format}`). edgefer's
spec (mean {mean}, std {std}) gives `net-scale-factor = 1 / (255 * std) = {pre.net_scale_factor!r}` and
`offsets = 255 * mean = {';'.join(_number(o) for o in pre.offsets)}`.

## Wire it into deepstream-app

1. Copy this folder next to your deepstream-app config (or use absolute paths).
2. Merge `{APP_FILE}` into that config and point `[primary-gie] config-file` at your face detector's nvinfer
   config (a detector whose class {FACE_CLASS_ID} is the face; its `gie-unique-id` must be {DETECTOR_GIE_ID}).
3. `deepstream-app -c <config>`. The first start builds the TensorRT engine
   (`model-engine-file`, batch {batch_size}) from `{MODEL_FILE}` and saves it; later starts reuse it.

Or in a GStreamer pipeline:
`... ! nvstreammux ! nvinfer config-file-path=<face detector config> ! nvtracker ... ! nvinfer
config-file-path={where}/{CONFIG_FILE} ! nvdsosd ! ...`

Each face object gets a classifier label (`NvDsClassifierMeta`) when its top probability is above
`classifier-threshold` (0.0 here: every face). Raise it (e.g. 0.5) to leave uncertain faces unlabelled.
{int8}"""
