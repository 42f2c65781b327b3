"""``edgefer serve``: a tiny ONNX classifier (Flatten + Gemm, 16 px, built with onnx.helper: milliseconds) behind
the KServe v2 / Triton HTTP server on a free port. Faces are classified through tritonclient.http (dev extra;
plain urllib where it is missing) and compared with the in-process runtime; health, readiness, metadata, config
and metrics; bad requests get a 4xx JSON error and the server keeps serving; concurrent requests are batched;
the command starts, prints its address and stops cleanly on SIGTERM; gRPC through tritonclient.grpc."""

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from edgefer.spec import METADATA_KEY, ModelSpec
from tests.backends import needs, needs_onnxruntime, needs_openvino

pytestmark = [needs_onnxruntime, needs("onnx", "onnx"), pytest.mark.timeout(120)]
SIZE = 16
HAVE_TRITONCLIENT = (importlib.util.find_spec("tritonclient") is not None
                     and importlib.util.find_spec("geventhttpclient") is not None)


def tiny_onnx(folder, name="tiny"):
    """A 7-class classifier (Flatten -> Gemm) with the spec embedded; input (N, 1, 16, 16), output logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgefer.spec import embed_in_onnx

    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(0, 0.2, (SIZE * SIZE, 7)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(0, 0.1, 7).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("Gemm", ["flat", "w", "b"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 7])], [weights, bias])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    embed_in_onnx(proto, ModelSpec(input_size=SIZE, channels=1, mean=(0.5,), std=(0.5,), color_order="gray"))
    path = folder / f"{name}.onnx"
    onnx.save(proto, str(path))
    return path


def start(path, **options):
    from edgefer.serve import ServeConfig, serve_models

    return serve_models(path, ServeConfig(port=0, threads=1, **options)).start()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_onnx(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(model_path):
    server = start(model_path, max_batch=8)
    yield server
    server.stop()


def http(server, method, path, body=None, headers=None):
    """(status, headers, body bytes) of one request with urllib; error statuses too."""
    request = urllib.request.Request(server.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def faces(n, seed=0):
    """Random gray face crops of assorted sizes, and the prepared batch a client sends (preprocessing from the
    server's model config, as a client reads it)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(20, 60)),) * 2, dtype=np.uint8) for _ in range(n)]


def spec_from_config(server):
    status, _, body = http(server, "GET", "/v2/models/edgefer/config")
    assert status == 200
    return ModelSpec.from_json(json.loads(body)["parameters"][METADATA_KEY]["string_value"])


def infer_json(server, x, classification=None, model="edgefer"):
    request = {"id": "r1", "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                       "data": x.reshape(-1).tolist()}]}
    if classification:
        request["outputs"] = [{"name": "logits", "parameters": {"classification": classification}}]
    return http(server, "POST", f"/v2/models/{model}/infer", json.dumps(request).encode(),
                {"Content-Type": "application/json"})


def test_classifies_faces_through_a_triton_client(server, model_path):
    from edgefer.preprocess import prepare_batch
    from edgefer.runtime import EmotionRecognizer

    spec = spec_from_config(server)
    crops = faces(5)
    x = prepare_batch(crops, spec, color="gray")
    with EmotionRecognizer.open(model_path) as local:
        expected = local.run(x)
        labels = local.predict(crops, color="gray").labels
    if HAVE_TRITONCLIENT:  # binary tensors, as Triton clients send them
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(server.url.split("//", 1)[1])
        try:
            assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("edgefer")
            metadata = client.get_model_metadata("edgefer")
            assert metadata["inputs"][0]["shape"] == [-1, 1, SIZE, SIZE] and metadata["platform"] == "onnxruntime_onnx"
            assert client.get_model_config("edgefer")["max_batch_size"] == 8
            tensor = httpclient.InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            result = client.infer("edgefer", [tensor], outputs=[httpclient.InferRequestedOutput("logits")])
            np.testing.assert_allclose(result.as_numpy("logits"), expected, rtol=1e-5, atol=1e-5)
            top = client.infer("edgefer", [tensor], outputs=[httpclient.InferRequestedOutput("logits",
                                                                                             class_count=2)])
            strings = [[s.decode() for s in row] for row in top.as_numpy("logits")]
            json_tensor = httpclient.InferInput("input", list(x.shape), "FP32")
            json_tensor.set_data_from_numpy(x, binary_data=False)
            as_json = client.infer("edgefer", [json_tensor],
                                   outputs=[httpclient.InferRequestedOutput("logits", binary_data=False)])
            np.testing.assert_allclose(as_json.as_numpy("logits"), expected, rtol=1e-5, atol=1e-5)
        finally:
            client.close()
    else:
        status, _, body = infer_json(server, x, classification=2)
        assert status == 200, body
        strings = [json.loads(body)["outputs"][0]["data"][i : i + 2] for i in range(0, 10, 2)]
    status, _, body = infer_json(server, x)  # plain JSON, no client library
    assert status == 200, body
    reply = json.loads(body)
    assert reply["id"] == "r1" and reply["model_name"] == "edgefer" and reply["model_version"] == "1"
    np.testing.assert_allclose(np.array(reply["outputs"][0]["data"]).reshape(5, 7), expected, rtol=1e-5, atol=1e-5)
    assert [row[0].split(":", 2)[2] for row in strings] == labels  # "<value>:<index>:<label>", best first
    assert [int(row[0].split(":")[1]) for row in strings] == list(expected.argmax(1))


def test_health_ready_metadata_and_metrics(server):
    assert http(server, "GET", "/v2/health/live")[0] == 200
    assert http(server, "GET", "/v2/health/ready")[0] == 200
    assert http(server, "GET", "/v2/models/edgefer/ready")[0] == 200
    assert http(server, "GET", "/v2/models/edgefer/versions/1/ready")[0] == 200
    status, _, body = http(server, "GET", "/v2")
    assert status == 200 and "classification" in json.loads(body)["extensions"]
    x = np.zeros((2, 1, SIZE, SIZE), np.float32)
    assert infer_json(server, x)[0] == 200
    status, headers, body = http(server, "GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    success = re.search(r'^nv_inference_request_success\{model="edgefer",version="1"\} (\d+)$', text, re.M)
    count = re.search(r'^nv_inference_count\{model="edgefer",version="1"\} (\d+)$', text, re.M)
    assert success and int(success.group(1)) >= 1 and count and int(count.group(1)) >= 2
    assert "# TYPE nv_inference_queue_duration_us counter" in text and "edgefer_batch_executions{" in text


def test_bad_requests_get_a_4xx_json_error_and_the_server_lives_on(server):
    x = np.zeros((1, 1, SIZE, SIZE), np.float32)
    good = {"inputs": [{"name": "input", "shape": [1, 1, SIZE, SIZE], "datatype": "FP32",
                        "data": x.reshape(-1).tolist()}]}

    def post(body, path="/v2/models/edgefer/infer", headers=None):
        return http(server, "POST", path, body if isinstance(body, bytes) else json.dumps(body).encode(), headers)

    def with_input(**changes):
        return {"inputs": [{**good["inputs"][0], **changes}]}

    cases = [
        (post(b"{not json"), 400, "not valid JSON"),
        (post([1, 2]), 400, "JSON object"),
        (post({"inputs": []}), 400, "'inputs'"),
        (post(with_input(name="pixels")), 400, "the model's input is 'input'"),
        (post(with_input(datatype="FP64")), 400, "takes FP32"),
        (post(with_input(shape=[1, 3, SIZE, SIZE])), 400, "takes [N, 1, 16, 16]"),
        (post(with_input(shape=[9, 1, SIZE, SIZE], data=[0.0] * 9 * SIZE * SIZE)), 400, "1 to 8 faces"),
        (post(with_input(data=[0.0] * 7)), 400, "7 values"),
        (post(with_input(data=["a"] * SIZE * SIZE)), 400, "must be numbers"),
        (post(with_input(data=[float("nan")] * SIZE * SIZE)), 400, "NaN"),
        (post(with_input(parameters={"binary_data_size": 10})), 400, "binary_data_size"),
        (post({**good, "outputs": [{"name": "logits", "parameters": {"classification": 99}}]}), 400,
         "classification"),
        (post(b"{}", headers={"Inference-Header-Content-Length": "99"}), 400, "outside the body"),
        (post(good, path="/v2/models/nobody/infer"), 404, "unknown model"),
        (post(good, path="/v2/models/edgefer/versions/7/infer"), 404, "version 1 only"),
        (http(server, "GET", "/v2/models/edgefer/infer"), 405, "use POST"),
        (http(server, "GET", "/v2/nothing"), 404, "not an endpoint"),
        (post(good, headers={"Content-Encoding": "gzip"}), 415, "uncompressed"),
    ]
    for (status, headers, body), expected_status, message in cases:
        assert status == expected_status, (message, body)
        assert headers["Content-Type"] == "application/json"
        assert message in json.loads(body)["error"], body
    assert post(good)[0] == 200  # still serving
    text = http(server, "GET", "/metrics")[2].decode()
    failures = re.search(r'^nv_inference_request_failure\{model="edgefer",version="1"\} (\d+)$', text, re.M)
    assert failures and int(failures.group(1)) >= 10


def test_concurrent_requests_are_batched(model_path):
    """16 single-face requests at once against a server that waits up to 0.5 s for a batch of 8: every answer
    is its own face's, and fewer model calls than requests ran (batches of more than one face)."""
    from edgefer.runtime import EmotionRecognizer

    rng = np.random.default_rng(1)
    xs = [rng.normal(0, 1, (1, 1, SIZE, SIZE)).astype(np.float32) for _ in range(16)]
    with EmotionRecognizer.open(model_path) as local:
        expected = [local.run(x) for x in xs]
    server = start(model_path, max_batch=8, max_delay_us=500_000)
    try:
        results, barrier = [None] * 16, threading.Barrier(16)

        def client(i):
            barrier.wait()
            status, _, body = infer_json(server, xs[i])
            results[i] = (status, body)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for (status, body), want in zip(results, expected):
            assert status == 200, body
            np.testing.assert_allclose(np.array(json.loads(body)["outputs"][0]["data"]).reshape(1, 7), want,
                                       rtol=1e-5, atol=1e-5)
        text = http(server, "GET", "/metrics")[2].decode()
        executions = int(re.search(r'^nv_inference_exec_count\{[^}]*\} (\d+)$', text, re.M).group(1))
        sizes = [int(s) for s in re.findall(r'^edgefer_batch_executions\{[^}]*batch_size="(\d+)"\} \d+$', text, re.M)]
        assert executions < 16 and max(sizes) > 1 and max(sizes) <= 8, text
    finally:
        server.stop()
    assert http_refused(server)


def http_refused(server) -> bool:
    """After stop(), nothing listens on the port any more."""
    try:
        socket.create_connection((server.host, server.port), timeout=2).close()
    except OSError:
        return True
    return False


@needs_openvino
def test_serves_the_triton_model_repository_from_the_export(tmp_path):
    """The repository `edgefer export --target triton` writes: each model under its folder's name, with the batching
    of its config.pbtxt."""
    from edgefer.export import ExportConfig
    from edgefer.export import export as run_export

    path = tiny_onnx(tmp_path)
    run_export(path, ExportConfig.build("triton", "fp32"), tmp_path / "triton")
    server = start(tmp_path / "triton" / "model_repository")
    try:
        assert sorted(server.models) == ["edgefer_onnxruntime", "edgefer_openvino"]
        x = np.random.default_rng(2).normal(0, 1, (3, 1, SIZE, SIZE)).astype(np.float32)
        outputs = []
        for name in server.models:
            status, _, body = infer_json(server, x, model=name)
            assert status == 200, body
            outputs.append(np.array(json.loads(body)["outputs"][0]["data"]).reshape(3, 7))
            config = json.loads(http(server, "GET", f"/v2/models/{name}/config")[2])
            assert config["max_batch_size"] == 32 and config["dynamic_batching"]["max_queue_delay_microseconds"] == 1000
        np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-4)
    finally:
        server.stop()


def test_the_command_serves_until_sigterm_and_exits_cleanly(model_path):
    code = "import sys; from edgefer.cli import main; sys.argv[0] = 'edgefer'; main()"
    grpc = importlib.util.find_spec("grpc") is not None and importlib.util.find_spec("tritonclient") is not None
    process = subprocess.Popen([sys.executable, "-c", code, "serve", str(model_path), "--port", "0", "--threads",
                                "1", *(["--grpc-port", "0"] if grpc else [])], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "serving at" in line:
                break
        match = re.search(r"serving at (http://\S+)", "".join(lines))
        assert match, "".join(lines)
        assert ("gRPC at 127.0.0.1:" in lines[-1]) == grpc, lines[-1]
        with urllib.request.urlopen(match.group(1) + "/v2/health/ready", timeout=30) as response:
            assert response.status == 200
        process.send_signal(signal.SIGTERM)
        rest = process.stderr.read()
        assert process.wait(30) == 0, rest
        assert "server stopped" in rest and "Traceback" not in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_user_errors_are_one_line(model_path, tmp_path):
    from click.testing import CliRunner

    from edgefer.cli import main

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        run = CliRunner().invoke(main, ["serve", str(model_path), "--port", str(port)])
    finally:
        taken.close()
    assert run.exit_code == 2 and run.output.startswith("edgefer: error: cannot listen on 127.0.0.1:"), run.output
    assert len(run.output.strip().splitlines()) == 1
    run = CliRunner().invoke(main, ["serve", str(tmp_path), "--port", "0"])
    assert run.exit_code == 2 and "not a model file, a model folder" in run.output, run.output
    run = CliRunner().invoke(main, ["serve", str(model_path), "--max-batch", "0"])
    assert run.exit_code == 2 and "--max-batch: must be" in run.output, run.output


@pytest.mark.skipif(importlib.util.find_spec("grpc") is None or importlib.util.find_spec("tritonclient") is None,
                    reason="grpcio / tritonclient[grpc] not installed (pip install 'edgefer[serve]')")
def test_grpc_through_tritons_grpc_client(model_path):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from edgefer.runtime import EmotionRecognizer

    x = np.random.default_rng(3).normal(0, 1, (4, 1, SIZE, SIZE)).astype(np.float32)
    with EmotionRecognizer.open(model_path) as local:
        expected = local.run(x)
    server = start(model_path, max_batch=8, grpc_port=0)
    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("edgefer")
        assert client.get_model_metadata("edgefer").inputs[0].shape == [-1, 1, SIZE, SIZE]
        config = client.get_model_config("edgefer").config
        assert config.max_batch_size == 8 and METADATA_KEY in config.parameters
        tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("edgefer", [tensor])
        np.testing.assert_allclose(result.as_numpy("logits"), expected, rtol=1e-5, atol=1e-5)
        top = client.infer("edgefer", [tensor], outputs=[grpcclient.InferRequestedOutput("logits", class_count=1)])
        assert [int(row[0].decode().split(":")[1]) for row in top.as_numpy("logits")] == list(expected.argmax(1))
        wrong = grpcclient.InferInput("input", [1, 3, SIZE, SIZE], "FP32")
        wrong.set_data_from_numpy(np.zeros((1, 3, SIZE, SIZE), np.float32))
        with pytest.raises(InferenceServerException, match=r"takes \[N, 1, 16, 16\]"):
            client.infer("edgefer", [wrong])
        with pytest.raises(InferenceServerException, match="unknown model"):
            client.infer("nobody", [tensor])
        assert client.infer("edgefer", [tensor]).as_numpy("logits").shape == (4, 7)  # still serving
    finally:
        client.close()
        server.stop()
