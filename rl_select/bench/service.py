"""Service latency under a bounded load: req/s and p50/p95/p99 at several concurrency levels, one run.

The server runs in its own process (``rl-select serve``, as deployed); the load generator sends a fixed number
of requests from ``concurrency`` threads (so at most that many in flight) and times each one end to end, HTTP
included.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from rl_select.bench.records import (
    AbuseBench,
    ConcurrencyRow,
    Latency,
    LoadPhase,
    MalformedLoad,
    ServiceBench,
    SlowLoris,
    UnderAbuse,
)
from rl_select.errors import ConfigError, RLSelectError

ProgressFactory = Callable[[str, int], Callable[[int], None]]


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(policy_dir: Path, port: int, timeout: float = 180.0) -> subprocess.Popen:
    """``rl-select serve`` in a subprocess, returned once ``/healthz`` answers."""
    import httpx  # deferred: loads httpx and rich

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
) -> ServiceBench:
    """Start the server, then for each concurrency level send ``requests`` requests; return latency statistics."""
    import httpx  # deferred: loads httpx and rich

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
            inside = np.array([v for v in server_ms if not np.isnan(v)] or [np.nan])
            rows.append(
                ConcurrencyRow(
                    **asdict(_latency(latencies, statuses, seconds)),
                    concurrency=level,
                    server_p50_ms=float(np.percentile(inside, 50)),
                    server_p99_ms=float(np.percentile(inside, 99)),
                )
            )
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    return ServiceBench(policy, rows)


def query_texts(policy_dir: Path, queries: Path | None) -> list[str]:
    """The load's query texts: one per line of ``queries``, else the exported pool's texts."""
    if queries is not None:
        if not queries.is_file():
            raise ConfigError(f"queries file {queries} does not exist")
        texts = [line.strip() for line in queries.read_text().splitlines() if line.strip()]
    else:
        texts = default_queries(policy_dir)
    if not texts:
        raise ConfigError("no queries to send")
    return texts


def run_abuse_on_server(policy_dir: Path, queries: Sequence[str], *, clients: int, seconds: float) -> AbuseBench:
    """Start ``rl-select serve`` on ``policy_dir`` and run :func:`run_abuse_benchmark` against it."""
    port = free_port()
    server = start_server(policy_dir, port)
    try:
        return run_abuse_benchmark(port, queries, clients=clients, seconds=seconds)
    finally:
        server.terminate()
        server.wait(timeout=10)


def default_queries(policy_dir: Path) -> list[str]:
    """Query texts for the load: the exported pool's texts."""
    with open(policy_dir / "pool.jsonl") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


# ---------------------------------------------------------------------------------------------- load and abuse


def _latency(latencies: Sequence[float], statuses: Sequence[int], seconds: float) -> Latency:
    ms = np.array(latencies, dtype=np.float64) * 1000 if len(latencies) else np.array([np.nan])
    return Latency(
        requests=len(statuses),
        seconds=round(seconds, 2),
        requests_per_s=len(statuses) / seconds if seconds else 0.0,
        p50_ms=float(np.percentile(ms, 50)),
        p95_ms=float(np.percentile(ms, 95)),
        p99_ms=float(np.percentile(ms, 99)),
        max_ms=float(np.max(ms)),
        errors=int(sum(s != 200 for s in statuses)),
    )


