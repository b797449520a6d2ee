"""A real ``autorec serve`` in a subprocess on a free loopback port, and the tiny models it
serves (trained here on synthetic ratings, saved to temporary folders)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from autorec.data.synthetic import synthetic_ratings  # noqa: E402
from autorec.models import make_model  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src"
STARTUP_SECONDS = 60  # torch's import alone takes seconds on a loaded machine


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """i-autorec and u-autorec folders: 60 users x 40 items, 800 ratings, 8 hidden units."""
    ratings = synthetic_ratings(60, 40, 800, seed=3)
    root = tmp_path_factory.mktemp("serve-models")
    dirs = {}
    for name in ("i-autorec", "u-autorec"):
        model = make_model(name, hidden=(8,), n_epochs=5, seed=1).fit(ratings)
        dirs[name] = model.save(root / name)
    return dirs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)


@contextlib.contextmanager
def running_server(
    model_dir: Path, log: Path, *args: str, env_token: str | None = None
) -> Iterator[Server]:
    """``python -m autorec serve`` on a free port; yields once /health answers; SIGTERM and
    wait on exit (kill after 20 s)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("AUTOREC_TOKEN", None)
    if env_token is not None:
        env["AUTOREC_TOKEN"] = env_token
    cmd = [sys.executable, "-m", "autorec", "serve", "--model-dir", str(model_dir)]
    cmd += ["--port", str(port), "--threads", "1", *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited {proc.returncode}:\n{server.log_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not start:\n{server.log_text()}")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def assert_error(response: httpx.Response, status: int, field: str, *words: str) -> dict:
    """A 4xx answer in the service's error shape naming ``field``, and no traceback."""
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    body = response.json()
    assert body["field"] == field, body
    assert body["errors"][0] == {"field": body["field"], "problem": body["problem"]}
    for word in words:
        assert word in body["problem"], body
    return body
