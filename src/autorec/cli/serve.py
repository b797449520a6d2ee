"""``autorec serve``: a saved model behind an HTTP API (docs/serving.md)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path
from typing import Any

from autorec.cli.options import add_command, positive_int
from autorec.cli.predict import add_model_dir
from autorec.errors import ConfigError

TOKEN_ENV = "AUTOREC_TOKEN"
MODEL_DIR_ENV = "AUTOREC_SERVE_MODEL_DIR"

EXAMPLES = """\
  autorec serve --model-dir runs/ml-1m-i-autorec-0
  autorec serve --model-dir runs/ml-1m-u-autorec-0 --port 8080 --token-file ~/.autorec-token
  curl -s localhost:8000/v1/users/1/recommendations?k=5
  kill -HUP <pid>          # reload the model folder (a folder that fails keeps the old model)
"""


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "serve",
        help="serve a saved model over HTTP (needs the serve extra)",
        description="Serve a saved model over HTTP with FastAPI and uvicorn: recommendations "
        "for known and new users, batch predictions, similar items, the model's description, "
        "OpenAPI docs at /docs. Binds to 127.0.0.1 unless --host says otherwise. With a token "
        f"(--token-file, else ${TOKEN_ENV}) every endpoint but /health needs 'Authorization: "
        "Bearer TOKEN'. POST /v1/admin/reload or SIGHUP reloads the folder; SIGTERM finishes "
        "the requests in flight, then exits 0.",
        examples=EXAMPLES,
    )
    add_model_dir(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="processes, each with its own copy of the model (default 1; a reload over HTTP "
        "reaches one of them: with N > 1 send SIGHUP to each worker)",
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"file holding the bearer token (first line); default: ${TOKEN_ENV}, else no token",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        metavar="N",
        help="CPU threads for torch (default 1: a request's tensors are small and concurrent "
        "requests are batched; more threads wait on each other on a busy machine)",
    )
    p.add_argument(
        "--graceful-timeout",
        type=positive_int,
        default=30,
        metavar="S",
        help="seconds SIGTERM waits for requests in flight (default 30)",
    )
    p.add_argument("--access-log", action="store_true", help="log every request on stderr")
    p.set_defaults(func=run)


def read_token(args: argparse.Namespace) -> str | None:
    """The bearer token: the first line of --token-file, else $AUTOREC_TOKEN, else None."""
    if args.token_file is None:
        return os.environ.get(TOKEN_ENV) or None
    path = Path(args.token_file).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--token-file {path}: cannot read it ({exc})") from None
    token = lines[0].strip() if lines else ""
    if not token:
        raise ConfigError(f"--token-file {path}: the first line is empty")
    return token


def check_address(host: str, port: int) -> None:
    """Refuse, before loading the model, an address this process cannot listen on (in use,
    not an address of this machine, a privileged port)."""
    try:
        family, kind, proto, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            s.bind(where)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --host or "
            "--port"
        ) from None


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from autorec.serve.app import create_app
        from autorec.serve.engine import load_snapshot
    except ImportError as exc:
        raise ConfigError(
            f"autorec serve needs the serve extra ({exc.name} is missing): "
            "pip install 'autorec-cf[serve]'"
        ) from None
    token = read_token(args)
    check_address(args.host, args.port)
    import torch

    torch.set_num_threads(args.threads)
    snapshot = load_snapshot(args.model_dir)  # a bad folder: one error line before binding
    where = f"http://{args.host}:{args.port}"
    auth = "token required" if token else "no token"
    print(
        f"serving {snapshot.model.model_name} from {snapshot.model_dir} at {where} "
        f"({auth}; docs at {where}/docs)",
        file=sys.stderr,
    )
    options: dict[str, Any] = dict(
        host=args.host,
        port=args.port,
        access_log=args.access_log,
        timeout_graceful_shutdown=args.graceful_timeout,
        log_level="info",
    )
    if args.workers == 1:
        app = create_app(snapshot.model_dir, token, snapshot=snapshot)
        uvicorn.run(app, **options)
        return 0
    # Several processes need an import string: each worker loads the folder itself.
    del snapshot
    os.environ[MODEL_DIR_ENV] = str(Path(args.model_dir).expanduser().resolve())
    os.environ["AUTOREC_SERVE_THREADS"] = str(args.threads)
    if token:
        os.environ[TOKEN_ENV] = token
    else:
        os.environ.pop(TOKEN_ENV, None)
    uvicorn.run(
        "autorec.serve.app:app_from_environment", factory=True, workers=args.workers, **options
    )
    return 0
