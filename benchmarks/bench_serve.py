"""Load test of ``autorec serve``: throughput and latency percentiles over real HTTP.

Starts ``python -m autorec serve`` on a free loopback port (127.0.0.1 only), then runs each
scenario at each number of concurrent clients (async httpx, one connection per client) for a
bounded time and request count:

* ``top10``: ``GET /v1/users/{u}/recommendations?k=10`` for random known users;
* ``predict``: ``POST /v1/predict`` with 100 random (user, item) pairs;
* ``fold-in``: ``POST /v1/recommendations`` with 20 random ratings, k=10; served by
  ``--fold-in-model-dir`` (a U-AutoRec folder, swapped in with ``POST /v1/admin/reload``)
  when the main model cannot fold in.

Every non-200 answer or transport error counts as an error; the run exits 1 if there is one.
The load generator shares the machine with the server, and ``uptime``'s load is printed with
the figures (other processes on the machine slow both).

    PYTHONPATH=src python benchmarks/bench_serve.py \\
        --model-dir runs/ml-1m-i-autorec-0 --fold-in-model-dir runs/ml-1m-u-autorec-0
    # the issue's 60 s run per scenario:  --seconds 60 --max-requests 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (default: this one), from /proc."""
    fields = Path(f"/proc/{pid or os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def start_server(model_dir: Path, port: int, threads: int | None, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "autorec", "serve", "--model-dir", str(model_dir)]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("AUTOREC_TOKEN", None)
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit(f"server did not start: {log.read_text()}")


Request = Callable[[httpx.AsyncClient, random.Random], Any]


def scenarios(users: list, items: list) -> dict[str, Request]:
    def top10(c: httpx.AsyncClient, rng: random.Random) -> Any:
        return c.get(f"/v1/users/{rng.choice(users)}/recommendations", params={"k": 10})

    def predict(c: httpx.AsyncClient, rng: random.Random) -> Any:
        pairs = [{"user_id": rng.choice(users), "item_id": rng.choice(items)} for _ in range(100)]
        return c.post("/v1/predict", json={"pairs": pairs})

    def fold_in(c: httpx.AsyncClient, rng: random.Random) -> Any:
        rated = rng.sample(items, 20)
        return c.post(
            "/v1/recommendations",
            json={"ratings": {str(i): float(rng.randint(1, 5)) for i in rated}, "k": 10},
        )

    return {"top10": top10, "predict": predict, "fold-in": fold_in}


async def run_load(
    url: str, request: Request, clients: int, seconds: float, max_requests: int, seed: int
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    # One client with one keep-alive connection each (a shared pool of 64 connections costs
    # httpx several ms of CPU per request), made before the clock starts (each builds an SSL
    # context, tens of ms).
    clients_ = [httpx.AsyncClient(base_url=url, timeout=30) for _ in range(clients)]
    stop_at = time.monotonic() + seconds

    async def client(k: int, c: httpx.AsyncClient) -> None:
        rng = random.Random(seed * 1000 + k)
        while time.monotonic() < stop_at and len(latencies) + len(errors) < max_requests:
            t0 = time.perf_counter()
            try:
                r = await request(c, rng)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:200]}")
                    continue
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
                continue
            latencies.append(time.perf_counter() - t0)

    start = time.monotonic()
    await asyncio.gather(*(client(k, c) for k, c in enumerate(clients_)))
    elapsed = time.monotonic() - start
    for c in clients_:
        await c.aclose()
    lat = np.array(latencies) * 1000.0
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": round(elapsed, 2),
        "req_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
        "p95_ms": round(float(np.percentile(lat, 95)), 2) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model-dir", required=True, help="the model to serve (ML-1M I-AutoRec)")
    p.add_argument("--fold-in-model-dir", help="a model that folds in (U-AutoRec), if needed")
    p.add_argument("--clients", default="1,8,64", help="concurrent clients (default 1,8,64)")
    p.add_argument("--scenarios", default="top10,predict,fold-in")
    p.add_argument("--seconds", type=float, default=15.0, help="per run (default 15)")
    p.add_argument("--max-requests", type=int, default=20_000, help="per run (default 20000)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before each scenario")
    p.add_argument("--threads", type=int, help="torch threads of the server")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    model_dir = Path(args.model_dir)
    meta = json.loads((model_dir / "model.json").read_text())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-serve-{port}.log"
    proc = start_server(model_dir, port, args.threads, log)
    results: list[dict[str, Any]] = []
    print(f"load average before: {load_average()}  (server log: {log})", file=sys.stderr)
    try:
        info = httpx.get(url + "/v1/model", timeout=30).json()
        for name in args.scenarios.split(","):
            if name == "fold-in" and not info["can_fold_in"]:
                if not args.fold_in_model_dir:
                    print("fold-in: skipped (no --fold-in-model-dir)", file=sys.stderr)
                    continue
                r = httpx.post(
                    url + "/v1/admin/reload",
                    json={"model_dir": str(Path(args.fold_in_model_dir).resolve())},
                    timeout=300,
                )
                r.raise_for_status()
                info = r.json()
                meta = json.loads((Path(args.fold_in_model_dir) / "model.json").read_text())
            request = scenarios(meta["users"], meta["items"])[name]
            asyncio.run(run_load(url, request, 8, args.warmup, 10**9, args.seed + 99))
            for clients in (int(x) for x in args.clients.split(",")):
                server_cpu, client_cpu = cpu_seconds(proc.pid), cpu_seconds()
                row = asyncio.run(
                    run_load(url, request, clients, args.seconds, args.max_requests, args.seed)
                )
                n = max(1, row["requests"] + row["errors"])
                row["server_cpu_ms_per_req"] = round(
                    (cpu_seconds(proc.pid) - server_cpu) * 1000 / n, 2
                )
                row["client_cpu_ms_per_req"] = round((cpu_seconds() - client_cpu) * 1000 / n, 2)
                row = {"scenario": name, "model": info["model"], **row, "load": load_average()}
                results.append(row)
                print(json.dumps(row), file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    print(
        "| scenario | model | clients | requests | errors | req/s | p50 ms | p95 ms | p99 ms "
        "| server CPU ms/req | client CPU ms/req |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['scenario']} | {r['model']} | {r['clients']} | {r['requests']} | "
            f"{r['errors']} | {r['req_per_s']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
            f"{r['server_cpu_ms_per_req']} | {r['client_cpu_ms_per_req']} |"
        )
    print(f"\nload average after: {load_average()} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
