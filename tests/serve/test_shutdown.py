"""SIGTERM finishes the requests in flight before the server exits; the token from
$AUTOREC_TOKEN; a folder that does not load stops ``autorec serve`` with one error line."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path

import pytest

from autorec.cli.app import main
from tests.serve.conftest import httpx, running_server


def test_sigterm_answers_the_requests_in_flight(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """16 concurrent 2,000-pair predictions (tens of ms each, one at a time under the GIL),
    SIGTERM as soon as the first is answered: every one gets its 200 (some of them after the
    signal), the process exits, and new connections are refused."""
    headers = {"Authorization": "Bearer env-token"}
    pairs = [{"user_id": u % 60, "item_id": u % 40} for u in range(2_000)]
    with running_server(model_dirs["i-autorec"], tmp_path / "log", env_token="env-token") as s:
        assert httpx.get(s.url + "/v1/model", timeout=30).status_code == 401
        assert httpx.get(s.url + "/v1/model", headers=headers, timeout=30).status_code == 200

        async def load() -> tuple[list[httpx.Response], list[float], float]:
            sent_at = []
            done_at: list[float] = []

            async def one(c: httpx.AsyncClient) -> httpx.Response:
                r = await c.post("/v1/predict", json={"pairs": pairs})
                done_at.append(time.monotonic())
                return r

            async with httpx.AsyncClient(base_url=s.url, headers=headers, timeout=60) as c:
                tasks = [asyncio.create_task(one(c)) for _ in range(16)]
                while not done_at:
                    await asyncio.sleep(0.001)
                s.signal(signal.SIGTERM)
                sent_at.append(time.monotonic())
                return await asyncio.gather(*tasks), done_at, sent_at[0]

        responses, done_at, signalled = asyncio.run(load())
        assert [r.status_code for r in responses] == [200] * 16
        assert all(len(r.json()["predictions"]) == 2_000 for r in responses)
        assert sum(t > signalled for t in done_at) > 0  # some really were in flight
        rc = s.proc.wait(30)
        assert rc in (0, 143), s.log_text()
        assert "Traceback" not in s.log_text()
        with pytest.raises(httpx.TransportError):
            httpx.get(s.url + "/health", timeout=2)


def test_a_folder_that_does_not_load_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--model-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and "no saved model" in err, err


def test_an_empty_token_file_is_one_error_line(
    model_dirs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "token").write_text("\n")
    args = ["serve", "--model-dir", str(model_dirs["i-autorec"])]
    assert main([*args, "--token-file", str(tmp_path / "token")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "first line is empty" in err, err


def test_a_port_in_use_is_one_error_line(
    model_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["serve", "--model-dir", str(model_dirs["i-autorec"]), "--port", str(port)]
        assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}") and "in use" in err, err
