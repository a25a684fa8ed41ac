"""Service latency under a bounded load: req/s and p50/p95/p99 at several concurrency levels, one run.

The server runs in its own process (``rl-select serve``, as deployed); the load generator sends a fixed number
of requests from ``concurrency`` threads (so at most that many in flight) and times each one end to end, HTTP
included.
"""

from __future__ import annotations

import http.client
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rl_select.errors import RLSelectError

ProgressFactory = Callable[[str, int], Callable[[int], None]]


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(policy_dir: Path, port: int, timeout: float = 180.0) -> subprocess.Popen:
    """``rl-select serve`` in a subprocess, returned once ``/healthz`` answers."""
    import httpx

    process = subprocess.Popen(
        [sys.executable, "-m", "rl_select.cli", "serve", str(policy_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RLSelectError(f"the server exited: {(process.stderr.read() or '').strip().splitlines()[-1:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RLSelectError(f"the server did not answer /healthz within {timeout:.0f}s")


def _load(
    port: int, bodies: list[bytes], concurrency: int, advance: Callable[[int], None] | None
) -> tuple[list[float], list[float], list[int], float]:
    """Send ``bodies`` with ``concurrency`` threads, each on its own keep-alive connection; time every request.

    Threads with ``http.client`` keep the generator's own overhead small (an asyncio client queueing a thousand
    coroutines added several milliseconds per request on 2 cores).
    """
    latencies: list[float] = [0.0] * len(bodies)
    server_ms: list[float] = [float("nan")] * len(bodies)
    statuses: list[int] = [0] * len(bodies)
    cursor = itertools.count()
    lock = threading.Lock()

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                i = next(cursor)
            if i >= len(bodies):
                break
            started = time.perf_counter()
            try:
                connection.request("POST", "/v1/select", body=bodies[i], headers={"content-type": "application/json"})
                response = connection.getresponse()
                response.read()
                statuses[i] = response.status
                timing = response.getheader("server-timing") or ""
                if "dur=" in timing:
                    server_ms[i] = float(timing.split("dur=")[1].split(";")[0])
            except (OSError, http.client.HTTPException):
                statuses[i] = -1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            latencies[i] = time.perf_counter() - started
            if advance is not None:
                advance(1)
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, server_ms, statuses, time.perf_counter() - started


def run_service_benchmark(
    policy_dir: Path,
    queries: Sequence[str],
    *,
    requests: int = 500,
    concurrency: Sequence[int] = (1, 4),
    k: int | None = None,
    warmup: int = 20,
    progress: ProgressFactory | None = None,
) -> dict[str, Any]:
    """Start the server, then for each concurrency level send ``requests`` requests; return latency statistics."""
    import httpx

    port = free_port()
    server = start_server(policy_dir, port)
    try:
        policy = httpx.get(f"http://127.0.0.1:{port}/v1/policy").json()
        rng = np.random.default_rng(0)
        rows = []
        for level in concurrency:
            picks = rng.choice(len(queries), size=requests + warmup)
            bodies = [json.dumps({"query": queries[i], **({"k": k} if k else {})}).encode() for i in picks]
            _load(port, bodies[:warmup], level, None)
            advance = progress(f"{requests} requests, concurrency {level}", requests) if progress else None
            latencies, server_ms, statuses, seconds = _load(port, bodies[warmup:], level, advance)
            ms = np.array(latencies) * 1000
            inside = np.array([v for v in server_ms if not np.isnan(v)] or [np.nan])
            rows.append(
                {
                    "concurrency": level,
                    "requests": requests,
                    "seconds": seconds,
                    "requests_per_s": requests / seconds,
                    "p50_ms": float(np.percentile(ms, 50)),
                    "p95_ms": float(np.percentile(ms, 95)),
                    "p99_ms": float(np.percentile(ms, 99)),
                    "max_ms": float(ms.max()),
                    "server_p50_ms": float(np.percentile(inside, 50)),
                    "server_p99_ms": float(np.percentile(inside, 99)),
                    "errors": int(sum(s != 200 for s in statuses)),
                }
            )
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    return {"policy": policy, "rows": rows}


def default_queries(policy_dir: Path) -> list[str]:
    """Query texts for the load: the exported pool's texts."""
    with open(policy_dir / "pool.jsonl") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]
