"""``ExportResult``: what an export produced, typed; its JSON form is ``export.json`` (format ``edgefer-export/1``).

Every module that reads an export (the CLI summary, bench, build-engine) reads these fields, never dict keys.
The sub-reports (``checks``, ``conversion``, ``quantization``, ``int8_search``, ``calibration``) are JSON
objects documented in docs/export.md; ``to_json``/``from_json`` round-trip the file exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ExportError

FORMAT = "edgefer-export/1"
FILE_NAME = "export.json"


@dataclass(frozen=True)
class SourceInfo:
    kind: str  # "checkpoint" or "onnx"
    path: str
    sha256: str


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the export directory
    bytes: int
    sha256: str


@dataclass
class TensorRtStep:
    """The TensorRT engine step: built here (``engine``, ``sidecar``) or the commands to build it on the device."""

    onnx: str
    build_engine_command: str
    trtexec_command: dict
    built: bool = False
    reason: str | None = None
    engine: str | None = None
    sidecar: dict | None = None
    implicit_int8: dict | None = None  # TensorRT 10.x: FP32 graph + calibration cache (DLA), when the cache exists

    def to_json(self) -> dict:
        out = {"onnx": self.onnx, "build_engine_command": self.build_engine_command,
               "trtexec_command": self.trtexec_command, "built": self.built}
        if self.built:
            out.update(engine=self.engine, sidecar=self.sidecar)
        else:
            out["reason"] = self.reason
        if self.implicit_int8 is not None:
            out["implicit_int8"] = self.implicit_int8
        return out


@dataclass
class ExportResult:
    """One export's outcome; ``model`` is the product (relative to the export directory)."""

    target: str
    precision: str
    model: str
    checks: dict
    onnx_export: dict
    spec: dict
    source: SourceInfo
    files: list[FileEntry] = field(default_factory=list)
    synthetic: bool = False
    calibration: dict | None = None
    data: dict | None = None
    conversion: dict | None = None
    quantization: dict | None = None
    int8_search: dict | None = None
    tensorrt: TensorRtStep | None = None
    executed_precision: dict | None = None  # check.executed_precision: what the runtime executes, checks included
    created_utc: str = ""
    tools: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    format: str = FORMAT

    @property
    def reference_model(self) -> str:
        """The FP32 ONNX every export writes (and checks against), relative to the export directory."""
        return self.checks["reference"]["file"]

    def engine(self) -> str | None:
        """The TensorRT engine file when one was built here."""
        return self.tensorrt.engine if self.tensorrt is not None and self.tensorrt.built else None

    def to_json(self) -> dict:
        out = {"format": self.format, "target": self.target, "precision": self.precision,
               "created_utc": self.created_utc, "source": vars(self.source), "spec": self.spec,
               "files": [vars(f) for f in self.files], "synthetic": self.synthetic, "calibration": self.calibration,
               "data": self.data, "checks": self.checks, "onnx_export": self.onnx_export}
        for key in ("conversion", "quantization", "int8_search", "executed_precision"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out["model"] = self.model
        if self.tensorrt is not None:
            out["tensorrt"] = self.tensorrt.to_json()
        out.update(tools=self.tools, machine=self.machine, timings=self.timings)
        return out

    @classmethod
    def from_json(cls, obj: dict | str | Path) -> ExportResult:
        """From the dict of ``to_json`` or an ``export.json`` path (or its directory)."""
        where = "export.json"
        if not isinstance(obj, dict):
            from ..fileio import read_json

            path = Path(obj)
            path = path / FILE_NAME if path.is_dir() else path
            where, obj = str(path), read_json(path, ExportError)
        fmt = obj.get("format", "")
        if not str(fmt).startswith("edgefer-export/") or fmt.split("/")[-1] != FORMAT.split("/")[-1]:
            raise ExportError(f"{where}: format {fmt!r} is not {FORMAT!r}; re-export with this edgefer version")
        step = obj.get("tensorrt")
        try:
            return cls(
                target=obj["target"], precision=obj["precision"], model=obj["model"], checks=obj["checks"],
                onnx_export=obj["onnx_export"], spec=obj["spec"], source=SourceInfo(**obj["source"]),
                files=[FileEntry(**f) for f in obj["files"]], synthetic=obj["synthetic"],
                calibration=obj["calibration"], data=obj["data"], conversion=obj.get("conversion"),
                quantization=obj.get("quantization"), int8_search=obj.get("int8_search"),
                tensorrt=None if step is None else TensorRtStep(**step),
                executed_precision=obj.get("executed_precision"), created_utc=obj["created_utc"],
                tools=obj["tools"], machine=obj["machine"], timings=obj["timings"], format=fmt)
        except (KeyError, TypeError) as exc:
            raise ExportError(f"{where}: not a complete export result ({type(exc).__name__}: {exc})") from None
