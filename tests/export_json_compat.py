"""Normalisation of export.json for the before/after comparison: volatile values (times, hashes, paths,
sizes, tool versions, machine, measured numbers) become their type name, so only the structure and the
stable values (targets, file names, recipes, counts) are compared."""

VOLATILE_KEYS = {"created_utc", "sha256", "path", "source", "bytes", "tools", "machine", "timings", "seconds",
                 "latency_ms", "quantization_seconds", "nncf_version", "onnxruntime_version", "fingerprint",
                 "created", "opset", "torch_version", "exporter", "fallback_reason", "trtexec_command",
                 "build_engine_command", "bundle", "source_sha256"}


def normalise(value, key=None):
    if key in VOLATILE_KEYS:
        return type(value).__name__
    if isinstance(value, dict):
        return {k: normalise(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v, key) for v in value]
    if isinstance(value, float):
        return type(value).__name__
    return value
