"""Load on `edgefer serve`: 1, 8 and 32 concurrent clients for 60 s each, against the server and against the
in-process runtime at the same batch; throughput, p50/p99 latency and errors as JSON and a markdown table.

    python benchmarks/serve_load.py --model export/v2s48-onnx/model.onnx --threads 2 --out runs/serve-load
    python benchmarks/serve_load.py --model model.onnx --clients 1,8 --duration 5 --out /tmp/serve-smoke   # smoke

Server: `edgefer serve MODEL --port 0` in its own process (dynamic batching, --max-batch / --max-delay-us), and
N client threads here, each with one keep-alive HTTP connection sending one request after the other: FP32
prepared faces (--faces per request) as Triton's binary tensor data, the logits back as binary. A request counts
as an error unless it returns HTTP 200 with (faces, classes) outputs. In-process: N threads calling
`EmotionRecognizer.run` on the same batch (what an application does without a server; no batching across
threads). Both modes on the same cores: with few cores the client threads compete with the server for them.
Writes serve_load.json and serve_load.md into --out.

Produces: RESULTS.md, section "Serving" (both tables, merged: the server with 1 and with 2 instances).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import common
import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"


def start_server(args) -> tuple[subprocess.Popen, str]:
    code = "from edgefer.cli import main; main(prog_name='edgefer')"
    command = [sys.executable, "-c", code, "serve", str(args.model), "--port", "0", "--max-batch",
               str(args.max_batch), "--max-delay-us", str(args.max_delay_us), "--max-queue", "100000"]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.instances:
        command += ["--instances", str(args.instances)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        match = re.search(r"serving at http://(\S+)", line)
        if match:
            threading.Thread(target=process.stderr.read, daemon=True).start()  # drain
            return process, match.group(1)
    raise SystemExit(f"edgefer serve did not start (exit {process.wait()})")


def request_body(model: dict, faces: np.ndarray) -> tuple[bytes, dict]:
    head = json.dumps({"inputs": [{"name": model["inputs"][0]["name"], "shape": list(faces.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": faces.nbytes}}],
                       "outputs": [{"name": model["outputs"][0]["name"], "parameters": {"binary_data": True}}]}).encode()
    return head + faces.tobytes(), {HEADER_LENGTH: str(len(head)), "Content-Type": "application/octet-stream"}


def get_json(address: str, path: str):
    connection = http.client.HTTPConnection(address, timeout=60)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) used so far by this process, or by process ``pid`` (Linux /proc)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(clients: int, seconds: float, call, server_pid: int | None = None) -> dict:
    """``clients`` threads calling ``call(state)`` back to back for ``seconds``; latencies, errors and the CPU
    time used (cores: CPU seconds per second) by this process and the server's."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[list[str]] = [[] for _ in range(clients)]
    start_barrier = threading.Barrier(clients + 1)
    stop = threading.Event()

    def client(i):
        state = {}
        start_barrier.wait()
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                problem = call(state)
            except Exception as exc:  # noqa: BLE001 - counted as an error
                problem = f"{type(exc).__name__}: {exc}"
                state.clear()
            if problem:
                errors[i].append(problem)
            else:
                latencies[i].append(time.perf_counter() - t0)
        if "connection" in state:
            state["connection"].close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start_barrier.wait()
    began, cpu0 = time.perf_counter(), cpu_seconds()
    server0 = cpu_seconds(server_pid) if server_pid else 0.0
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(120)
    elapsed = time.perf_counter() - began
    cpu = {"cpu_cores_here": round((cpu_seconds() - cpu0) / elapsed, 2)}
    if server_pid:
        cpu["cpu_cores_server"] = round((cpu_seconds(server_pid) - server0) / elapsed, 2)
    done = np.array([v for per in latencies for v in per]) * 1e3
    problems = [p for per in errors for p in per]
    return {"clients": clients, "seconds": round(elapsed, 2), "requests": int(done.size),
            "requests_per_s": round(done.size / elapsed, 1),
            "p50_ms": round(float(np.percentile(done, 50)), 2) if done.size else None,
            "p99_ms": round(float(np.percentile(done, 99)), 2) if done.size else None,
            "errors": len(problems), "first_errors": sorted(set(problems))[:5], **cpu}


def server_call(address: str, name: str, body: bytes, headers: dict, faces: int, classes: int):
    def call(state):
        connection = state.get("connection")
        if connection is None:
            connection = state["connection"] = http.client.HTTPConnection(address, timeout=60)
        connection.request("POST", f"/v2/models/{name}/infer", body, headers)
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            return f"HTTP {response.status}: {payload[:200]!r}"
        length = int(response.headers.get(HEADER_LENGTH, "-1"))
        if length < 0 or len(payload) - length != faces * classes * 4:
            return f"unexpected response ({len(payload)} bytes, header {length})"
        return None
    return call


