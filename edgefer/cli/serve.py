"""``edgefer serve``: an exported model (or a Triton model repository from ``edgefer export --target triton``)
behind an HTTP server speaking the KServe v2 / Triton protocol. Only click and the config are imported here; the
server and the runtime when the command runs."""

from __future__ import annotations

import signal
from dataclasses import MISSING, fields

import click

from ..bounds import from_click
from ..serve.config import ServeConfig
from .options import Number, verbosity_options


def _config_options(command):
    """Options generated from ``ServeConfig``'s field metadata."""
    for f in reversed(fields(ServeConfig)):
        meta = f.metadata
        extra = dict(meta["click"])
        kwargs = {"default": None if f.default is MISSING else f.default, "help": meta["help"]}
        kwargs["show_default"] = kwargs["default"] is not None
        if "choices" in extra:
            kwargs["type"] = click.Choice(extra["choices"])
        elif extra.get("exists"):
            kwargs["type"] = click.Path(dir_okay=False, exists=True)
        elif from_click(extra) is not None:
            kwargs["type"] = Number(from_click(extra))
        else:
            kwargs["type"] = extra.get("type", str)
        command = click.option(meta["option"], f.name, **kwargs)(command)
    return command


@click.command()
@click.argument("model", type=click.Path(exists=True))
@_config_options
@verbosity_options
def serve(model, **values):
    """Serve MODEL over HTTP with the KServe v2 / Triton inference protocol and dynamic batching.

    MODEL: an exported model file (.onnx, .xml, .engine/.plan, run by edgefer.runtime), one model folder of a
    Triton model repository (edgefer export --target triton: config.pbtxt + 1/model.*) or the repository itself
    (every model in it). Clients send prepared faces (FP32, the model's input shape; the preprocessing is in
    GET /v2/models/<name>/config, parameters "edgefer.spec"), e.g. with tritonclient.http. Endpoints:
    /v2/health/live, /v2/health/ready, /v2/models/<name>[/config|/ready|/infer], /metrics (Prometheus); with
    --grpc-port, the same over Triton's gRPC service.
    Ctrl-C or SIGTERM stops: no new connections, the requests already received are answered, exit 0.
    """
    from .. import logs
    from ..serve import serve_models

    config = ServeConfig(**values)
    server = serve_models(model, config)
    try:
        for m in server.models.values():
            logs.info(f"edgefer: model {m.name} (version {m.version}): {m.path} on {m.backend_name} "
                      f"{m.recognizer.backend.device}, input '{m.input_name}' [N, "
                      f"{', '.join(map(str, m.sample_shape))}], dynamic batching up to {m.max_batch} faces / "
                      f"{m.max_delay_us} us, {m.instances} instance(s)")
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            # the ready line: tools (and the tests) read the address from it; printed even with -q
            grpc = f", gRPC at {server.grpc_address}" if server.grpc_address else ""
            click.echo(f"edgefer: serving at {server.url} (KServe v2 / Triton HTTP{grpc}); Ctrl-C stops", err=True)
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
        logs.info("edgefer: stopping: answering the requests already received")
    finally:
        server.stop()
    logs.info("edgefer: server stopped")


def _interrupt(signum, frame):
    raise KeyboardInterrupt
