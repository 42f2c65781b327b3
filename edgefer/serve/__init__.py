"""``edgefer serve``: exported models behind an HTTP server that speaks the KServe v2 / Triton inference
protocol, with dynamic batching, health and readiness endpoints and Prometheus metrics (docs/deploy.md).

    from edgefer.serve import ServeConfig, serve_models
    server = serve_models("export/triton/model_repository", ServeConfig(port=0)).start()
    print(server.url)   # tritonclient.http.InferenceServerClient(server.url[7:]) talks to it
    server.stop()

Standard library + numpy (and the runtime of the model's backend, imported when a model is opened): it runs
wherever ``edgefer.runtime`` does, a Jetson included.
"""

from __future__ import annotations

from .config import ServeConfig
from .models import ModelSource, ServedModel, resolve_models
from .server import ModelServer

__all__ = ["ModelServer", "ModelSource", "ServeConfig", "ServedModel", "resolve_models", "serve_models"]


def serve_models(path, config: ServeConfig | None = None) -> ModelServer:
    """Open the model(s) at ``path`` (a model file, a Triton repository model folder or a repository) and bind
    the server (not yet serving: call ``serve_forever()`` or ``start()``)."""
    config = config or ServeConfig()
    models: list[ServedModel] = []
    try:
        for source in resolve_models(path, config.name, config.sidecar):
            models.append(ServedModel(source, config))
        return ModelServer(models, config.host, config.port, config.grpc_port)
    except BaseException:
        for model in models:
            model.close()
        raise