def metrics(address: str) -> dict | None:
    """The batching counters of the server's /metrics (None where it has none there, e.g. Triton: port 8002)."""
    try:
        status, body = get_json(address, "/metrics")
    except OSError:
        return None
    if status != 200:
        return None
    text = body.decode()
    values = {}
    for name in ("nv_inference_count", "nv_inference_exec_count", "nv_inference_request_failure"):
        match = re.search(rf"^{name}\{{[^}}]*\}} (\d+)$", text, re.M)
        values[name] = int(match.group(1)) if match else 0
    return values


def table(rows: list[dict], faces: int) -> str:
    lines = ["| clients | mode | requests/s | faces/s | p50 ms | p99 ms | mean batch | CPU cores used | errors |",
             "|---:|---|---:|---:|---:|---:|---:|---|---:|"]
    for row in rows:
        batch = (f"{row['mean_batch']:.1f}" if row.get("mean_batch") else
                 f"{faces} (no batching)" if row["mode"] == "in-process" else "?")
        cpu = (f"{row['cpu_cores_server']} server + {row['cpu_cores_here']} clients" if "cpu_cores_server" in row
               else f"{row['cpu_cores_here']}" + (" (clients)" if row["mode"] == "server" else ""))
        lines.append(f"| {row['clients']} | {row['mode']} | {row['requests_per_s']:.1f} | "
                     f"{row['requests_per_s'] * faces:.1f} | {row['p50_ms']} | {row['p99_ms']} | {batch} | {cpu} | "
                     f"{row['errors']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = common.parser(__doc__, out=Path("runs/serve-load"), threads=None)
    ap.add_argument("--model", type=Path, required=True, help="exported model file (.onnx, .xml, ...)")
    ap.add_argument("--clients", default="1,8,32", help="concurrent clients per step (comma-separated)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per step and mode")
    ap.add_argument("--warmup", type=float, default=3.0, help="untimed seconds before each step")
    ap.add_argument("--faces", type=int, default=1, help="faces per request")
    ap.add_argument("--max-batch", type=int, default=32, help="the server's --max-batch")
    ap.add_argument("--max-delay-us", type=int, default=1000, help="the server's --max-delay-us")
    ap.add_argument("--instances", type=int, default=None, help="the server's --instances (batches at once)")
    ap.add_argument("--url", default=None,
                    help="HOST:PORT of a server already running (edgefer serve, Triton) instead of starting one")
    ap.add_argument("--model-name", default="edgefer", help="the model's name on that server")
    ap.add_argument("--modes", default="server,in-process", help="server, in-process or both")
    args = common.parse(ap, argv, __file__)
    clients = [int(c) for c in args.clients.split(",")]
    modes = args.modes.split(",")

    from edgefer.runtime import EmotionRecognizer

    recognizer = EmotionRecognizer.open(args.model, threads=args.threads)
    spec = recognizer.spec
    faces = np.random.default_rng(0).normal(0, 1, (args.faces, *recognizer.backend.sample_shape)).astype(np.float32)
    classes = spec.num_classes
    rows = []
    if "in-process" in modes:
        def local(state):
            out = recognizer.run(faces)
            return None if out.shape == (args.faces, classes) else f"output shape {out.shape}"

        for n in clients:
            drive(n, args.warmup, local)
            row = {"mode": "in-process", **drive(n, args.duration, local)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    recognizer.close()
    if "server" in modes:
        process, address = start_server(args) if args.url is None else (None, args.url)
        try:
            status, body = get_json(address, f"/v2/models/{args.model_name}")
            if status != 200:
                raise SystemExit(f"{address}: model {args.model_name!r}: HTTP {status} {body[:200]!r}")
            body, headers = request_body(json.loads(body), faces)
            call = server_call(address, args.model_name, body, headers, args.faces, classes)
            for n in clients:
                drive(n, args.warmup, call)
                before = metrics(address)
                row = {"mode": "server", **drive(n, args.duration, call, process.pid if process else None)}
                after = metrics(address)
                if before and after:
                    executions = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
                    row["mean_batch"] = round((after["nv_inference_count"] - before["nv_inference_count"])
                                              / max(executions, 1), 2)
                    row["server_failures"] = (after["nv_inference_request_failure"]
                                              - before["nv_inference_request_failure"])
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            if process is not None:
                process.send_signal(signal.SIGTERM)
                code = process.wait(120)
                if code != 0:
                    print(f"edgefer serve exited with {code} on SIGTERM", file=sys.stderr)
    rows.sort(key=lambda r: (r["clients"], r["mode"] != "server"))
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {"model": str(args.model), "spec": {"arch": spec.arch, "input_size": spec.input_size,
                                                     "channels": spec.channels, "precision": spec.precision},
                "faces_per_request": args.faces, "duration_s": args.duration, "threads": args.threads,
                "max_batch": args.max_batch, "max_delay_us": args.max_delay_us, "instances": args.instances,
                "url": args.url, "model_name": args.model_name}
    common.write_result(args.out / "serve_load.json", {**settings, "rows": rows}, args)
    markdown = table(rows, args.faces)
    (args.out / "serve_load.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
