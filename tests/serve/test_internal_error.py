"""A bug (not bad input) is a 500 whose body names no detail and holds no traceback; the
traceback goes to the server's log. In process (Starlette's TestClient), since a real server
has no bug to trigger on purpose."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from autorec.serve.app import create_app
from autorec.serve.engine import load_snapshot
from tests.serve.conftest import assert_error

testclient = pytest.importorskip("fastapi.testclient")


def test_a_bug_is_a_bare_500_and_a_logged_traceback(
    model_dirs: dict[str, Path], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = load_snapshot(model_dirs["i-autorec"])

    def broken(*args: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(snap.model, "predict", broken)
    app = create_app(snap.model_dir, snapshot=snap, handle_sighup=False)
    with testclient.TestClient(app, raise_server_exceptions=False) as client:
        logger = logging.getLogger("autorec.serve.app")
        logger.addHandler(caplog.handler)  # whatever the CLI tests did to propagation
        try:
            r = client.post("/v1/predict", json={"pairs": [{"user_id": 0, "item_id": 1}]})
        finally:
            logger.removeHandler(caplog.handler)
        assert_error(r, 500, "server", "internal error")
        assert "secret" not in r.text
        assert "secret internal detail" in caplog.text  # the log has it, with the traceback
        assert client.get("/health").status_code == 200