def timed_load(port: int, queries: Sequence[str], *, clients: int, seconds: float, seed: int = 0) -> LoadPhase:
    """``clients`` threads, each on its own keep-alive connection, send valid selections for ``seconds``."""
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        rng = np.random.default_rng(seed + index)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[tuple[float, int]] = []
        while time.perf_counter() < deadline:
            body = json.dumps({"query": queries[int(rng.integers(len(queries)))]}).encode()
            started = time.perf_counter()
            try:
                connection.request("POST", "/v1/select", body=body, headers={"content-type": "application/json"})
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = -1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine.append((time.perf_counter() - started, status))
        connection.close()
        with lock:
            latencies.extend(m[0] for m in mine)
            statuses.extend(m[1] for m in mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadPhase(**asdict(_latency(latencies, statuses, time.perf_counter() - started)), clients=clients)


def slow_loris(port: int, clients: int, *, hold: float, declared: int = 256) -> SlowLoris:
    """Open ``clients`` connections that send headers and a trickle of body, never the whole of it.

    Returns how many the server answered 408 and how many it closed (or left hanging) within ``hold`` seconds.
    """
    head = (
        f"POST /v1/select HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    sockets = []
    for _ in range(clients):
        sock = socket.create_connection(("127.0.0.1", port), timeout=hold)
        sock.sendall(head + b'{"query": "')
        sock.setblocking(False)
        sockets.append(sock)
    answered, closed, replies = 0, 0, [b""] * clients
    open_ = set(range(clients))
    deadline = time.perf_counter() + hold
    while open_ and time.perf_counter() < deadline:
        for i in list(open_):
            with contextlib.suppress(OSError):
                sockets[i].send(b"x")  # one more byte, never enough
            try:
                chunk = sockets[i].recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            replies[i] += chunk
            if not chunk:
                open_.discard(i)
        time.sleep(0.25)
    for i, sock in enumerate(sockets):
        answered += replies[i].startswith(b"HTTP/1.1 408")
        closed += i not in open_
        sock.close()
    return SlowLoris(clients, answered_408=answered, closed_by_server=closed, still_open=len(open_))


ACCEPTABLE_200 = {"traversal in query", "NUL bytes", "header too long"}
"""Hostile-looking requests that are still valid: a query is only text, and a long header on /healthz is harmless."""
NOT_HTTP = {"garbage request line", "header too long", "bad content-length"}
"""Requests that are not valid HTTP: the server may answer 400 or just drop the connection."""


def malformed_bodies() -> list[tuple[str, bytes]]:
    """Kinds of malformed or hostile requests, each a raw HTTP/1.1 request."""

    def post(body: bytes, content_type: str = "application/json", path: str = "/v1/select") -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    return [
        ("not JSON", post(b"query=hello")),
        ("truncated JSON", post(b'{"query": "unfinished')),
        ("JSON array", post(b'["hello"]')),
        ("JSON null", post(b"null")),
        ("unknown field naming a file", post(b'{"query": "x", "pool": "/etc/passwd"}')),
        ("traversal in query", post(b'{"query": "../../../../etc/passwd"}')),
        ("k as string", post(b'{"query": "x", "k": "4"}')),
        ("k huge", post(b'{"query": "x", "k": 99999999999999999999}')),
        ("deeply nested", post(b'{"query": ' + b"[" * 5000 + b"]" * 5000 + b"}")),
        ("invalid UTF-8", post(b'{"query": "\xff\xfe\xfa"}')),
        ("NUL bytes", post(b'{"query": "a\\u0000b"}')),
        ("body over the cap", post(b'{"query": "' + b"y" * 70_000 + b'"}')),
        ("wrong content type", post(b'{"query": "x"}', content_type="text/plain")),
        ("traversal in path", post(b'{"query": "x"}', path="/v1/select/../../etc/passwd")),
        ("encoded traversal in path", post(b"{}", path="/%2e%2e/%2e%2e/manifest.json")),
        ("bad content-length", b"POST /v1/select HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}"),
        ("garbage request line", b"\x16\x03\x01\x02\x00garbage\r\n\r\n"),
        ("header too long", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 70_000 + b"\r\n\r\n"),
    ]


def send_raw(port: int, payload: bytes, timeout: float = 10.0) -> int:
    """Send one raw request on a fresh connection; the response status, 0 when the server just closed it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
            reply = b""
            while b"\r\n" not in reply:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except OSError:
            return 0
    try:
        return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0
    except (IndexError, ValueError):
        return 0


def malformed_load(port: int, count: int) -> MalformedLoad:
    """Send ``count`` malformed requests (cycling through :func:`malformed_bodies`); tally the answers.

    A 5xx, or a closed connection for a request that is valid HTTP, counts as a failure; garbage that is not
    HTTP at all may be answered 400 or dropped.
    """
    kinds = malformed_bodies()
    statuses: dict[str, dict[str, int]] = {}
    failures = 0
    for i in range(count):
        name, payload = kinds[i % len(kinds)]
        status = send_raw(port, payload)
        tally = statuses.setdefault(name, {})
        tally[str(status)] = tally.get(str(status), 0) + 1
        dropped_valid_http = status == 0 and name not in NOT_HTTP
        accepted_invalid = 200 <= status < 300 and name not in ACCEPTABLE_200
        failures += status >= 500 or dropped_valid_http or accepted_invalid
    return MalformedLoad(count, failures, statuses)


def healthy(port: int) -> bool:
    """Whether ``/healthz`` answers 200 and a valid selection succeeds."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/healthz")
        ok = connection.getresponse()
        ok.read()
        connection.request(
            "POST", "/v1/select", body=b'{"query": "a fine film"}', headers={"content-type": "application/json"}
        )
        selected = connection.getresponse()
        selected.read()
        connection.close()
        return ok.status == 200 and selected.status == 200
    except (OSError, http.client.HTTPException):
        return False


def run_abuse_benchmark(
    port: int,
    queries: Sequence[str],
    *,
    clients: int = 64,
    seconds: float = 30.0,
    background_clients: int = 8,
    slow_clients: int = 32,
    malformed: int = 1000,
    body_timeout: float = 10.0,
) -> AbuseBench:
    """Load, then abuse under load, on a running server; every phase says whether the server kept answering.

    1. ``clients`` valid clients for ``seconds``.
    2. ``slow_clients`` slow-loris connections and ``malformed`` malformed requests, sent while
       ``background_clients`` valid clients keep selecting; the valid ones must all succeed.
    """
    load = timed_load(port, queries, clients=clients, seconds=seconds)
    abused: list[SlowLoris | MalformedLoad] = []

    def abuse() -> None:
        abused.append(slow_loris(port, slow_clients, hold=body_timeout + 5))
        abused.append(malformed_load(port, malformed))

    attacker = threading.Thread(target=abuse)
    attacker.start()
    started = time.perf_counter()
    background = []
    while attacker.is_alive():
        background.append(timed_load(port, queries, clients=background_clients, seconds=2.0, seed=len(background)))
    attacker.join()
    under_abuse = UnderAbuse(
        clients=background_clients,
        seconds=round(time.perf_counter() - started, 2),
        requests=sum(b.requests for b in background),
        errors=sum(b.errors for b in background),
        p99_ms=max(b.p99_ms for b in background),
    )
    slow, bad = abused
    return AbuseBench(load, under_abuse, slow, bad, healthy(port))  # type: ignore[arg-type]
