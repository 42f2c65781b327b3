"""What ``edgefer serve`` serves: a model file, one model folder of a Triton model repository
(``<name>/config.pbtxt``, ``<name>/<version>/model.onnx | model.xml | model.plan``, as ``edgefer export --target
triton`` writes it) or the whole repository. A model's ``config.pbtxt`` gives its batching defaults
(``max_batch_size``, ``max_queue_delay_microseconds``, instance ``count``); read with regular expressions, so
serving needs no protobuf."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .batching import Batcher, Stats
from .config import DEFAULT_MAX_BATCH, DEFAULT_MAX_DELAY_US, ServeConfig

MODEL_FILES = ("model.onnx", "model.xml", "model.plan")  # what Triton's onnxruntime/openvino/tensorrt_plan load
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino", "tensorrt": "tensorrt_plan"}
KINDS = {"onnxruntime": "KIND_AUTO", "openvino": "KIND_CPU", "tensorrt": "KIND_GPU"}
DEFAULT_NAME = "edgefer"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


@dataclass(frozen=True)
class ModelSource:
    """One model to serve: its name and version, the file, and the ``config.pbtxt`` batching values found."""

    name: str
    version: str
    path: Path
    max_batch: int | None = None
    max_delay_us: int | None = None
    instances: int | None = None


def _config_value(text: str, key: str) -> int | None:
    match = re.search(rf"\b{key}\s*:\s*(\d+)", text)
    return int(match.group(1)) if match else None


def _from_model_dir(folder: Path) -> ModelSource | None:
    """The newest version of the model in ``folder`` that has a model file, or None."""
    versions = sorted((int(p.name), p) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    for version, path in reversed(versions):
        for filename in MODEL_FILES:
            if (path / filename).is_file():
                text = (folder / "config.pbtxt").read_text(encoding="utf-8", errors="replace")
                batch = _config_value(text, "max_batch_size")
                return ModelSource(folder.name, str(version), path / filename,
                                   max_batch=batch or None,  # 0: a fixed-batch graph; edgefer pads to it
                                   max_delay_us=_config_value(text, "max_queue_delay_microseconds"),
                                   instances=_config_value(text, "count"))
    return None


def resolve_models(path: str | Path, name: str | None = None, sidecar: str | None = None) -> list[ModelSource]:
    """The models behind ``path`` (a model file, a repository model folder or a repository)."""
    path = Path(path)
    if path.is_file():
        name = name or DEFAULT_NAME
        if not _NAME.match(name):
            raise ModelError(f"--name {name!r}: use letters, digits, '_', '-' and '.' only")
        return [ModelSource(name, "1", path)]
    if not path.is_dir():
        raise ModelError(f"{path}: no such model file or folder")
    if name is not None:
        raise ModelError(f"--name applies to a model file; {path} is a folder (its models keep their folder names)")
    if sidecar is not None:
        raise ModelError(f"--sidecar applies to a model file; {path} is a folder (its models carry their spec)")
    if (path / "config.pbtxt").is_file():
        source = _from_model_dir(path)
        if source is None:
            raise ModelError(f"{path}: no <version>/{' | '.join(MODEL_FILES)} in this model folder")
        return [source]
    folders = sorted(p for p in path.iterdir() if (p / "config.pbtxt").is_file())
    sources = [s for s in (_from_model_dir(p) for p in folders) if s is not None]
    if not sources:
        raise ModelError(f"{path}: not a model file, a model folder (config.pbtxt) or a model repository with one")
    return sources


class ServedModel:
    """A model opened with ``edgefer.runtime`` behind a ``Batcher``, with what the protocol reports about it."""

    def __init__(self, source: ModelSource, config: ServeConfig):
        from ..runtime import EmotionRecognizer

        self.name, self.version, self.path = source.name, source.version, source.path
        self.recognizer = EmotionRecognizer.open(source.path, config.backend, device=config.device,
                                                 threads=config.threads, precision=config.precision,
                                                 sidecar=config.sidecar)
        backend = self.recognizer.backend
        self.backend_name = backend.name
        self.input_name, self.output_name = backend.input_info.name, backend.output_info.name
        self.layout = backend.layout
        c, s = backend.sample_shape[0], backend.sample_shape[1]
        self.sample_shape = (c, s, s) if self.layout == "nchw" else (s, s, c)  # what clients send: the model's layout
        self.max_batch = config.max_batch or source.max_batch or DEFAULT_MAX_BATCH
        delay = config.max_delay_us if config.max_delay_us is not None else source.max_delay_us
        self.max_delay_us = DEFAULT_MAX_DELAY_US if delay is None else delay
        self.instances = config.instances or source.instances or 1
        self.stats = Stats()
        self.batcher = Batcher(self._run, max_batch=self.max_batch, max_delay_s=self.max_delay_us / 1e6,
                               instances=self.instances, max_queue=config.max_queue, stats=self.stats,
                               name=self.name)

    @property
    def spec(self):
        return self.recognizer.spec

    def _run(self, x):
        if self.layout == "nhwc":  # the runtime takes NCHW and hands the model NHWC
            x = x.transpose(0, 3, 1, 2)
        return self.recognizer.run(x)

    def metadata(self) -> dict:
        """KServe v2 model metadata."""
        return {"name": self.name, "versions": [self.version], "platform": PLATFORMS[self.backend_name],
                "inputs": [{"name": self.input_name, "datatype": "FP32", "shape": [-1, *self.sample_shape]}],
                "outputs": [{"name": self.output_name, "datatype": "FP32", "shape": [-1, self.spec.num_classes]}]}

    def config(self) -> dict:
        """The model's configuration as Triton's ``/config`` returns it (ModelConfig as JSON), with the edgefer
        spec (preprocessing, labels, output kind) in ``parameters``."""
        from ..spec import METADATA_KEY

        platform = PLATFORMS[self.backend_name]
        return {
            "name": self.name,
            **({"platform": platform} if platform == "tensorrt_plan" else {"backend": self.backend_name}),
            "max_batch_size": self.max_batch,
            "input": [{"name": self.input_name, "data_type": "TYPE_FP32", "format": f"FORMAT_{self.layout.upper()}",
                       "dims": list(self.sample_shape)}],
            "output": [{"name": self.output_name, "data_type": "TYPE_FP32", "dims": [self.spec.num_classes],
                        "label_filename": "labels.txt"}],
            "dynamic_batching": {"max_queue_delay_microseconds": self.max_delay_us},
            "instance_group": [{"count": self.instances, "kind": KINDS[self.backend_name]}],
            "parameters": {METADATA_KEY: {"string_value": self.spec.to_json()}},
        }

    def close(self) -> None:
        self.batcher.stop()
        self.recognizer.close()
