"""Inputs that are not regular files: a pipe is read once (not twice), a FIFO nobody writes to is refused
after a short wait instead of hanging, a device or socket is refused."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner


def _cli(*args):
    from edgefer.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _counts(output):
    report = json.loads(output)
    return {name: split["n"] for name, split in report["splits"].items()}


def test_fifo_with_a_writer_is_read_once(fer_csv, tmp_path):
    fifo = tmp_path / "faces.csv"
    os.mkfifo(fifo)
    data = fer_csv.read_bytes()

    def write():
        with open(fifo, "wb") as f:  # blocks until the reader opens it
            f.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    result = _cli("data", "inspect", fifo, "--json")
    writer.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert _counts(result.output) == _counts(_cli("data", "inspect", fer_csv, "--json").output)


def test_fifo_that_nobody_writes_to_is_refused_without_hanging(tmp_path, monkeypatch):
    from edgefer.data import readers

    monkeypatch.setattr(readers, "FIFO_WAIT_S", 0.3)
    fifo = tmp_path / "nobody.csv"
    os.mkfifo(fifo)
    result = _cli("data", "inspect", fifo)
    assert result.exit_code == 2
    assert result.output == (f"edgefer: error: {fifo}: is a FIFO (named pipe) that nothing wrote to in 0.3 s; "
                             "start its writer first, or give a regular file\n")


@pytest.mark.skipif(not shutil.which("bash") or not os.path.isdir("/dev/fd"), reason="needs bash and /dev/fd")
def test_process_substitution_pipe_is_read_once(fer_csv, tmp_path):
    """`edgefer data inspect <(zcat faces.csv.gz)`: a /dev/fd pipe that can be read only once."""
    import gzip

    packed = tmp_path / "faces.csv.gz"
    packed.write_bytes(gzip.compress(fer_csv.read_bytes()))
    code = "import sys; from edgefer.cli import main; main(sys.argv[1:])"
    command = f'"{sys.executable}" -c "{code}" data inspect --json <(gzip -dc "{packed}")'
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "EDGEFER_PROGRESS": "0"})
    assert done.returncode == 0, done.stderr
    assert _counts(done.stdout) == _counts(_cli("data", "inspect", fer_csv, "--json").output)


def test_devices_and_sockets_are_refused(tmp_path):
    result = _cli("data", "inspect", "/dev/null")
    assert result.exit_code == 2
    assert result.output == ("edgefer: error: /dev/null: is a device, not a data file (give a CSV file or an "
                             "image folder)\n")
    path = tmp_path / "faces.csv"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        result = _cli("data", "inspect", path)
    finally:
        server.close()
    assert result.exit_code == 2 and "is a socket, not a data file" in result.output
