"""Helpers for the data tests: small rating files in ``tmp_path`` (never MovieLens lines)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import threading
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autorec.data.loaders import blocks
from autorec.data.registry import KNOWN_DATASETS, MOVIELENS_URL, Archive


@pytest.fixture
def write() -> Callable[[Path, str | bytes], Path]:
    """``write(path, text)``: create parent folders, write text (or bytes), return the path."""

    def _write(path: Path, content: str | bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
        return path

    return _write


@pytest.fixture
def small_chunks() -> Iterator[None]:
    """Parse in blocks of 64 bytes so that every file spans many blocks."""
    saved = blocks.CHUNK_BYTES
    blocks.CHUNK_BYTES = 64
    try:
        yield
    finally:
        blocks.CHUNK_BYTES = saved


def need(root: Path, relative: str) -> Path:
    """``root / relative``, or skip the test when that real-data file is absent."""
    path = root / relative
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


def pin(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    body: bytes,
    digest: str | None = None,
    base_url: str = MOVIELENS_URL,
) -> None:
    """Make the registry's archive of ``name`` be ``body`` (served from ``base_url``)."""
    archive = Archive(
        f"{name}.zip", len(body), digest or hashlib.sha256(body).hexdigest(), base_url
    )
    info = dataclasses.replace(KNOWN_DATASETS[name], archive=archive)
    monkeypatch.setitem(KNOWN_DATASETS, name, info)


class Server:
    """Serves ``routes[path] = (body, mode)``; mode "ok" or "short" (Content-Length too big)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, str]] = {}
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.hits.append(self.path)
                route = outer.routes.get(self.path)
                if route is None:
                    self.send_error(404, "Not Found")
                    return
                body, mode = route
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                if mode == "short":
                    self.send_header("Content-Length", str(len(body) + 10_000))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.close()
