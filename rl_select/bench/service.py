"""Service latency under a bounded load: req/s and p50/p95/p99 at several concurrency levels, one run.

The server runs in its own process (``rl-select serve``, as deployed); the load generator sends a fixed number
of requests with at most ``concurrency`` in flight and times each one end to end (HTTP included).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
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


async def _load(
    url: str, bodies: list[dict[str, Any]], concurrency: int, advance: Callable[[int], None] | None
) -> tuple[list[float], list[int], float]:
    import httpx

    limit = asyncio.Semaphore(concurrency)
    latencies: list[float] = [0.0] * len(bodies)
    statuses: list[int] = [0] * len(bodies)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one(i: int) -> None:
            async with limit:
                started = time.perf_counter()
                try:
                    statuses[i] = (await client.post(url, json=bodies[i])).status_code
                except httpx.HTTPError:
                    statuses[i] = -1
                latencies[i] = time.perf_counter() - started
                if advance is not None:
                    advance(1)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(len(bodies))))
        return latencies, statuses, time.perf_counter() - started


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
    url = f"http://127.0.0.1:{port}/v1/select"
    try:
        policy = httpx.get(f"http://127.0.0.1:{port}/v1/policy").json()
        rng = np.random.default_rng(0)
        rows = []
        for level in concurrency:
            picks = rng.choice(len(queries), size=requests + warmup)
            bodies = [{"query": queries[i], **({"k": k} if k else {})} for i in picks]
            asyncio.run(_load(url, bodies[:warmup], level, None))
            advance = progress(f"{requests} requests, concurrency {level}", requests) if progress else None
            latencies, statuses, seconds = asyncio.run(_load(url, bodies[warmup:], level, advance))
            ms = np.array(latencies) * 1000
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
