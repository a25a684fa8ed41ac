"""The selection service: an exported selector behind HTTP (FastAPI, served by uvicorn).

Endpoints: ``POST /v1/select`` ``{"query": str?, "query_pair": str?, "k": int?}`` → demonstrations and the
formatted prompt; ``GET /healthz``; ``GET /v1/policy`` (manifest summary); ``/openapi.json`` and ``/docs``.
Successful selections carry a ``Server-Timing: select;dur=<ms>`` header (time spent choosing, without HTTP).
Every client error is a 4xx with a JSON body ``{"error": "<one line>"}``: malformed or non-JSON bodies, unknown
or mistyped fields, k out of range, a missing or over-long query, bodies over the size cap.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rl_select._version import __version__
from rl_select.errors import RLSelectError
from rl_select.export.manifest import PolicyInfo
from rl_select.export.runtime import MAX_QUERY_CHARS, Selector, load_selector

MAX_BODY_BYTES = 64 * 1024
BODY_TIMEOUT_S = 10.0
"""A request body must arrive within this many seconds (slow-loris clients are answered 408 and dropped)."""
POLICY_ENV = "RL_SELECT_POLICY_DIR"
POOL_ENV = "RL_SELECT_POLICY_POOL"
BODY_TIMEOUT_ENV = "RL_SELECT_BODY_TIMEOUT"


class SelectRequest(BaseModel):
    """Body of ``POST /v1/select``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    query: str | None = Field(default=None, max_length=MAX_QUERY_CHARS, description="Input to classify.")
    query_pair: str | None = Field(default=None, max_length=MAX_QUERY_CHARS, description="Second text (pair tasks).")
    k: int | None = Field(default=None, ge=1, le=4096, description="Demonstrations (default: the policy's k).")


class DemonstrationOut(BaseModel):
    """One demonstration."""

    id: int
    text: str
    label: str
    text_pair: str | None = None


class Health(BaseModel):
    """``GET /healthz``: the policy is loaded; its mode and pool size."""

    status: str
    mode: str
    pool_size: int


class SelectResponse(BaseModel):
    """Demonstrations in prompt order and, when a query was given, the formatted prompt."""

    demonstrations: list[DemonstrationOut]
    prompt: str | None
    k: int
    mode: str


class BodySizeLimit:
    """ASGI middleware: bound request bodies in size (413) and in time (408), then hand them to the app.

    The body is read (at most ``limit + 1`` bytes, within ``timeout`` seconds in all) before the app sees the
    request, then replayed to it, so a client that sends a body slowly or never finishes it ties up no worker
    and is answered and dropped once the time is up.
    """

    def __init__(self, app: ASGIApp, limit: int, timeout: float = BODY_TIMEOUT_S) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with its body read, or answer 413."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._answer(send, 413, f"request body is larger than {self.limit} bytes")
            return
        try:
            body = await asyncio.wait_for(self._read_body(receive), self.timeout)
        except asyncio.TimeoutError:
            await self._answer(send, 408, f"the request body did not arrive within {self.timeout:g} s")
            return
        if body is None:  # the client went away
            return
        if len(body) > self.limit:
            await self._answer(send, 413, f"request body is larger than {self.limit} bytes")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body (stopping once it passes the limit), or None when the client disconnects."""
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            body += message.get("body", b"")
            if len(body) > self.limit or not message.get("more_body", False):
                return body

    async def _answer(self, send: Send, status: int, error: str) -> None:
        body = json.dumps({"error": error}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 408:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _validation_message(exc: RequestValidationError) -> str:
    """One plain line for a rejected body: what is wrong, named by field where there is one."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "the body is not valid JSON"
    fields = [str(p) for p in first.get("loc", ()) if p != "body" and not isinstance(p, int)]
    if not fields:
        return 'the body must be a JSON object such as {"query": "...", "k": 4}'
    if first.get("type") == "extra_forbidden":
        return f"unknown field '{fields[0]}' (known: query, query_pair, k)"
    return f"{'.'.join(fields)}: {first.get('msg', 'invalid')}"


def create_app(
    selector: Selector, *, max_body_bytes: int = MAX_BODY_BYTES, body_timeout: float = BODY_TIMEOUT_S
) -> FastAPI:
    """A FastAPI app serving ``selector`` (bodies capped at ``max_body_bytes`` and ``body_timeout`` seconds).

    The selector is warmed first (its query embedder loaded), so ``/healthz`` answers only once selections are
    fast and no request ever makes the service read model files.
    """
    selector.warm()
    app = FastAPI(
        title="rl-select",
        version=__version__,
        description="Chooses in-context demonstrations with a trained selection policy.",
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": _validation_message(exc)})

    @app.exception_handler(RLSelectError)
    async def rejected(_: Request, exc: RLSelectError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": str(exc)})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail)})

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        """Liveness: the policy is loaded."""
        return Health(status="ok", mode=selector.mode, pool_size=len(selector.pool))

    @app.get("/v1/policy", response_model=PolicyInfo)
    def policy() -> PolicyInfo:
        """Summary of the served policy's manifest."""
        return selector.info()

    @app.post("/v1/select", response_model=SelectResponse)
    def select(request: SelectRequest, response: Response) -> SelectResponse:
        """Choose demonstrations for a query (query mode) or the task (task mode)."""
        started = time.perf_counter()
        demos = selector.select(request.query, request.k, request.query_pair)
        response.headers["Server-Timing"] = f"select;dur={1000 * (time.perf_counter() - started):.3f}"
        prompt = None
        if request.query is not None:
            prompt = selector.template.prompt(
                [(d.text, d.label, d.text_pair) for d in demos], request.query, request.query_pair
            )
        return SelectResponse(
            demonstrations=[DemonstrationOut(**d.to_dict()) for d in demos],
            prompt=prompt,
            k=len(demos),
            mode=selector.mode,
        )

    app.add_middleware(BodySizeLimit, limit=max_body_bytes, timeout=body_timeout)
    return app


def app_from_env() -> FastAPI:
    """App factory for multi-worker uvicorn: the policy directory comes from ``$RL_SELECT_POLICY_DIR``."""
    selector = load_selector(os.environ[POLICY_ENV], pool=os.environ.get(POOL_ENV) or None)
    return create_app(selector, body_timeout=float(os.environ.get(BODY_TIMEOUT_ENV) or BODY_TIMEOUT_S))
